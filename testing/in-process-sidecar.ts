import { silentLogger } from '../core/log.ts';
import { loadSidecarConfig } from '../sidecar/src/config/sidecar-config.ts';
import { type RunningSidecar, type SidecarOverrides, startSidecar } from '../sidecar/src/server/sidecar.ts';
import { openSnapshotService } from '../sidecar/src/snapshot/snapshot-service-impl.ts';

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
