import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Request, Response } from 'express';
import type { Access } from '../../../core/admin-api.ts';
import type { Clock } from '../../../core/clock.ts';
import type { Logger } from '../../../core/log.ts';
import type { RepoId } from '../../../core/repo-id.ts';
import { describeError, GitMirrorError, isGitMirrorError } from '../errors/gitmirror-error.ts';
import type { CredentialSource } from '../git/credentials.ts';
import { AccessVerdicts } from '../http/access-check.ts';
import { rangeOfRequest } from '../http/byte-range.ts';
import type { RequestContext } from '../http/request-context.ts';
import { requestUpstream } from '../http/upstream-proxy.ts';
import {
  type BatchRequest,
  downloadAnswers,
  LFS_MEDIA_TYPE,
  lfsErrorBody,
  MAX_BATCH_BODY_BYTES,
  narrowedRequest,
  type ObjectAnswer,
  parseBatchRequest,
  type UpstreamAction,
  type UpstreamAnswer,
} from './batch-protocol.ts';
import type { BatchOutcome, LfsMetrics } from './lfs-metrics.ts';
import type { LfsMembership } from './membership.ts';
import type { LfsObjectCache } from './object-cache.ts';
import { isOid, type LfsObjectId } from './oid.ts';
import { parseJson, RELAYED_API_HEADERS, type UpstreamLfs } from './upstream-lfs.ts';
import type { LfsUrlTokens, ObjectGrant } from './url-token.ts';

/** The repository an LFS request is about, as the git layer knows it. */
export interface LfsRepository {
  repo: RepoId;
  /** Its git upstream URL (`…/path.git`); the LFS server is `{upstream}/info/lfs`. */
  upstream: string;
  /**
   * The mirror, when the cache holds one: who may read it, its directory once it serves
   * (pointer lookups), and the cache's own upstream credentials (downloads no client waits on).
   * Without a mirror the LFS API is passed through to upstream untouched, as git is.
   */
  mirror?: { access: Access; dir?: string; credentials?: CredentialSource };
}

/** What upstream's LFS API said to a client's credentials for a repository. */
export type LfsVerdict =
  | { allowed: true }
  | {
      allowed: false;
      /** Upstream's answer, replayed while the refusal is kept: status, challenge headers, body. */
      status: number;
      headers: Record<string, string>;
      body: Buffer;
    };

/** The LFS API's verdicts, kept like git's (`AccessVerdicts`). */
export function lfsVerdicts(clock: Clock): AccessVerdicts<LfsVerdict> {
  return new AccessVerdicts<LfsVerdict>({ clock, allowed: (verdict) => verdict.allowed });
}

export interface LfsServiceDeps {
  /** What the cache knows of a repository; throws (HOST_NOT_ALLOWED, ...) for one it must not serve. */
  describe(repo: RepoId): LfsRepository;
  objects: LfsObjectCache;
  tokens: LfsUrlTokens;
  upstream: UpstreamLfs;
  membership: LfsMembership;
  /**
   * The Private rule for LFS: upstream's LFS API judges a client's credentials (it may be
   * guarded differently from git's info/refs, and it is the API the client is about to use).
   */
  verdicts: AccessVerdicts<LfsVerdict>;
  metrics: LfsMetrics;
  logger: Logger;
}

const HOST_HEADER =
  /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;
const LOCKS = /^\/locks(?:\/verify|\/[A-Za-z0-9._~-]{1,200}\/unlock)?$/;
const OBJECT = /^\/objects\/([^/]+)$/;
const PASSTHROUGH_TIMEOUT_MS = 60_000;

/**
 * Git LFS under `/git/{host}/{path}.git/info/lfs/...`:
 *
 * - `POST objects/batch`, download: objects this repository is known to reference (see
 *   `LfsMembership`) and that the cache holds (disk or store) are answered with the cache's
 *   own URLs without asking upstream (a Public mirror keeps serving LFS through an upstream
 *   outage); the rest are asked of upstream's batch API with the client's credentials and
 *   answered with the cache's URLs too. For a Private mirror upstream first judges the
 *   client's credentials (cached briefly, failing closed). Uploads pass through unchanged.
 * - `GET|HEAD objects/{oid}?token=…`: the object, with Content-Length, Range and ETag (its
 *   oid), from disk or by following its one download; the token is the grant.
 * - `locks…`: passed through to upstream unchanged.
 */
