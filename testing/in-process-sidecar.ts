import { silentLogger } from '../core/log.ts';
import { loadSidecarConfig } from '../sidecar/src/config/sidecar-config.ts';
import type { Mirror } from '../sidecar/src/mirrors/mirror.ts';
import { type RunningSidecar, type SidecarOverrides, startSidecar } from '../sidecar/src/server/sidecar.ts';
import { openSnapshotService } from '../sidecar/src/snapshot/snapshot-service-impl.ts';
import { waitFor } from './wait.ts';

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

/**
 * Configures a mirror through the admin API as the operator does (PUT, then a restore) and
 * waits until its warm-up is over; the mirror is then `ready` or `failed`.
 */
export async function configureMirror(
  sidecar: RunningSidecar,
  mirror: { id: string; url: string },
): Promise<Mirror> {
  const at = `${sidecar.adminUrl}/v1/mirrors/${mirror.id}`;
  const put = await fetch(at, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ url: mirror.url }),
  });
  if (put.status !== 201) throw new Error(`PUT ${mirror.id}: ${put.status} ${await put.text()}`);
  await fetch(`${at}/restore`, { method: 'POST', body: '{}' });
  const configured = sidecar.mirrors.get(mirror.id)!;
  await waitFor(`${mirror.id} warm-up over`, () => ['ready', 'failed'].includes(configured.state), {
    timeoutMs: 60_000,
  });
  return configured;
}
