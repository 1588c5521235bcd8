import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { Request, Response } from 'express';
import type { Logger } from '../../../core/log.ts';
import { parseRepoId, type RepoId, upstreamUrl } from '../../../core/repo-id.ts';
import type { SidecarConfig } from '../config/sidecar-config.ts';
import { GitMirrorError } from '../errors/gitmirror-error.ts';
import type { GitRunner } from '../git/git-runner.ts';
import type { SidecarMetrics } from '../metrics/sidecar-metrics.ts';
import { CHECK_UPSTREAM_HEADER, PEER_PATH } from '../mirrors/fleet-links.ts';
import type { Freshness } from '../mirrors/freshness.ts';
import type { Mirror } from '../mirrors/mirror.ts';
import type { MirrorManager } from '../mirrors/mirror-manager.ts';
import type { PackCache } from '../pack-cache/pack-cache.ts';
import type { SnapshotService } from '../snapshot/snapshot-service.ts';
import type { UpstreamHosts } from '../upstream/host-gate.ts';
import type { UpstreamAccessCheck } from './access-check.ts';
import { type GitAction, parseGitPath } from './git-path.ts';
import { serveLocalInfoRefs, serveLocalUploadPack } from './local-upload-pack.ts';
import { parseUploadPackHead } from './pkt-line.ts';
import { countBytes, type RequestContext } from './request-context.ts';
import { peekHead } from './request-head.ts';
import type { SharedUpstreamResponses } from './shared-upstream-responses.ts';
import { serveSnapshotDownload } from './snapshot-download.ts';
import { forwardedHeaders, requestUpstream, writeUpstreamHead } from './upstream-proxy.ts';

export interface GitHttpDeps {
  config: SidecarConfig;
  git: GitRunner;
  mirrors: MirrorManager;
  freshness: Freshness;
  shared: SharedUpstreamResponses;
  access: UpstreamAccessCheck;
  snapshots?: SnapshotService;
  /** Absent when GITMIRROR_PACK_CACHE_MAX_BYTES is 0. */
  packCache?: PackCache;
  logger: Logger;
  metrics: SidecarMetrics;
  /** Upstream hosts' gates: nothing is proxied to a host that asked us to wait. */
  upstream?: UpstreamHosts;
}

export const UPLOAD_PACK_TIMEOUT_MS = 2 * 60 * 60_000;
const UPSTREAM_IDLE_TIMEOUT_MS = 10 * 60_000;

/**
 * Git smart HTTP under `/git/{host}/{path}`: served from the local mirror when it is
 * ready, proxied to upstream (shared between identical requests) while it is cold, and
 * always proxied for pushes. A repository without a mirror is proxied uncached; only
 * upstream showing it to a client creates a mirror (see `serveUnmirrored`).
 */
export class GitHttpService {
  private readonly deps: GitHttpDeps;

  constructor(deps: GitHttpDeps) {
    this.deps = deps;
  }

  async handle(req: Request, res: Response, ctx: RequestContext): Promise<void> {
    const { repo, action } = parseGitPath(req.path.replace(/^\/git(?=\/)/, ''));
    ctx.route = action;
    ctx.repo = repo;
    this.assertAllowedHost(repo);
    if (action === 'receive-pack' || (action === 'info-refs' && req.query.service === 'git-receive-pack')) {
      return this.proxyPush(action, req, res, ctx);
    }
    if (action === 'info-refs' && req.query.service !== 'git-upload-pack') {
      throw new GitMirrorError(
        'BAD_REQUEST',
        'only smart HTTP is served: use a git client (info/refs?service=git-upload-pack)',
      );
    }
    const mirror = this.deps.mirrors.get(repo.id);
    if (!mirror) return this.serveUnmirrored(action, req, res, ctx);
    this.deps.mirrors.warmIfAllowed(mirror);
    if (action === 'snapshot') return this.serveSnapshot(mirror, req, res, ctx);
    if (!mirror.ready) return this.serveCold(mirror, action, req, res, ctx);
    if (!(await this.authorize(mirror, req, res, ctx))) return;
    if (action === 'info-refs') {
      await this.deps.freshness.beforeRefs(mirror);
      ctx.source = 'local';
      return serveLocalInfoRefs(this.localDeps(), { mirror, req, res, ctx });
    }
    return this.serveUploadPack(mirror, req, res, ctx);
  }

