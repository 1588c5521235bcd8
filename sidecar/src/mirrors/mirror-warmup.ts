import { rm } from 'node:fs/promises';
import type { Logger } from '../../../core/log.ts';
import type { GuardedWrite } from '../budget/guarded-write.ts';
import { describeError, GitMirrorError, isGitMirrorError } from '../errors/gitmirror-error.ts';
import type { GitRunner } from '../git/git-runner.ts';
import { applyMirrorConfig } from '../git/mirror-config.ts';
import type { SidecarMetrics } from '../metrics/sidecar-metrics.ts';
import { findRecord, type SnapshotManifest, type SnapshotRecord } from '../snapshot/manifest.ts';
import type { SnapshotService } from '../snapshot/snapshot-service.ts';
import type { DataLayout } from './data-layout.ts';
import {
  cloneInto,
  fetchMirror,
  headCommit,
  installMirror,
  localRefs,
  type MirrorGitContext,
  sameRefs,
  sanityCheck,
  upstreamRefs,
} from './git-mirror-ops.ts';
import type { Mirror } from './mirror.ts';
import { type MirrorStorage, storageShortfall } from './mirror-storage.ts';

/** A ref listing, not a transfer: a minute is plenty, and the warm-up never waits the clone timeout on one. */
const LS_REMOTE_TIMEOUT_MS = 60_000;

export interface WarmupDeps {
  git: GitRunner;
  layout: DataLayout;
  snapshots?: SnapshotService;
  logger: Logger;
  metrics: SidecarMetrics;
  cloneTimeoutMs: number;
  /** The mirrors' side of the disk budget; without it nothing is reserved or measured. */
  storage?: MirrorStorage;
}

/**
 * Makes a mirror servable: restore the latest (or a given) snapshot, check it, install it
 * by rename and catch up with upstream; when there is no snapshot or any step fails, clone
 * instead. The previous mirror, if any, stays in place until a complete replacement exists.
 * A warm-up that cannot fit the disk budget fails before it writes (INSUFFICIENT_STORAGE, the
 * sizes in the mirror's status); a clone would need the same space, so it is not tried.
 */
export async function restoreOrClone(
  deps: WarmupDeps,
  mirror: Mirror,
  key: string | undefined,
  signal: AbortSignal,
) {
  mirror.beginWarmup(key);
  let fallbackReason: string | undefined;
  let latest: SnapshotManifest | undefined;
  if (deps.snapshots) {
    try {
      latest = await deps.snapshots.latest(mirror.repo);
      if (await restoreFromSnapshot(deps, deps.snapshots, mirror, { key, latest }, signal)) return;
      fallbackReason = 'no snapshot published yet';
    } catch (err) {
      if (signal.aborted) throw err;
      if (isGitMirrorError(err, 'INSUFFICIENT_STORAGE')) return failForStorage(deps, mirror, err);
      fallbackReason = describeError(err);
      deps.logger.warn(
        { mirror: mirror.id, reason: fallbackReason },
        'restore failed; falling back to clone',
      );
    }
  } else {
    fallbackReason = 'no snapshot store';
  }
  await cloneMirror(deps, mirror, signal, { fallbackReason, snapshot: latest });
}

async function restoreFromSnapshot(
  deps: WarmupDeps,
  snapshots: SnapshotService,
  mirror: Mirror,
  wanted: { key?: string; latest?: SnapshotManifest },
  signal: AbortSignal,
): Promise<boolean> {
  const { key, latest } = wanted;
  if (!key && !latest) return false;
  const record: SnapshotRecord | undefined = latest && ((key && findRecord(latest, key)) || latest);
  // Refused here, before the first byte is downloaded, when the extracted archive cannot fit.
  const write = record && (await deps.storage?.restore(mirror, record, signal));
  try {
    const upstreamNow = askUpstreamMeanwhile(deps, mirror);
    mirror.downloadingSnapshot();
    const downloaded = await snapshots.download(mirror.repo, {
      key,
      tempParent: deps.layout.tmpDir,
      signal: write?.signal ?? signal,
      onProgress: (p) => mirror.warmupProgress(p),
    });
    const { manifest } = downloaded;
    deps.metrics.snapshotBytes.inc({ direction: 'download' }, manifest.sizeBytes);
    try {
      mirror.checkingSnapshot(manifest.key);
      const tempCtx = { ...mirror.gitContext(deps.git), dir: downloaded.dir };
      await sanityCheck(tempCtx, manifest.commit);
      await applyMirrorConfig(deps.git, downloaded.dir, mirror.upstream);
      // Caught up before it replaces anything: a failed catch-up leaves the served mirror as it was.
      const fetched = await catchUp(deps, mirror, tempCtx, { signal, upstreamNow: upstreamNow() });
      await install(deps, mirror, downloaded.dir, write);
      mirror.sawSnapshot(manifest);
      mirror.readyFrom({ source: 'snapshot', head: await headCommit(mirror.gitContext(deps.git)), fetched });
    } finally {
      await downloaded.cleanup();
    }
    return true;
  } catch (err) {
    await write?.finish();
    throw err;
  }
}

/** The warm-up cannot fit the disk budget: the mirror says so (and by how much) until one succeeds. */
function failForStorage(deps: WarmupDeps, mirror: Mirror, err: GitMirrorError): never {
  const shortfall = storageShortfall(err);
  if (shortfall) mirror.cannotHold(shortfall);
  mirror.warmupFailed(describeError(err));
  deps.metrics.restores.inc({ outcome: 'failed' });
  deps.logger.warn({ mirror: mirror.id, err: describeError(err) }, 'warm-up refused: not enough disk');
  throw err;
}

