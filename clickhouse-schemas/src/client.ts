/**
 * One way to build a ClickHouse client for every service: `@clickhouse/client` (HTTP) with
 * defaults that suit Pepeunit, and a parser for the connection URLs operators write.
 */
import { redactUrlPassword } from '@pepeunit/common';
import { ClickHouseLogLevel, createClient, type ClickHouseClient, type ClickHouseSettings } from '@clickhouse/client';
import type { ClickHouseLogger } from './logger.js';

export interface ClickHouseConnectionInfo {
  /** HTTP(S) base URL without credentials or path, e.g. `http://clickhouse:8123`. */
  readonly url: string;
  readonly username: string;
  readonly password: string;
  readonly database: string;
}

const NATIVE_SCHEMES = new Set(['clickhouse:', 'clickhouse+native:', 'clickhouse+asynch:', 'clickhouses:']);
const HTTP_SCHEMES: Readonly<Record<string, 'http' | 'https'>> = {
  'http:': 'http',
  'https:': 'https',
  'clickhouse+http:': 'http',
  'clickhouse+https:': 'https',
};

const redact = redactUrlPassword;

/**
 * Parses a ClickHouse connection URL into the HTTP endpoint, credentials and database.
 *
 * Accepted forms:
 * - `http(s)://user:pass@host:port/db` (also `clickhouse+http(s)://…`): used as written;
 * - the reference's native forms `clickhouse://…` and `clickhouse+native://user:pass@host:9000/db`
 *   (and `clickhouse+asynch://`). We speak HTTP, so the port is mapped to the HTTP interface
 *   of the same server using ClickHouse's default ports: native 9000 -> HTTP 8123, native TLS
 *   9440 -> HTTPS 8443, no port -> 8123. `?secure=true` (or `clickhouses://`) selects HTTPS
 *   (8443 unless another port is given). Any other port is assumed to already be the HTTP port.
 *
 * The database is the first path segment (or `?database=`), `default` when absent; the user is
 * `default` when absent. Percent-encoded user, password and database are decoded.
 */
export function parseClickHouseUrl(raw: string): ClickHouseConnectionInfo {
  const text = raw.trim();
  let parsed: URL;
  try {
    parsed = new URL(text);
  } catch {
    throw new Error(
      `Invalid ClickHouse URL '${redact(text)}': expected http(s)://user:pass@host:8123/db or clickhouse+native://user:pass@host:9000/db`,
    );
  }
  const scheme = parsed.protocol.toLowerCase();
  const secureParam = (parsed.searchParams.get('secure') ?? '').toLowerCase();
  const secure = secureParam === 'true' || secureParam === '1' || scheme === 'clickhouses:';
  let protocol: 'http' | 'https';
  let port: string;
  if (HTTP_SCHEMES[scheme]) {
    protocol = HTTP_SCHEMES[scheme];
    port = parsed.port;
  } else if (NATIVE_SCHEMES.has(scheme)) {
    const nativePort = parsed.port;
    if (secure || nativePort === '9440' || nativePort === '8443') {
      protocol = 'https';
      port = nativePort === '' || nativePort === '9440' || nativePort === '9000' ? '8443' : nativePort;
    } else {
      protocol = 'http';
      port = nativePort === '' || nativePort === '9000' ? '8123' : nativePort;
    }
  } else {
    throw new Error(
      `Unsupported ClickHouse URL scheme '${scheme.replace(/:$/, '')}' in '${redact(text)}': use http://, https://, clickhouse:// or clickhouse+native://`,
    );
  }
  if (!parsed.hostname) throw new Error(`ClickHouse URL '${redact(text)}' has no host`);
  const decode = (s: string) => {
    try {
      return decodeURIComponent(s);
    } catch {
      throw new Error(`ClickHouse URL '${redact(text)}' has an invalid percent-encoding`);
    }
  };
  const firstSegment = parsed.pathname.split('/').filter(Boolean)[0];
  const database = firstSegment ? decode(firstSegment) : (parsed.searchParams.get('database') ?? 'default');
  return {
    url: `${protocol}://${parsed.hostname.includes(':') && !parsed.hostname.startsWith('[') ? `[${parsed.hostname}]` : parsed.hostname}${port ? `:${port}` : ''}`,
    username: parsed.username ? decode(parsed.username) : 'default',
    password: decode(parsed.password),
    database: database || 'default',
  };
}