  /** GITMIRROR_ALLOWED_HOSTS plus the hosts of mirrors configured here; anything else is 403. */
  private assertAllowedHost(repo: RepoId): void {
    if (this.isAllowedHost(repo.host)) return;
    throw new GitMirrorError('HOST_NOT_ALLOWED', `${repo.host} is not an allowed upstream host`);
  }

  isAllowedHost(host: string): boolean {
    return (
      this.deps.config.allowedHosts.has(host) || this.deps.mirrors.list().some((m) => m.repo.host === host)
    );
  }

  private async authorize(
    mirror: Mirror,
    req: Request,
    res: Response,
    ctx: RequestContext,
  ): Promise<boolean> {
    const decision = await this.deps.access.check(mirror, req.get('authorization'));
    if (decision === 'allowed') return true;
    ctx.source = 'denied';
    res.set('WWW-Authenticate', 'Basic realm="gitmirror"');
    res.status(decision === 'needs-credentials' ? 401 : 403).json({
      error: {
        code: 'UNAUTHORIZED',
        message:
          decision === 'needs-credentials'
            ? 'this repository needs credentials'
            : 'upstream rejected these credentials',
      },
    });
    return false;
  }

  /**
   * Reads the wants from the head of the request; if the mirror lacks one even after the
   * fetch that causes, upstream answers rather than the client failing.
   */
  private async serveUploadPack(mirror: Mirror, req: Request, res: Response, ctx: RequestContext) {
    const { parsed, replay } = await this.readUploadPackHead(req);
    const missing = await this.deps.freshness.missingWants(mirror, parsed.wants);
    if (missing.length > 0) {
      ctx.source = 'upstream';
      const upstream = mirror.upstream;
      return this.proxy(req, res, { ctx, upstream, suffix: '/git-upload-pack', body: replay, decoded: true });
    }
    ctx.source = 'local';
    return serveLocalUploadPack(this.localDeps(), { mirror, req, res, ctx }, { body: replay, head: parsed });
  }

  private async readUploadPackHead(req: Request) {
    const { head, replay } = await peekHead(
      decodeBody(req),
      (buf) => parseUploadPackHead(buf).complete,
      this.deps.config.maxRequestHeadBytes,
    ).catch((err: unknown) => {
      if (err instanceof GitMirrorError) throw err;
      throw new GitMirrorError('BAD_REQUEST', `unreadable request body: ${(err as Error).message}`);
    });
    return { parsed: parseUploadPackHead(head), replay };
  }

  /**
   * `{admin}/v1/peer/{host}/{path}.git/...`: the fleet's followers fetch the writer's mirror here
   * instead of from upstream (behind the admin API's token). Served from local data only: no
   * access check (a follower is the fleet itself, holding the same mirror), no proxying (nothing
   * a follower sends may reach upstream, its token least of all), and only while this replica
   * is the writer and fresh enough to stand in for upstream; otherwise 503, and the follower asks
   * upstream itself. A ref check a client caused (CHECK_UPSTREAM_HEADER) first brings the writer
   * up to date, as a client's own request would.
   */
  async servePeer(req: Request, res: Response, ctx: RequestContext): Promise<void> {
    const { repo, action } = parseGitPath(req.path.slice(PEER_PATH.length));
    ctx.route = action;
    ctx.repo = repo;
    const info = action === 'info-refs' && req.query.service === 'git-upload-pack';
    if (!info && (action !== 'upload-pack' || req.method !== 'POST'))
      throw new GitMirrorError('NOT_FOUND', 'the fleet fetches with upload-pack only');
    const mirror = this.deps.mirrors.get(repo.id);
    if (!mirror) throw new GitMirrorError('NOT_FOUND', `no mirror ${repo.id}`);
    const serves = mirror.servesFleet();
    if (!serves.ok) throw new GitMirrorError('MIRROR_NOT_READY', `not serving the fleet: ${serves.reason}`);
    ctx.source = 'local';
    if (info) {
      if (req.get(CHECK_UPSTREAM_HEADER) === '1') await this.deps.freshness.beforeRefs(mirror);
      return serveLocalInfoRefs(this.localDeps(), { mirror, req, res, ctx });
    }
    const { parsed, replay } = await this.readUploadPackHead(req);
    return serveLocalUploadPack(this.localDeps(), { mirror, req, res, ctx }, { body: replay, head: parsed });
  }