/**
 * Upstream's refs, asked while the archive downloads and unpacks. When they turn out to be
 * exactly the restored ones the catch-up fetch has nothing to bring and is skipped; that
 * fetch would cost a new replica ~0.1 s before its gate opens. The answer is used only if
 * it is already in by then: a slow upstream must not delay the usual fetch.
 */
function askUpstreamMeanwhile(deps: WarmupDeps, mirror: Mirror): () => Map<string, string> | undefined {
  let refs: Map<string, string> | undefined;
  // ls-remote needs no repository; the mirror's own dir does not exist yet.
  const ctx = { ...mirror.gitContext(deps.git), dir: deps.layout.tmpDir };
  upstreamRefs(ctx, LS_REMOTE_TIMEOUT_MS).then(
    (answer) => (refs = answer),
    () => undefined,
  );
  return () => refs;
}

/**
 * Brings the restored (not yet installed) mirror up to date. If the fetch fails while
 * upstream answers ls-remote, the restored data is suspect: RESTORE_FAILED, and the warm-up
 * clones instead. If upstream is unreachable, a verified snapshot is the best data there is:
 * it is served, stale, with the error visible, and the periodic fetch catches up later.
 */
async function catchUp(
  deps: WarmupDeps,
  mirror: Mirror,
  ctx: MirrorGitContext,
  options: { signal: AbortSignal; upstreamNow: Map<string, string> | undefined },
): Promise<{ ok: true } | { ok: false; error: string }> {
  const { signal, upstreamNow } = options;
  mirror.catchingUp();
  try {
    if (!upstreamNow || !sameRefs(upstreamNow, await localRefs(ctx)))
      await fetchMirror(ctx, { timeoutMs: deps.cloneTimeoutMs, signal, lowSpeedAbort: false });
    deps.metrics.restores.inc({ outcome: 'snapshot' });
    return { ok: true };
  } catch (err) {
    if (signal.aborted) throw err;
    const reachable = await upstreamRefs(ctx, LS_REMOTE_TIMEOUT_MS).then(
      () => true,
      () => false,
    );
    if (reachable)
      throw new GitMirrorError(
        'RESTORE_FAILED',
        `catch-up fetch failed on the restored mirror: ${describeError(err)}`,
      );
    const error = describeError(err);
    deps.metrics.restores.inc({ outcome: 'snapshot_stale' });
    deps.logger.warn(
      { mirror: mirror.id, err: error },
      'upstream unreachable; serving the restored snapshot',
    );
    return { ok: false, error };
  }
}

async function cloneMirror(
  deps: WarmupDeps,
  mirror: Mirror,
  signal: AbortSignal,
  from: { fallbackReason?: string; snapshot?: SnapshotRecord },
) {
  const { fallbackReason } = from;
  mirror.cloning(fallbackReason);
  const temp = await deps.layout.makeTempDir('clone');
  let write: GuardedWrite | undefined;
  try {
    write = await deps.storage?.clone(mirror, temp, { snapshot: from.snapshot }, signal);
    const ctx = mirror.gitContext(deps.git);
    const prepared = await cloneInto(ctx, temp, deps.cloneTimeoutMs, write?.signal ?? signal).catch(
      (err: unknown) => {
        throw write?.exhausted() ?? err;
      },
    );
    await install(deps, mirror, prepared, write);
    // What is left of the temp dir goes before the mirror reports ready: whoever sees it ready
    // sees no leftovers.
    await rm(temp, { recursive: true, force: true });
    mirror.readyFrom({ source: 'clone', head: await headCommit(ctx), fetched: { ok: true } });
    deps.metrics.restores.inc({
      outcome: fallbackReason === 'no snapshot published yet' || !deps.snapshots ? 'clone' : 'clone_fallback',
    });
  } catch (err) {
    // Clean up before reporting failure, so whoever sees `failed` also sees no leftovers.
    await rm(temp, { recursive: true, force: true });
    await write?.finish();
    const shortfall = storageShortfall(err);
    if (shortfall) mirror.cannotHold(shortfall);
    // Both reasons: why no snapshot was used, and why the clone failed too.
    mirror.warmupFailed(
      fallbackReason ? `${fallbackReason}; then the clone failed: ${describeError(err)}` : describeError(err),
    );
    deps.metrics.restores.inc({ outcome: 'failed' });
    throw err;
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
}

/**
 * Installs the prepared mirror and measures it. The write's reservation is kept until a
 * replaced mirror's directory is gone: until then both are on disk.
 */
async function install(deps: WarmupDeps, mirror: Mirror, prepared: string, write?: GuardedWrite) {
  const retired = await installMirror(prepared, mirror.dir, deps.layout.retiredName(mirror.repo));
  await deps.storage?.measure(mirror);
  const gone = retired ? removeWhenIdle(mirror, retired) : Promise.resolve();
  void gone.finally(() => write?.finish());
}

/**
 * A replaced mirror may still be read by clones in flight; delete it once they finish. The
 * bound is elapsed real time, as the sleeps in between are real: not the injected clock.
 */
async function removeWhenIdle(mirror: Mirror, dir: string): Promise<void> {
  const deadline = performance.now() + 30 * 60_000;
  while (mirror.activeServes > 0 && performance.now() < deadline)
    await new Promise((r) => setTimeout(r, 1000));
  await rm(dir, { recursive: true, force: true });
}

export type { MirrorGitContext };
