/** The subset of a pino logger this package uses; any pino Logger fits. */
export interface ClickHouseLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

const noop = () => {};

/** Default logger: writes nothing. */
export const silentClickHouseLogger: ClickHouseLogger = { debug: noop, info: noop, warn: noop, error: noop };