export class LfsService {
  private readonly deps: LfsServiceDeps;

  constructor(deps: LfsServiceDeps) {
    this.deps = deps;
  }

  /** `subpath` is what follows `/info/lfs` (`/objects/batch`, `/objects/{oid}`, `/locks/...`). */
  async handle(req: Request, res: Response, target: { repo: RepoId; subpath: string; ctx: RequestContext }) {
    const { subpath, ctx } = target;
    ctx.repo = target.repo;
    try {
      const repository = this.deps.describe(target.repo);
      if (subpath === '/objects/batch' && req.method === 'POST') {
        ctx.route = 'lfs-batch';
        return await this.batch(req, res, { repository, ctx });
      }
      const object = OBJECT.exec(subpath);
      if (object && (req.method === 'GET' || req.method === 'HEAD')) {
        ctx.route = 'lfs-object';
        return await this.object(req, res, { repository, ctx, oid: object[1]! });
      }
      if (LOCKS.test(subpath) && (req.method === 'GET' || req.method === 'POST')) {
        ctx.route = 'lfs-locks';
        ctx.source = 'upstream';
        const body = req.method === 'POST' ? req : undefined;
        return await this.passThrough(req, res, { repository, subpath, body });
      }
      throw new GitMirrorError(
        'NOT_FOUND',
        `not an LFS endpoint: ${req.method} info/lfs${subpath.slice(0, 100)}`,
      );
    } catch (err) {
      this.fail(res, err);
    }
  }

  private async batch(
    req: Request,
    res: Response,
    { repository, ctx }: { repository: LfsRepository; ctx: RequestContext },
  ): Promise<void> {
    const raw = await readBody(req, MAX_BATCH_BODY_BYTES);
    let request: BatchRequest;
    try {
      request = parseBatchRequest(raw);
    } catch (err) {
      this.count('unknown', 'error');
      throw err;
    }
    const cacheable =
      request.operation === 'download' &&
      repository.mirror !== undefined &&
      (request.hash_algo === undefined || request.hash_algo === 'sha256');
    if (!cacheable) {
      ctx.source = 'upstream';
      await this.passThrough(req, res, { repository, subpath: '/objects/batch', body: raw });
      this.count(request.operation, 'passthrough');
      return;
    }
    const outcome = await this.download(req, res, repository, request).catch((err: unknown) => {
      this.count('download', 'error');
      throw err;
    });
    ctx.source = outcome === 'denied' ? 'denied' : outcome === 'local' ? 'local' : 'upstream';
    this.count('download', outcome);
  }

  private async download(
    req: Request,
    res: Response,
    repository: LfsRepository,
    request: BatchRequest,
  ): Promise<BatchOutcome> {
    const base = hrefBase(req);
    const mirror = repository.mirror!;
    const authorization = req.get('authorization');
    if (mirror.access === 'Private') {
      const key = AccessVerdicts.keyOf('lfs', repository.repo.id, authorization);
      const verdict = this.deps.verdicts.get(key);
      if (verdict && !verdict.allowed) {
        replay(res, verdict);
        return 'denied';
      }
      if (!verdict) return this.judgedByUpstream(res, repository, request, { base, authorization, key });
    }
    return this.answer(res, repository, request, { base, authorization });
  }

  /**
   * Private mirror, no cached verdict: the client's batch goes to upstream as it is (narrowed to
   * well-formed objects), which both judges the credentials and says where the objects are.
   * Unreachable upstream: 502, nothing served (fail closed).
   */
  private async judgedByUpstream(
    res: Response,
    repository: LfsRepository,
    request: BatchRequest,
    ctx: { base: string; authorization?: string; key: string },
  ): Promise<BatchOutcome> {
    const valid = request.objects.filter((o) => o.valid);
    const answer = await this.askUpstream(repository, request, valid, ctx.authorization);
    if (answer.status === 401 || answer.status === 403 || answer.status === 404) {
      const verdict = { allowed: false as const, ...relayable(answer) };
      this.deps.verdicts.set(ctx.key, verdict);
      replay(res, verdict);
      return 'denied';
    }
    if (answer.status < 200 || answer.status >= 300) {
      replay(res, relayable(answer));
      return 'error';
    }
    this.deps.verdicts.set(ctx.key, { allowed: true });
    const answers = this.upstreamAnswers(repository, answer.body, valid);
    this.reply(res, repository, request, { base: ctx.base, answers });
    return 'upstream';
  }

