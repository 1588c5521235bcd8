// The operator logs the way the sidecar does (JSON lines, secrets redacted): one logger module.
export { createLogger, type Logger, silentLogger } from '../../sidecar/src/log/logger.ts';
