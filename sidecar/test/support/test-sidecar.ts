import { silentLogger } from '../../../core/log.ts';
import { loadSidecarConfig } from '../../src/config/sidecar-config.ts';
import { type RunningSidecar, type SidecarOverrides, startSidecar } from '../../src/server/sidecar.ts';
import { openSnapshotService } from '../../src/snapshot/snapshot-service-impl.ts';

/**
 * An in-process sidecar on loopback with ephemeral ports, configured through the same
 * environment variables as production, with the real snapshot layer.
 */
export async function startTestSidecar(
  env: Record<string, string>,
  overrides: SidecarOverrides = {},
): Promise<RunningSidecar> {
  const config = loadSidecarConfig({
    GITMIRROR_LISTEN: '127.0.0.1:0',
    GITMIRROR_ADMIN_LISTEN: '127.0.0.1:0',
    GITMIRROR_SHUTDOWN_TIMEOUT: '2s',
    ...env,
  });
  const logger = overrides.logger ?? silentLogger();
  return startSidecar(config, { logger, snapshots: (c) => openSnapshotService(c, logger), ...overrides });
}

/** Polls until `check` returns true, or fails with `what` after `timeoutMs`. */
export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 30_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}