  /** Public mirror (or a Private one whose client upstream accepted lately). */
  private async answer(
    res: Response,
    repository: LfsRepository,
    request: BatchRequest,
    ctx: { base: string; authorization?: string },
  ): Promise<BatchOutcome> {
    const valid = request.objects.filter((o) => o.valid);
    const known = await this.deps.membership.known(repository.repo.id, repository.mirror?.dir, valid);
    const held = await Promise.all(
      valid.map(async (o) => known.has(o.oid) && (await this.deps.objects.locate(o)) !== undefined),
    );
    const answers = new Map<string, LocalOrUpstream>();
    valid.forEach((o, i) => {
      if (held[i]) answers.set(o.oid, { local: true });
    });
    const missing = valid.filter((o) => !answers.has(o.oid));
    if (missing.length === 0) {
      this.reply(res, repository, request, { base: ctx.base, answers });
      return 'local';
    }
    let upstreamAnswer: Awaited<ReturnType<UpstreamLfs['api']>> | undefined;
    let failure: string;
    try {
      upstreamAnswer = await this.askUpstream(repository, request, missing, ctx.authorization);
      failure = `upstream's LFS server answered ${upstreamAnswer.status}`;
    } catch (err) {
      if (answers.size === 0) throw err;
      failure = describeError(err);
    }
    if (upstreamAnswer && upstreamAnswer.status >= 200 && upstreamAnswer.status < 300) {
      for (const [oid, a] of this.upstreamAnswers(repository, upstreamAnswer.body, missing))
        answers.set(oid, a);
      this.reply(res, repository, request, { base: ctx.base, answers });
      return 'upstream';
    }
    // Upstream refused the client (or the request): its answer stands, so a 401 gets git-lfs
    // to send credentials. Upstream down or overloaded: what the cache holds is still served.
    const outage = !upstreamAnswer || upstreamAnswer.status >= 500 || upstreamAnswer.status === 429;
    if (upstreamAnswer && (!outage || answers.size === 0)) {
      replay(res, relayable(upstreamAnswer));
      const status = upstreamAnswer.status;
      return status === 401 || status === 403 || status === 404 ? 'denied' : 'error';
    }
    for (const o of missing)
      answers.set(o.oid, { error: { code: 502, message: `not cached, and ${failure}` } });
    this.reply(res, repository, request, { base: ctx.base, answers });
    return 'error';
  }

  private askUpstream(
    repository: LfsRepository,
    request: BatchRequest,
    objects: LfsObjectId[],
    authorization: string | undefined,
  ) {
    return this.deps.upstream.api({
      lfsUrl: lfsUrlOf(repository),
      suffix: '/objects/batch',
      body: narrowedRequest(request, objects),
      authorization,
    });
  }

  /** Upstream's per-object answers; objects it offered are now known to belong to the repository. */
  private upstreamAnswers(
    repository: LfsRepository,
    body: Buffer,
    asked: LfsObjectId[],
  ): Map<string, UpstreamAnswer> {
    const answers = downloadAnswers(parseJson(body), asked);
    this.deps.membership.remember(
      repository.repo.id,
      [...answers].filter(([, a]) => a.action).map(([oid]) => oid),
    );
    return answers;
  }