export interface CreateClickHouseOptions {
  /** Overrides the user from the URL (default `default`). */
  username?: string;
  /** Overrides the password from the URL. */
  password?: string;
  /** Per-request timeout. Default 30 000 ms. */
  requestTimeoutMs?: number;
  /** Sockets per client. Default 10. */
  maxOpenConnections?: number;
  /** HTTP compression; both off by default (gzip costs CPU on a small machine; turn on for remote servers). */
  compression?: { request?: boolean; response?: boolean };
  /** Merged over the defaults (`date_time_input_format: 'best_effort'`). Sent with every request. */
  clickhouseSettings?: ClickHouseSettings;
  /** Shown in ClickHouse's query log as the client name. Default `pepeunit-ts`. */
  application?: string;
  /** How long an idle keep-alive socket is reused; keep it below the server's keep-alive timeout. Default 2 500 ms. */
  keepAliveIdleSocketTtlMs?: number;
  /**
   * Receives the client's own warnings and errors (socket problems, failed requests; never
   * credentials). Without it the client logs nothing: failed queries still reject their promise.
   */
  logger?: ClickHouseLogger;
}

interface ClientLogParams {
  module: string;
  message: string;
  args?: Record<string, unknown>;
  err?: Error;
}

/** Adapts our logger to the client's LoggerClass hook (a class constructed without arguments). */
function clientLoggerClass(logger: ClickHouseLogger) {
  const emit = (level: 'debug' | 'warn') => (p: ClientLogParams) =>
    logger[level]({ module: p.module, ...(p.args ? { args: p.args } : {}), ...(p.err ? { err: p.err } : {}) }, `ClickHouse client: ${p.message}`);
  return class {
    trace = emit('debug');
    debug = emit('debug');
    info = emit('debug');
    warn = emit('warn');
    error = emit('warn');
  };
}

/** Settings sent with every request. best_effort lets JSONEachRow carry ISO-8601 timestamps (`new Date().toISOString()`). */
export const DEFAULT_CLICKHOUSE_SETTINGS: ClickHouseSettings = {
  date_time_input_format: 'best_effort',
};

/**
 * Creates a `@clickhouse/client` bound to `database`. `url` is an HTTP(S) base URL or any URL
 * `parseClickHouseUrl` accepts (credentials in it are used unless `opts` overrides them; its
 * path is ignored in favour of `database`).
 */
export function createClickHouse(url: string, database: string, opts: CreateClickHouseOptions = {}): ClickHouseClient {
  const info = parseClickHouseUrl(url);
  return createClient({
    url: info.url,
    username: opts.username ?? info.username,
    password: opts.password ?? info.password,
    database: database || 'default',
    application: opts.application ?? 'pepeunit-ts',
    request_timeout: opts.requestTimeoutMs ?? 30_000,
    max_open_connections: opts.maxOpenConnections ?? 10,
    keep_alive: { enabled: true, idle_socket_ttl: opts.keepAliveIdleSocketTtlMs ?? 2_500 },
    compression: { request: opts.compression?.request ?? false, response: opts.compression?.response ?? false },
    clickhouse_settings: { ...DEFAULT_CLICKHOUSE_SETTINGS, ...opts.clickhouseSettings },
    log: opts.logger ? { LoggerClass: clientLoggerClass(opts.logger), level: ClickHouseLogLevel.WARN } : { level: ClickHouseLogLevel.OFF },
  });
}