  /**
   * Cold mirror: info/refs goes straight upstream; upload-pack bodies are shared when
   * identical. A body too large to hash in memory (a fetch with very many haves) is
   * streamed to upstream unshared rather than refused.
   */
  private async serveCold(
    mirror: Mirror,
    action: GitAction,
    req: Request,
    res: Response,
    ctx: RequestContext,
  ) {
    ctx.source = 'upstream';
    const upstream = mirror.upstream;
    if (action === 'info-refs') return this.proxy(req, res, { ctx, upstream, suffix: '/info/refs' });
    const limit = this.deps.config.maxRequestHeadBytes;
    const { head, replay, ended } = await peekHead(req, () => false, limit, 'stop');
    if (!ended) return this.proxy(req, res, { ctx, upstream, suffix: '/git-upload-pack', body: replay });
    const headers = forwardedHeaders(req);
    const start = () =>
      requestUpstream({
        method: 'POST',
        url: `${upstream}/git-upload-pack`,
        headers,
        body: head,
        idleTimeoutMs: UPSTREAM_IDLE_TIMEOUT_MS,
        gate: this.deps.upstream?.gate(upstream),
      });
    const { role, bytes } = await this.deps.shared.serve(
      mirror.id,
      sharingKey(req, head),
      start,
      res,
      (h, r) => writeUpstreamHead(h, r, (loc) => this.rewriteRedirect(loc)),
    );
    ctx.source = role === 'leader' ? 'upstream' : 'shared';
    ctx.bytes = { source: 'shared_upstream', count: bytes };
    this.deps.metrics.upstreamShared.inc({ role });
  }

  /**
   * No mirror of this repository. Upstream answers, relayed as it is (redirects rewritten as
   * everywhere), and nothing is created unless upstream's answer to info/refs shows that the
   * repository exists and this client may read it: then the mirror is created and warmed,
   * within GITMIRROR_MAX_ON_DEMAND_MIRRORS. So made-up names, private repositories asked
   * without credentials and anything upstream refuses cost no entry, clone or disk.
   */
  private async serveUnmirrored(action: GitAction, req: Request, res: Response, ctx: RequestContext) {
    const repo = ctx.repo!;
    if (action === 'snapshot')
      throw new GitMirrorError(
        'SNAPSHOT_NOT_FOUND',
        `this cache holds no mirror of ${repo.id}; snapshots are served only for repositories it mirrors`,
      );
    ctx.source = 'upstream';
    const upstream = upstreamUrl(repo, this.deps.config.httpHosts);
    if (action !== 'info-refs') return this.proxy(req, res, { ctx, upstream, suffix: '/git-upload-pack' });
    const onUpstreamHead = (head: IncomingMessage) => this.mirrorOnDemand(repo, head);
    return this.proxy(req, res, { ctx, upstream, suffix: '/info/refs', onUpstreamHead });
  }

  private mirrorOnDemand(repo: RepoId, head: IncomingMessage): void {
    if (!isUploadPackAdvertisement(head)) {
      this.deps.mirrors.refuseOnDemand(repo, 'upstream');
      return;
    }
    const mirror = this.deps.mirrors.createOnDemand(repo);
    if (mirror) this.deps.mirrors.warmIfAllowed(mirror);
  }

  private async proxyPush(action: GitAction, req: Request, res: Response, ctx: RequestContext) {
    const repo = ctx.repo!;
    ctx.route = 'receive-pack';
    ctx.source = 'upstream';
    const mirror = this.deps.mirrors.get(repo.id);
    const upstream = mirror?.upstream ?? upstreamUrl(repo, this.deps.config.httpHosts);
    const suffix = action === 'info-refs' ? '/info/refs' : '/git-receive-pack';
    await this.proxy(req, res, { ctx, upstream, suffix });
    // The mirror learns about the push now instead of at the next periodic fetch.
    if (action === 'receive-pack' && mirror?.ready && res.statusCode < 300)
      void this.deps.mirrors.fetch(mirror, { checkUpstream: true }).catch(() => {});
  }