  private reply(
    res: Response,
    repository: LfsRepository,
    request: BatchRequest,
    ctx: { base: string; answers: Map<string, LocalOrUpstream> },
  ): void {
    const objects: ObjectAnswer[] = request.objects.map((o) => {
      if (!o.valid)
        return {
          oid: o.oid,
          size: o.size,
          error: { code: 422, message: 'oid must be 64 hex digits and size a whole number' },
        };
      const a = ctx.answers.get(o.oid);
      if (!a) return { oid: o.oid, size: o.size, error: { code: 502, message: 'no answer for this object' } };
      if (a.error) return { oid: o.oid, size: o.size, error: a.error };
      const { token, expiresInSeconds } = this.deps.tokens.issue({
        repo: repository.repo.id,
        oid: o.oid,
        size: o.size,
        upstream: a.action,
      });
      const href = `${ctx.base}/git/${repository.repo.id}.git/info/lfs/objects/${o.oid}?token=${token}`;
      return {
        oid: o.oid,
        size: o.size,
        authenticated: true,
        actions: { download: { href, expires_in: expiresInSeconds } },
      };
    });
    res
      .status(200)
      .type(LFS_MEDIA_TYPE)
      .send(JSON.stringify({ transfer: 'basic', objects, hash_algo: 'sha256' }));
  }

  private async object(
    req: Request,
    res: Response,
    { repository, ctx, oid }: { repository: LfsRepository; ctx: RequestContext; oid: string },
  ): Promise<void> {
    if (!isOid(oid)) throw new GitMirrorError('NOT_FOUND', 'not an LFS object id');
    const token = typeof req.query.token === 'string' ? req.query.token : undefined;
    const grant = this.deps.tokens.open(token, { repo: repository.repo.id, oid });
    const object = { oid, size: grant.size };
    res.set({
      'Content-Type': 'application/octet-stream',
      'Cache-Control': 'private, max-age=86400, immutable',
    });
    // The oid names the content: the strongest ETag there is.
    const plan = rangeOfRequest(req, res, { size: object.size, etag: `"${oid}"` });
    if (!plan) return;
    if (req.method === 'HEAD') {
      plan.respond();
      res.end();
      return;
    }
    const opened = await this.deps.objects.open(object, {
      range: plan.range,
      upstream: () => this.openAtUpstream(repository, grant),
    });
    ctx.source = opened.source;
    plan.respond();
    this.deps.metrics.objectsServed.inc({ source: opened.source });
    const bytes = this.deps.metrics.bytesServed.labels({ source: opened.source });
    try {
      await opened.send(res, (n) => bytes.inc(n));
    } catch (err) {
      // Headers are out: the client sees a response short of its Content-Length.
      if (!res.destroyed) res.destroy();
      if (isGitMirrorError(err))
        this.deps.logger.warn({ err: describeError(err) }, 'LFS object download failed mid-stream');
    }
  }

  /**
   * Upstream's bytes for an object no tier holds: through the action upstream gave when the
   * batch asked it (sealed in the token, so any replica can use it), else, or when that has
   * expired, through a fresh batch with the cache's own credentials for the mirror.
   */
  private async openAtUpstream(repository: LfsRepository, grant: ObjectGrant): Promise<Readable> {
    const object = { oid: grant.oid, size: grant.size };
    if (grant.upstream) {
      try {
        return await this.deps.upstream.openObject(grant.upstream, object);
      } catch (err) {
        if (!isGitMirrorError(err, 'UPSTREAM_FAILED') || err.status >= 500) throw err;
      }
    }
    return this.deps.upstream.openObject(await this.freshAction(repository, object), object);
  }

  private async freshAction(repository: LfsRepository, object: LfsObjectId): Promise<UpstreamAction> {
    const answers = await this.deps.upstream.downloadActions({
      lfsUrl: lfsUrlOf(repository),
      objects: [object],
      credentials: repository.mirror?.credentials,
    });
    const result = answers.get(object.oid);
    if (!result?.action)
      throw new GitMirrorError(
        'UPSTREAM_FAILED',
        `upstream cannot give LFS object ${object.oid}: ${result?.error?.message ?? 'no answer'}`,
        { status: result?.error?.code === 404 ? 404 : 502 },
      );
    this.deps.membership.remember(repository.repo.id, [object.oid]);
    return result.action;
  }

