import type { MirrorSpec, MirrorStatus, RestoreRequest, StorageShortfall } from '../../../core/admin-api.ts';
import { isContractError, type WireErrorCode } from '../../../core/errors.ts';
import { repoIdFromUrl } from '../../../core/repo-id.ts';
import { mirrorSpecDigest } from '../../../core/spec-digest.ts';
import { OperatorError, type OperatorErrorCode } from '../../src/errors/operator-error.ts';
import { httpError, type SidecarClient, type SidecarTarget } from '../../src/sidecar/admin-client.ts';

type Method = 'list' | 'get' | 'put' | 'restore' | 'fetch' | 'delete';

export interface SidecarCall {
  pod: string;
  method: Method;
  id?: string;
  spec?: MirrorSpec;
}

/**
 * The error a real sidecar's answer turns into: the same mapping the HTTP client applies.
 * core/test/admin-api-contract.test.ts holds this fake and the real sidecar to one specification.
 */
function answer(what: string, status: number, code: WireErrorCode, message: string): OperatorError {
  return httpError(what, status, JSON.stringify({ error: { code, message } }));
}

/** One fake sidecar: the mirrors it holds and the failures it is told to produce. */
export class FakeSidecar {
  readonly mirrors = new Map<string, MirrorStatus>();
  readonly specs = new Map<string, MirrorSpec>();
  /** Every call fails as unreachable while true. */
  down = false;
  /** Errors to throw from the next calls of a method, once each. */
  readonly failures = new Map<Method, OperatorError[]>();
  /** Fetches run on ready mirrors. */
  fetches = 0;
  /** The admin URL the operator last reached it at. */
  baseUrl?: string;
  /** A started restore turns ready by itself after this many status reads; Infinity: only finish(). */
  readyAfterReads = Number.POSITIVE_INFINITY;
  readonly #reads = new Map<string, number>();

  failNext(method: Method, code: OperatorErrorCode): void {
    const list = this.failures.get(method) ?? [];
    list.push(new OperatorError(code, `injected ${code}`));
    this.failures.set(method, list);
  }

  /** The restore (or clone) of a mirror completes: ready, with a HEAD and a fetch time. */
  finish(id: string, at = '2026-01-01T00:05:00Z'): void {
    const m = this.mirrors.get(id);
    if (!m) throw new Error(`sidecar holds no ${id}`);
    this.mirrors.set(id, {
      ...m,
      state: 'ready',
      ready: true,
      head: 'c0ffee',
      lastFetchTime: at,
      restore: { ...m.restore, phase: 'done', finishedAt: at, source: 'snapshot' },
    });
  }

  fail(id: string, error: string, at = '2026-01-01T00:05:00Z'): void {
    const m = this.mirrors.get(id)!;
    this.mirrors.set(id, {
      ...m,
      state: 'failed',
      restore: { ...m.restore, phase: 'failed', error, finishedAt: at },
    });
  }

  /** The warm-up was refused before writing: the data volume cannot hold the mirror. */
  refuseForStorage(id: string, shortfall: StorageShortfall, at = '2026-01-01T00:05:00Z'): void {
    this.fail(id, `INSUFFICIENT_STORAGE: ${shortfall.message}`, at);
    const m = this.mirrors.get(id)!;
    this.mirrors.set(id, { ...m, disk: { shortfall } });
  }

  /** The sidecar process restarted: it holds nothing. */
  restart(): void {
    this.mirrors.clear();
    this.specs.clear();
  }

