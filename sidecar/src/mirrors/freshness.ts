import type { Logger } from '../../../core/log.ts';
import { describeError } from '../errors/gitmirror-error.ts';
import type { GitRunner } from '../git/git-runner.ts';
import type { FleetLinks } from './fleet-links.ts';
import {
  localRefs,
  type MirrorGitContext,
  missingObjects,
  sameRefs,
  upstreamRefs,
} from './git-mirror-ops.ts';
import type { Mirror } from './mirror.ts';

/** A ref listing, not a transfer; a client waits on it, so it gets half the warm-up's minute. */
const REF_CHECK_TIMEOUT_MS = 30_000;

export interface FreshnessDeps {
  git: GitRunner;
  logger: Logger;
  /** GITMIRROR_REF_CHECK_INTERVAL: how often client requests may make us ask upstream for a mirror's refs. */
  refCheckIntervalMs: number;
  /** GITMIRROR_FRESHNESS_WAIT: how long a client waits for a fetch it caused before it gets what we have. */
  waitMs: number;
  /** The manager's single-flight fetch, asked for upstream's latest. */
  fetch(mirror: Mirror): Promise<void>;
  /** A follower asks its fleet's writer instead of upstream (see FleetLinks). */
  fleet?: FleetLinks;
}

/**
 * What a client sees of upstream's latest commits, beyond the periodic fetch: before refs are
 * advertised, upstream's refs are compared with ours (at most once per interval per mirror)
 * and a difference is fetched; commits a client wants that we lack are fetched too. Either
 * way the client waits for the fetch only so long, then is served what the mirror has.
 */
export class Freshness {
  private readonly deps: FreshnessDeps;
  /** Single-flight per mirror: concurrent requests share one ls-remote. */
  private readonly checks = new WeakMap<Mirror, Promise<void>>();

  constructor(deps: FreshnessDeps) {
    this.deps = deps;
  }

  /** Called when a client asks a ready mirror for its refs; joins a check under way. */
  async beforeRefs(mirror: Mirror): Promise<void> {
    if (!mirror.ready) return;
    let check = this.checks.get(mirror);
    if (!check) {
      if (!mirror.upstreamCheckDue(this.deps.refCheckIntervalMs)) return;
      // Upstream asked us to wait: serve what the mirror has, and ask again once the wait is over.
      // A follower asks its writer, which keeps its own count of upstream's waits.
      const follower = this.deps.fleet !== undefined && mirror.settings.fleet.writer !== undefined;
      if (!follower && mirror.gitContext(this.deps.git).gate?.backoffRemainingMs()) return;
      check = this.compareWithUpstream(mirror).finally(() => this.checks.delete(mirror));
      this.checks.set(mirror, check);
    }
    // A check may queue behind the host's ref checks per second: the client waits for it (and
    // the fetch it starts) only so long, then is served what the mirror has.
    await this.withinWait(check);
  }

  /**
   * The objects among `wants` the mirror lacks (a commit pushed since our last fetch). If it
   * lacks any, fetch and look again; whatever is still missing upstream must answer for.
   */
  async missingWants(mirror: Mirror, wants: string[]): Promise<string[]> {
    const ctx = mirror.gitContext(this.deps.git);
    const missing = await missingObjects(ctx, wants);
    if (missing.length === 0) return missing;
    await this.fetchWithinWait(mirror).catch(() => {});
    return missingObjects(ctx, wants);
  }

  /**
   * A follower compares with its fleet's writer, which compares with upstream first (at most
   * once per interval for the whole fleet), so a fleet under client demand asks upstream no more
   * often than one replica would; when the writer cannot answer, the follower asks upstream.
   */
  private async compareWithUpstream(mirror: Mirror): Promise<void> {
    mirror.upstreamChecked();
    const ctx = mirror.gitContext(this.deps.git);
    const refsOf = (source: MirrorGitContext) => upstreamRefs(source, REF_CHECK_TIMEOUT_MS);
    try {
      const viaWriter = await this.deps.fleet?.viaWriter(
        mirror,
        'ref_check',
        { checkUpstream: true },
        refsOf,
      );
      const [upstream, local] = await Promise.all([viaWriter?.value ?? refsOf(ctx), localRefs(ctx)]);
      if (sameRefs(upstream, local)) return;
      await this.fetchWithinWait(mirror);
    } catch (err) {
      // Upstream unreachable: serve what we have; staleness shows in status and metrics.
      this.deps.logger.debug({ mirror: mirror.id, err: describeError(err) }, 'freshness check failed');
    }
  }

  /** A fetch, waited for at most GITMIRROR_FRESHNESS_WAIT; it goes on in the background after that. */
  private async fetchWithinWait(mirror: Mirror): Promise<void> {
    await this.withinWait(this.deps.fetch(mirror));
  }

  private async withinWait(work: Promise<void>): Promise<void> {
    work.catch(() => {}); // once the wait is over nobody awaits it; the work logs its own failure
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.deps.waitMs).unref();
    });
    try {
      await Promise.race([work, waited]);
    } finally {
      clearTimeout(timer);
    }
  }
}
