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

/** Called for every log call at error level (50) or above of any logger made by `createLogger`. */
export type ErrorLogTap = (level: number, args: readonly unknown[]) => void;
const errorTaps = new Set<ErrorLogTap>();

/** Adds a tap (the error tracker, issue 13); returns its removal. A tap that throws is ignored. */
export function onErrorLogged(tap: ErrorLogTap): () => void {
  errorTaps.add(tap);
  return () => errorTaps.delete(tap);
}

export function createLogger(name: string, opts: { level?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  const options: LoggerOptions = {
    hooks: {
      logMethod(args, method, level) {
        if (level >= 50 && errorTaps.size > 0) {
          for (const tap of errorTaps) {
            try {
              tap(level, args);
            } catch {
              // Never let error tracking break logging.
            }
          }
        }
        return method.apply(this, args);
      },
    },
    name,
    level: opts.level ?? process.env.PU_LOG_LEVEL_OVERRIDE ?? 'info',
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { service: name },
  };
  return opts.destination ? pino(options, opts.destination as never) : pino(options);
}

/** A logger that writes nothing (library default). */
export const silentLogger: Logger = pino({ level: 'silent' });
