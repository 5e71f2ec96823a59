import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/** Keys whose values are never written to logs. */
export const REDACT_PATHS = [
  'password',
  '*.password',
  'pat_token',
  '*.pat_token',
  'token',
  '*.token',
  'secret',
  '*.secret',
  'req.headers["x-auth-token"]',
  'req.headers.authorization',
  'req.headers.cookie',
  'headers["x-auth-token"]',
  'headers.authorization',
];

export function createLogger(name: string, opts: { level?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  const options: LoggerOptions = {
    name,
    level: opts.level ?? process.env.PU_LOG_LEVEL_OVERRIDE ?? 'info',
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { service: name },
  };
  return opts.destination ? pino(options, opts.destination as never) : pino(options);
}

/** A logger that writes nothing (library default). */
export const silentLogger: Logger = pino({ level: 'silent' });