  /** Uploads, locks and repositories without a mirror: upstream answers, relayed as it is. */
  private async passThrough(
    req: Request,
    res: Response,
    target: { repository: LfsRepository; subpath: string; body: Buffer | Readable | undefined },
  ): Promise<void> {
    const { repository, subpath, body } = target;
    const query = req.url.includes('?') ? req.url.slice(req.url.indexOf('?')) : '';
    const headers: Record<string, string> = { via: '1.1 gitmirror' };
    for (const name of ['accept', 'content-type', 'authorization', 'user-agent']) {
      const value = req.get(name);
      if (value !== undefined) headers[name] = value;
    }
    const url = `${lfsUrlOf(repository)}${subpath}${query}`;
    const upstream = await requestUpstream({
      method: req.method === 'POST' ? 'POST' : 'GET',
      url,
      headers,
      body,
      idleTimeoutMs: PASSTHROUGH_TIMEOUT_MS,
      gate: this.deps.upstream.gateFor(url),
    });
    const status = upstream.statusCode ?? 502;
    if (status >= 300 && status < 400) {
      upstream.resume();
      throw new GitMirrorError(
        'UPSTREAM_FAILED',
        `upstream's LFS server redirected (${status}); not followed`,
      );
    }
    res.status(status);
    copyHeaders(upstream.headers, res);
    const length = upstream.headers['content-length'];
    if (length !== undefined) res.set('Content-Length', String(length));
    await pipeline(upstream, res).catch(() => res.destroy());
  }

  private count(operation: string, outcome: BatchOutcome): void {
    this.deps.metrics.batchRequests.inc({ operation, outcome });
  }

  private fail(res: Response, err: unknown): void {
    const known = isGitMirrorError(err) ? err : undefined;
    if (!known) this.deps.logger.error({ err: describeError(err) }, 'LFS request failed');
    if (res.headersSent) {
      res.destroy();
      return;
    }
    // A backed-off upstream's wait reaches the client, as on the git routes.
    if (known?.retryAfterMs !== undefined)
      res.set('Retry-After', String(Math.ceil(known.retryAfterMs / 1000)));
    res
      .status(known?.status ?? 500)
      .type(LFS_MEDIA_TYPE)
      .send(JSON.stringify(lfsErrorBody(known?.code ?? 'INTERNAL', known?.message ?? 'internal error')));
  }
}

type LocalOrUpstream = { local: true; action?: undefined; error?: undefined } | UpstreamAnswer;

export function lfsUrlOf(repository: Pick<LfsRepository, 'upstream'>): string {
  return `${repository.upstream.replace(/\/+$/, '')}/info/lfs`;
}

/**
 * `scheme://host` the client reached us at, for absolute action URLs. The Host header must
 * look like a host (it ends up in a URL we hand out); X-Forwarded-Proto is honoured only as
 * `http` or `https`, for TLS terminated in front of the cache. Either only affects the answer
 * to this client's own request.
 */
export function hrefBase(req: Request): string {
  const host = req.get('host');
  if (!host || !HOST_HEADER.test(host))
    throw new GitMirrorError(
      'BAD_REQUEST',
      'the Host header must name this cache (host[:port]) to build object URLs',
    );
  const forwarded = req.get('x-forwarded-proto')?.split(',')[0]?.trim().toLowerCase();
  const scheme = forwarded === 'https' || forwarded === 'http' ? forwarded : 'http';
  return `${scheme}://${host}`;
}

function relayable(answer: { status: number; headers: IncomingHttpHeaders; body: Buffer }) {
  const headers: Record<string, string> = {};
  for (const name of RELAYED_API_HEADERS) {
    const value = answer.headers[name];
    if (typeof value === 'string') headers[name] = value;
  }
  return { status: answer.status, headers, body: answer.body };
}

function replay(
  res: Response,
  answer: { status: number; headers: Record<string, string>; body: Buffer },
): void {
  res.status(answer.status).set(answer.headers).send(answer.body);
}

function copyHeaders(headers: IncomingHttpHeaders, res: Response): void {
  for (const name of RELAYED_API_HEADERS) {
    const value = headers[name];
    if (value !== undefined) res.setHeader(name, value);
  }
}

async function readBody(req: Request, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > maxBytes)
      throw new GitMirrorError('PAYLOAD_TOO_LARGE', `LFS API request over ${maxBytes} bytes`, {
        status: 413,
      });
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}
