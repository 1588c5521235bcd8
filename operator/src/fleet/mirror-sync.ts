import { createHash } from 'node:crypto';
import type { MirrorSpec, MirrorStatus } from '../../../core/admin-api.ts';
import { mirrorSpecDigest } from '../../../core/spec-digest.ts';
import type { SidecarClient, SidecarTarget } from '../sidecar/admin-client.ts';
import { specApplied } from './spec.ts';

/**
 * Remembers a fingerprint of the last spec PUT to each (pod, mirror). Sidecars echo a
 * `specDigest` of the spec they run (credentials included, never the credentials), which
 * is what a new leader relies on; this memory covers sidecars that do not report one.
 */
export class AppliedSpecs {
  readonly #fingerprints = new Map<string, string>();

  matches(podUid: string, id: string, spec: MirrorSpec): boolean {
    return this.#fingerprints.get(`${podUid}|${id}`) === fingerprint(spec);
  }

  record(podUid: string, id: string, spec: MirrorSpec): void {
    this.#fingerprints.set(`${podUid}|${id}`, fingerprint(spec));
  }

  forget(podUid: string, id: string): void {
    this.#fingerprints.delete(`${podUid}|${id}`);
  }

  /** Drops everything remembered for a pod that is gone. */
  forgetPod(podUid: string): void {
    for (const key of this.#fingerprints.keys())
      if (key.startsWith(`${podUid}|`)) this.#fingerprints.delete(key);
  }

  get size(): number {
    return this.#fingerprints.size;
  }
}

function fingerprint(spec: MirrorSpec): string {
  return createHash('sha256').update(JSON.stringify(spec)).digest('hex');
}

export interface SyncTarget {
  target: SidecarTarget;
  podUid: string;
}

/** PUTs the desired spec unless the sidecar already runs it; returns the mirror's status after. */
export async function ensureMirrorSpec(
  { sidecars, applied }: { sidecars: SidecarClient; applied: AppliedSpecs },
  mirror: SyncTarget & { id: string; desired: MirrorSpec; current: MirrorStatus | undefined },
): Promise<MirrorStatus> {
  const { target, podUid, id, desired, current } = mirror;
  if (
    current &&
    specApplied(desired, current) &&
    (current.specDigest === mirrorSpecDigest(desired) || applied.matches(podUid, id, desired))
  ) {
    return current;
  }
  const status = await sidecars.putMirror(target, id, desired);
  applied.record(podUid, id, desired);
  return status;
}

/**
 * A mirror needs a restore when nothing was ever started (`empty`), or when the last attempt
 * failed long enough ago: the sidecar falls back to clone itself, so `failed` means upstream or
 * the store had trouble, and retrying at a slow pace is the useful answer.
 */
export function needsRestore(status: MirrorStatus, nowMs: number, retryAfterMs: number): boolean {
  if (status.state === 'empty') return true;
  if (status.state !== 'failed') return false;
  const finished = Date.parse(status.restore.finishedAt ?? '');
  return Number.isNaN(finished) || nowMs - finished >= retryAfterMs;
}

/**
 * Starts a restore where one is needed. The body names no key: the sidecar then restores the
 * newest snapshot its store's latest.json names, which is never older than what status shows.
 */
export async function ensureRestoring(
  sidecars: SidecarClient,
  mirror: { target: SidecarTarget; id: string; status: MirrorStatus },
  policy: { nowMs: number; retryAfterMs: number },
): Promise<MirrorStatus> {
  const { target, id, status } = mirror;
  if (!needsRestore(status, policy.nowMs, policy.retryAfterMs)) return status;
  return sidecars.restore(target, id, {});
}
