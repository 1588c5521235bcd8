import type { FleetPeers, MirrorSpec, MirrorStatus } from '../../../core/admin-api.ts';
import type { Credentials } from '../../../core/credentials.ts';
import { parseDuration } from '../../../core/duration.ts';
import { isContractError } from '../../../core/errors.ts';
import { repoIdFromUrl } from '../../../core/repo-id.ts';
import type { GitMirror, GitMirrorSpec } from '../api/gitmirror.ts';
import { OperatorError } from '../errors/operator-error.ts';

/**
 * The mirror id the sidecar uses for this GitMirror (`host/path`), from the same parser the
 * sidecar applies, so both sides always agree on it.
 */
export function repositoryOf(gm: GitMirror): string {
  try {
    return repoIdFromUrl(gm.spec.url).id;
  } catch (err) {
    throw specInvalid(err, 'spec.url: ');
  }
}

/** Milliseconds of a duration field of the spec, in the grammar the CRD's pattern enforces. */
export function specDuration(text: string, field: string): number {
  try {
    return parseDuration(text, field);
  } catch (err) {
    throw specInvalid(err, '');
  }
}

function specInvalid(err: unknown, prefix: string): unknown {
  return isContractError(err) ? new OperatorError('SPEC_INVALID', `${prefix}${err.message}`) : err;
}

/** Unset access means Private when credentials are configured, else Public. */
export function effectiveAccess(spec: GitMirrorSpec): 'Private' | 'Public' {
  return spec.access ?? (spec.credentialsSecretRef ? 'Private' : 'Public');
}

/**
 * The PUT body for one sidecar: the GitMirror's config, whether that pod is the writer and,
 * in a fleet of more than one, its peers (the writer's followers, or a follower's writer).
 */
export function mirrorSpecFor(
  gm: GitMirror,
  credentials: Credentials | undefined,
  { writer, fleet }: { writer: boolean; fleet?: FleetPeers },
): MirrorSpec {
  const { spec } = gm;
  return {
    url: spec.url,
    fetchIntervalSeconds: specDuration(spec.fetchInterval, 'spec.fetchInterval') / 1000,
    snapshot: {
      writer,
      intervalSeconds: specDuration(spec.snapshot.interval, 'spec.snapshot.interval') / 1000,
      retain: spec.snapshot.retain,
    },
    access: effectiveAccess(spec),
    ...(credentials ? { credentials } : {}),
    // Sent only when on, so mirrors without prefetch keep the spec digest they had before it.
    ...(spec.lfs.prefetch !== 'None' ? { lfs: { prefetch: spec.lfs.prefetch } } : {}),
    // Likewise only in a fleet of more than one: a lone replica's spec digest stays as it was.
    ...(fleet ? { fleet } : {}),
  };
}

/**
 * Who fetches from whom among a mirror's replicas (admin base URLs): the writer tells its
 * followers that refs moved, the followers fetch from the writer instead of upstream. Without
 * a writer, or alone, nobody gets peers and every replica asks upstream itself.
 */
export function fleetPeers(
  self: string,
  fleet: { writer: string | undefined; members: string[] },
): FleetPeers | undefined {
  const { writer, members } = fleet;
  if (writer === undefined || !members.includes(self)) return undefined;
  if (self !== writer) return { writer };
  const followers = members.filter((m) => m !== writer).sort();
  return followers.length > 0 ? { followers } : undefined;
}

/**
 * Whether the sidecar already runs with the desired config, as far as its status shows. The
 * credentials are never echoed back, so callers also compare a fingerprint of what they sent.
 */
export function specApplied(desired: MirrorSpec, actual: MirrorStatus): boolean {
  return (
    actual.url === desired.url &&
    actual.access === desired.access &&
    actual.snapshot.writer === desired.snapshot?.writer &&
    (actual.snapshot.intervalSeconds === undefined ||
      actual.snapshot.intervalSeconds === desired.snapshot?.intervalSeconds) &&
    (actual.snapshot.retain === undefined || actual.snapshot.retain === desired.snapshot?.retain) &&
    (actual.lfs?.prefetch ?? 'None') === (desired.lfs?.prefetch ?? 'None')
  );
}
