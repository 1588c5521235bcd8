import { createLogger } from '../../core/log.ts';
import { loadSidecarConfig } from './config/sidecar-config.ts';
import { describeError } from './errors/gitmirror-error.ts';
import { startSidecar } from './server/sidecar.ts';
import { openSnapshotService } from './snapshot/snapshot-service-impl.ts';

const logger = createLogger({ name: 'gitmirror-sidecar' });

try {
  const config = loadSidecarConfig();
  const sidecar = await startSidecar(config, { logger, snapshots: (c) => openSnapshotService(c, logger) });
  let signals = 0;
  const onSignal = (signal: string) => {
    signals++;
    if (signals > 1) process.exit(1);
    logger.info({ signal }, 'signal received');
    sidecar.shutdown().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
} catch (err) {
  logger.fatal({ err: describeError(err) }, 'sidecar failed to start');
  process.exitCode = 1;
}
