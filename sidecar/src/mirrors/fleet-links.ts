import type { Logger } from '../../../core/log.ts';
import { describeError } from '../errors/gitmirror-error.ts';
import type { GitRunner } from '../git/git-runner.ts';
import type { SidecarMetrics } from '../metrics/sidecar-metrics.ts';
import type { MirrorGitContext } from './git-mirror-ops.ts';
import type { Mirror } from './mirror.ts';

/** Where a writer serves its mirrors to its followers, on the admin listener: `{base}/v1/peer/{id}.git`. */
export const PEER_PATH = '/v1/peer';

/**
 * A follower sends this on a ref check a client's request caused: the writer then compares
 * with upstream first (at most once per GITMIRROR_REF_CHECK_INTERVAL for the whole fleet).
 * Fetches on the follower's own schedule or the writer's word go without it, so they cost
 * upstream nothing.
 */
export const CHECK_UPSTREAM_HEADER = 'Gitmirror-Check-Upstream';

/** A word to a follower is one small HTTP call; a follower that does not answer soon catches up on its interval. */
const NOTIFY_TIMEOUT_MS = 5_000;

export interface FleetLinksDeps {
  git: GitRunner;
  logger: Logger;
  metrics: SidecarMetrics;
  /** The fleet's shared admin token (GITMIRROR_ADMIN_TOKEN_FILE as last read); undefined without one. */
  token: () => Promise<string | undefined>;
}

/**
 * How the replicas of a mirror share one replica's upstream traffic. The operator names the
 * snapshot writer's admin URL to the others (followers) and the followers' to the writer. The
 * writer alone fetches from upstream on its interval and, when a fetch moved refs, tells each
 * follower to fetch; a follower fetches from the writer (its peer endpoint, over the cluster
 * network), on the writer's word, on its own interval (which catches a lost word) and when a
 * client's ref check asks. Whenever the writer cannot serve (gone, not ready, demoted, or not
 * fetching from upstream for two of its intervals), the follower asks upstream as a lone
 * replica would: freshness never depends on the writer or the operator being up.
 */
export class FleetLinks {
  readonly #d: FleetLinksDeps;

  constructor(deps: FleetLinksDeps) {
    this.#d = deps;
  }

  /**
   * Runs `work` against the writer when the mirror has one. Returns its result, or undefined
   * when there is no writer or it failed (recorded, logged when it starts failing, counted): the
   * caller then asks upstream. An abort is the caller's and is thrown.
   */
  async viaWriter<T>(
    mirror: Mirror,
    kind: 'fetch' | 'ref_check',
    options: { checkUpstream: boolean; signal?: AbortSignal },
    work: (ctx: MirrorGitContext) => Promise<T>,
  ): Promise<{ value: T } | undefined> {
    const writer = mirror.settings.fleet.writer;
    if (!writer) return undefined;
    const ctx = await this.#writerContext(mirror, writer, options.checkUpstream);
    try {
      const value = await work(ctx);
      this.#d.metrics.fleetWriterRequests.inc({ kind, outcome: 'ok' });
      return { value };
    } catch (err) {
      if (options.signal?.aborted) throw err;
      this.#d.metrics.fleetWriterRequests.inc({ kind, outcome: 'failed' });
      const error = describeError(err);
      if (mirror.writerFailed(error))
        this.#d.logger.warn(
          { mirror: mirror.id, writer, err: error },
          "the fleet's writer cannot serve this mirror; asking upstream until it can",
        );
      return undefined;
    }
  }

  /** After a fetch on the writer that moved refs: each follower is asked to fetch (from us). */
  notifyFollowers(mirror: Mirror): void {
    const followers = mirror.settings.fleet.followers ?? [];
    if (followers.length === 0) return;
    void this.#d
      .token()
      .then((token) => Promise.all(followers.map((base) => this.#notify(base, mirror.id, token))));
  }

  async #notify(base: string, id: string, token: string | undefined): Promise<void> {
    try {
      const res = await fetch(`${base}/v1/mirrors/${id}/fetch`, {
        method: 'POST',
        headers: token ? { authorization: `Bearer ${token}` } : {},
        signal: AbortSignal.timeout(NOTIFY_TIMEOUT_MS),
      });
      await res.body?.cancel();
      // 404: a follower that does not hold the mirror yet gets it, and fetches, in its warm-up.
      if (!res.ok && res.status !== 404) throw new Error(`HTTP ${res.status}`);
      this.#d.metrics.fleetNotifications.inc({ outcome: 'sent' });
    } catch (err) {
      this.#d.metrics.fleetNotifications.inc({ outcome: 'failed' });
      this.#d.logger.debug(
        { mirror: id, follower: base, err: describeError(err) },
        'could not tell a follower that refs moved; it catches up on its interval',
      );
    }
  }

  async #writerContext(mirror: Mirror, writer: string, checkUpstream: boolean): Promise<MirrorGitContext> {
    const token = await this.#d.token();
    const httpHeaders = [
      ...(token ? [`Authorization: Bearer ${token}`] : []),
      ...(checkUpstream ? [`${CHECK_UPSTREAM_HEADER}: 1`] : []),
    ];
    return {
      git: this.#d.git,
      dir: mirror.dir,
      upstream: `${writer}${PEER_PATH}/${mirror.id}.git`,
      mirrorId: mirror.id,
      peer: { httpHeaders },
    };
  }
}
