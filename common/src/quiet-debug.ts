/**
 * Import first in a hot process (the ingest, the embedded broker) to make the `debug` package a
 * no-op when `DEBUG` is not set. mqtt.js and mqtt-packet call their `debug` loggers about ten
 * times per MQTT packet; even disabled, each call costs an argument array and a getter: about 5 %
 * of the ingest's CPU at 100 000 msg/s. With `DEBUG` set, nothing changes.
 *
 * It works by placing a stand-in in the CommonJS module cache under the path `require('debug')`
 * resolves to, before any module that requires it is loaded.
 */
import { createRequire } from 'node:module';

interface NoopDebugger {
  (...args: unknown[]): void;
  enabled: boolean;
  namespace: string;
  log: (...args: unknown[]) => void;
  extend(suffix: string, delimiter?: string): NoopDebugger;
  destroy(): boolean;
}

function noopDebugger(namespace: string): NoopDebugger {
  const log = (() => {}) as unknown as NoopDebugger;
  log.enabled = false;
  log.namespace = namespace;
  log.log = () => {};
  log.extend = (suffix: string, delimiter = ':') => noopDebugger(`${namespace}${delimiter}${suffix}`);
  log.destroy = () => false;
  return log;
}

function createDebug(namespace: string): NoopDebugger {
  return noopDebugger(namespace);
}
Object.assign(createDebug, {
  default: createDebug,
  debug: createDebug,
  enable: () => {},
  disable: () => '',
  enabled: () => false,
  names: [] as RegExp[],
  skips: [] as RegExp[],
  formatters: {} as Record<string, unknown>,
  coerce: (value: unknown) => value,
  selectColor: () => 0,
  humanize: (ms: number) => `${ms}ms`,
  log: () => {},
});

/** True when the stand-in was installed (DEBUG unset and `debug` not loaded yet). */
export function quietDebug(): boolean {
  if (process.env.DEBUG) return false;
  const require = createRequire(import.meta.url);
  let path: string;
  try {
    path = require.resolve('debug');
  } catch {
    return false;
  }
  if (require.cache[path]) return false;
  require.cache[path] = { id: path, filename: path, loaded: true, exports: createDebug, children: [], paths: [] } as unknown as NodeJS.Module;
  return true;
}

quietDebug();