  read(id: string): MirrorStatus | undefined {
    const m = this.mirrors.get(id);
    if (m?.state !== 'restoring') return m;
    const reads = (this.#reads.get(id) ?? 0) + 1;
    this.#reads.set(id, reads);
    if (reads >= this.readyAfterReads) this.finish(id);
    return this.mirrors.get(id);
  }

  put(id: string, spec: MirrorSpec): MirrorStatus {
    const what = `PUT /v1/mirrors/${id}`;
    let named: string;
    try {
      named = repoIdFromUrl(spec.url).id;
    } catch (err) {
      if (!isContractError(err)) throw err;
      throw answer(what, 400, 'BAD_REPO_PATH', err.message);
    }
    if (named !== id) throw answer(what, 400, 'BAD_REQUEST', `url names ${named}, not ${id}`);
    this.specs.set(id, spec);
    const existing = this.mirrors.get(id);
    const status: MirrorStatus = {
      id,
      url: spec.url,
      state: existing?.state ?? 'empty',
      ready: existing?.ready ?? false,
      access: spec.access ?? (spec.credentials ? 'Private' : 'Public'),
      specDigest: mirrorSpecDigest(spec),
      fetchIntervalSeconds: spec.fetchIntervalSeconds ?? 300,
      head: existing?.head,
      lastFetchTime: existing?.lastFetchTime,
      restore: existing?.restore ?? { phase: 'idle', bytesDone: 0 },
      snapshot: { ...spec.snapshot, writer: spec.snapshot?.writer ?? false, running: false },
      latestSnapshot: existing?.latestSnapshot,
      lfs: { prefetch: spec.lfs?.prefetch ?? 'None' },
      // A PUT changes the config, not what the mirror is on disk (a real sidecar keeps it too).
      disk: existing?.disk,
    };
    this.mirrors.set(id, status);
    return status;
  }

  /** A fetch a ready mirror runs (at once, here); one that is not ready ignores it, as a real one does. */
  fetch(id: string): MirrorStatus {
    const m = this.mirrors.get(id);
    if (!m) throw answer(`POST /v1/mirrors/${id}/fetch`, 404, 'NOT_FOUND', `no mirror ${id}`);
    if (!m.ready) return m;
    this.fetches++;
    const next = {
      ...m,
      lastFetchTime: new Date(Date.parse('2026-01-01T00:06:00Z') + this.fetches * 1000).toISOString(),
    };
    this.mirrors.set(id, next);
    return next;
  }

  restore(id: string, request: RestoreRequest): MirrorStatus {
    const m = this.mirrors.get(id);
    if (!m) throw answer(`POST /v1/mirrors/${id}/restore`, 404, 'NOT_FOUND', `no mirror ${id}`);
    if (m.ready && !request.force) return m;
    const next: MirrorStatus = {
      ...m,
      state: 'restoring',
      restore: { phase: 'downloading', bytesDone: 0, startedAt: '2026-01-01T00:00:10Z' },
    };
    this.mirrors.set(id, next);
    this.#reads.set(id, 0);
    return next;
  }
}

/** SidecarClient over FakeSidecars keyed by pod name, checking the bearer token. */
export class FakeSidecars implements SidecarClient {
  readonly #sidecars = new Map<string, FakeSidecar>();
  readonly calls: SidecarCall[] = [];
  /** Token each namespace's sidecars expect; unset: any. */
  readonly tokens = new Map<string, string>();

  /** The sidecar of pod `namespace/name` (created on first use). */
  of(pod: string): FakeSidecar {
    let sidecar = this.#sidecars.get(pod);
    if (!sidecar) {
      sidecar = new FakeSidecar();
      this.#sidecars.set(pod, sidecar);
    }
    return sidecar;
  }

  #enter(target: SidecarTarget, method: Method, id?: string, spec?: MirrorSpec): FakeSidecar {
    this.calls.push({ pod: target.pod, method, id, spec });
    const sidecar = this.of(target.pod);
    sidecar.baseUrl = target.baseUrl;
    if (sidecar.down)
      throw new OperatorError('SIDECAR_UNREACHABLE', `${method} on pod ${target.pod}: ECONNREFUSED`);
    const injected = sidecar.failures.get(method)?.shift();
    if (injected) throw injected;
    const expected = this.tokens.get(target.pod.split('/')[0]!);
    if (expected && target.token !== expected)
      throw answer(`${method} on pod ${target.pod}`, 401, 'UNAUTHORIZED', 'missing or wrong bearer token');
    return sidecar;
  }

  async listMirrors(target: SidecarTarget): Promise<MirrorStatus[]> {
    const sidecar = this.#enter(target, 'list');
    return [...sidecar.mirrors.keys()].map((id) => sidecar.read(id)!);
  }

  async getMirror(target: SidecarTarget, id: string): Promise<MirrorStatus | undefined> {
    return this.#enter(target, 'get', id).read(id);
  }

  async putMirror(target: SidecarTarget, id: string, spec: MirrorSpec): Promise<MirrorStatus> {
    return this.#enter(target, 'put', id, spec).put(id, spec);
  }

  async restore(target: SidecarTarget, id: string, request: RestoreRequest): Promise<MirrorStatus> {
    return this.#enter(target, 'restore', id).restore(id, request);
  }

  async fetchMirror(target: SidecarTarget, id: string): Promise<MirrorStatus> {
    return this.#enter(target, 'fetch', id).fetch(id);
  }

  async deleteMirror(target: SidecarTarget, id: string): Promise<void> {
    const sidecar = this.#enter(target, 'delete', id);
    sidecar.mirrors.delete(id);
    sidecar.specs.delete(id);
  }

  /** Pods whose sidecar currently holds the writer role for `id`. */
  writersOf(id: string): string[] {
    return [...this.#sidecars.entries()]
      .filter(([, s]) => s.mirrors.get(id)?.snapshot.writer === true)
      .map(([pod]) => pod);
  }
}