  /** Relays the request to upstream's `suffix` and the answer back, counting the body's bytes. */
  private async proxy(req: Request, res: Response, options: ProxyOptions): Promise<void> {
    const { ctx } = options;
    const query = req.url.includes('?') ? req.url.slice(req.url.indexOf('?')) : '';
    const headers = forwardedHeaders(req);
    if (options.decoded) delete headers['content-encoding'];
    const upstreamRes = await requestUpstream({
      method: req.method === 'POST' ? 'POST' : 'GET',
      url: `${options.upstream}${options.suffix}${query}`,
      headers,
      body: options.body ?? (req.method === 'POST' ? (req as Readable) : undefined),
      idleTimeoutMs: UPSTREAM_IDLE_TIMEOUT_MS,
      gate: this.deps.upstream?.gate(options.upstream),
    });
    options.onUpstreamHead?.(upstreamRes);
    if (!writeUpstreamHead(upstreamRes, res, (loc) => this.rewriteRedirect(loc))) {
      upstreamRes.resume();
      return;
    }
    this.deps.logger.debug({ mirror: ctx.repo?.id, status: upstreamRes.statusCode }, 'proxied to upstream');
    const count = countBytes(ctx, 'upstream');
    upstreamRes.on('data', (chunk: Buffer) => count(chunk.length));
    upstreamRes.pipe(res);
    await new Promise<void>((resolve) => res.on('close', resolve));
  }

  /** Redirects to an allowed host are rewritten to the cache's own URL for that repository. */
  private rewriteRedirect(location: string): string | undefined {
    try {
      const url = new URL(location);
      if (!this.isAllowedHost(url.host.toLowerCase())) return undefined;
      const suffix =
        ['/info/refs', '/git-upload-pack', '/git-receive-pack'].find((s) => url.pathname.endsWith(s)) ?? '';
      const repo = parseRepoId(`${url.host}${url.pathname.slice(0, url.pathname.length - suffix.length)}`);
      return `/git/${repo.id}.git${suffix}${url.search}`;
    } catch {
      return undefined;
    }
  }

  private async serveSnapshot(mirror: Mirror, req: Request, res: Response, ctx: RequestContext) {
    if (!this.deps.snapshots)
      throw new GitMirrorError('SNAPSHOT_NOT_FOUND', 'this cache has no snapshot store');
    if (!(await this.authorize(mirror, req, res, ctx))) return;
    ctx.source = 'store';
    await serveSnapshotDownload(this.deps.snapshots, mirror.repo, req, res);
  }

  private localDeps() {
    return {
      git: this.deps.git,
      logger: this.deps.logger,
      metrics: this.deps.metrics,
      timeoutMs: UPLOAD_PACK_TIMEOUT_MS,
      packCache: this.deps.packCache,
    };
  }
}

interface ProxyOptions {
  ctx: RequestContext;
  /** The upstream repository's URL, without a trailing slash. */
  upstream: string;
  suffix: '/info/refs' | '/git-upload-pack' | '/git-receive-pack';
  /** The request body when part of it was already read; by default the request itself (POST). */
  body?: Buffer | Readable;
  /** The body was gunzipped to read its wants: upstream must not be told it is still compressed. */
  decoded?: boolean;
  /** Sees upstream's response head before it is relayed. */
  onUpstreamHead?: (head: IncomingMessage) => void;
}

/**
 * Identical cold upload-pack requests share one upstream response. Credentials, protocol and
 * encoding are part of the key, so no client is served an answer meant for other credentials.
 */
function sharingKey(req: Request, head: Buffer): string {
  return createHash('sha256')
    .update(
      [req.get('git-protocol') ?? '', req.get('content-encoding') ?? '', req.get('authorization') ?? ''].join(
        '\0',
      ),
    )
    .update('\0')
    .update(head)
    .digest('hex');
}

/** A 200 with git's ref advertisement: upstream has the repository and let this client read it. */
function isUploadPackAdvertisement(head: IncomingMessage): boolean {
  const type = (head.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  return head.statusCode === 200 && type === 'application/x-git-upload-pack-advertisement';
}

/** Git gzips large negotiation bodies; decode them so the wants can be read and upload-pack fed plain bytes. */
function decodeBody(req: Request): Readable {
  const encoding = (req.get('content-encoding') ?? '').toLowerCase();
  if (encoding === 'gzip' || encoding === 'x-gzip') {
    const gunzip = createGunzip();
    req.on('error', (err) => gunzip.destroy(err));
    return req.pipe(gunzip).on('error', () => {});
  }
  if (encoding && encoding !== 'identity')
    throw new GitMirrorError('BAD_REQUEST', `unsupported Content-Encoding ${encoding}`);
  return req;
}
