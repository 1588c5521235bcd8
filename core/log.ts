import { pino } from 'pino';

export type Logger = pino.Logger;

/**
 * JSON logs on stdout, one line per request, job or reconcile; the sidecar and the operator log
 * the same way, `name` tells them apart. `redact` is a second line of defence: code never puts
 * secrets in log fields, but if an Authorization header or a credential object slips into a log
 * call it is censored rather than written.
 */
export function createLogger(options: { name: string; level?: string }): Logger {
  return pino({
    name: options.name,
    level: options.level ?? process.env.GITMIRROR_LOG_LEVEL ?? 'info',
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: {
      paths: [
        'authorization',
        '*.authorization',
        'headers.authorization',
        'req.headers.authorization',
        'password',
        '*.password',
        'token',
        '*.token',
        'credentials',
        '*.credentials',
      ],
      censor: '[redacted]',
    },
  });
}

/** A logger that drops everything: for unit tests that do not assert on logs. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
