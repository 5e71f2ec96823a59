import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/**
 * The part of a logger that components take: pino's `Logger`, Fastify's `app.log` and small test
 * doubles all fit (one declaration for every package; `silentSink` when none is given).
 */
export interface LogSink {
  debug(obj: unknown, msg?: string): void;
  info(obj: unknown, msg?: string): void;
  warn(obj: unknown, msg?: string): void;
  error(obj: unknown, msg?: string): void;
}

const noop = (): void => {};
export const silentSink: LogSink = { debug: noop, info: noop, warn: noop, error: noop };

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

const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARNING', 50: 'ERROR', 60: 'CRITICAL' };

/**
 * One pino JSON line as `PU_LOG_FORMAT=plain` text: `<time> <LEVEL> <service>: <msg> {fields}`,
 * then an error's stack line by line (as the reference's plain format prints a traceback).
 */
export function plainLogLine(jsonLine: string): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(jsonLine) as Record<string, unknown>;
  } catch {
    return jsonLine.endsWith('\n') ? jsonLine : jsonLine + '\n';
  }
  const { time, level, msg, service, name: _name, pid: _pid, hostname: _hostname, err, ...rest } = record;
  const when = typeof time === 'number' ? new Date(time).toISOString() : String(time ?? '');
  const levelName = LEVEL_NAMES[Number(level)] ?? String(level);
  const fields = Object.keys(rest).length > 0 ? ' ' + JSON.stringify(rest) : '';
  let out = `${when} ${levelName} ${String(service ?? '')}: ${String(msg ?? '')}${fields}\n`;
  if (err && typeof err === 'object') {
    const e = err as { message?: unknown; stack?: unknown };
    out += typeof e.stack === 'string' ? e.stack.replace(/^/gm, '    ') + '\n' : `    ${String(e.message ?? '')}\n`;
  }
  return out;
}

/** `format: 'plain'` turns each JSON line into `plainLogLine` text on the same destination. */
function plainDestination(target: NodeJS.WritableStream): { write(chunk: string): boolean } {
  return { write: (chunk: string) => target.write(plainLogLine(chunk)) };
}

export function createLogger(
  name: string,
  opts: { level?: string; format?: 'json' | 'plain'; destination?: NodeJS.WritableStream } = {},
): Logger {
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
    level: opts.level ?? 'info',
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { service: name },
  };
  const destination = opts.format === 'plain' ? plainDestination(opts.destination ?? process.stdout) : opts.destination;
  return destination ? pino(options, destination as never) : pino(options);
}

/** A logger that writes nothing (library default). */
export const silentLogger: Logger = pino({ level: 'silent' });
