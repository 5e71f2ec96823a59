/** The logger shape the MQTT consumers need (pino-compatible); silent by default. */
export interface MinimalLogger {
  debug(obj: unknown, msg?: string): void;
  info(obj: unknown, msg?: string): void;
  warn(obj: unknown, msg?: string): void;
  error(obj: unknown, msg?: string): void;
}

const noop = (): void => {};
export const silent: MinimalLogger = { debug: noop, info: noop, warn: noop, error: noop };
