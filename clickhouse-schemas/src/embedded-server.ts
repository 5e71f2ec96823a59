/**
 * The embedded ClickHouse: the real engine from npm `chdb` (ClickHouse 26.x, in process),
 * served over ClickHouse's HTTP protocol so that other processes use it with the unmodified
 * `@clickhouse/client`, exactly as they would use a ClickHouse server.
 *
 * Request semantics follow clickhouse-server's HTTP handler:
 * - SQL in the POST body and/or `?query=` (for INSERT the statement is in `query`, the data in
 *   the body; the two are joined with a newline), GET is read-only;
 * - `database` / `X-ClickHouse-Database`, `default_format` / `X-ClickHouse-Format`, `query_id`,
 *   `param_<name>` bindings (URL or multipart/form-data), every other URL parameter is a setting
 *   that applies to this request only;
 * - `session_id` (+ `session_timeout`, `session_check`) keeps temporary tables, `SET` and `USE`
 *   between requests, like server sessions;
 * - gzip/deflate/br request bodies (Content-Encoding), compressed responses when
 *   `enable_http_compression=1` and Accept-Encoding allows;
 * - errors as `Code: N. DB::Exception: … (NAME) (version …)` with the status code ClickHouse uses
 *   and the `X-ClickHouse-Exception-Code` header.
 *
 * Authentication: every query needs the server's user and password, given the ways
 * clickhouse-server's HTTP interface accepts them (Basic auth, `X-ClickHouse-User` /
 * `X-ClickHouse-Key`, or `user` / `password` URL parameters); without them, or with wrong ones, the
 * answer is ClickHouse's `AUTHENTICATION_FAILED` (code 516, HTTP 403). Only the health checks
 * (`/ping`, `GET /` without a query) answer without credentials, as on a server.
 *
 * Isolation: each request without a session runs on its own short-lived chdb connection to the
 * shared engine (about 1 ms to open), so `SET`, `USE` and URL settings can never leak into the
 * next request. Statements run one at a time (one engine, a FIFO queue); HTTP connections are
 * accepted concurrently. Results are buffered, not streamed, so very large SELECTs cost memory.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import { chmod, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
// chdb is loaded lazily: importing it maps the 500 MB engine library (~150 MB RSS, ~0.5 s), a
// cost only the process that serves the engine should pay, not every importer of this package.
import type { ChdbResult, Session } from 'chdb';
import {
  ClickHouseServerFailure,
  contentTypeForFormat,
  decodeWireQueryParam,
  failureFromError,
  formatExceptionBody,
  httpStatusForException,
  multipartBoundary,
  negotiateEncoding,
  parseMultipart,
  placeholderTypes,
} from './http-protocol.js';
import { firstKeyword, findOutputFormat, secondStatementOffset, tokenizeSql, SqlLexError } from './sql-lexer.js';
import type { ClickHouseLogger } from './logger.js';
import { silentClickHouseLogger } from './logger.js';

/** ClickHouse's default `http_max_uri_size` (bytes): the longest request line and headers accepted. */
export const HTTP_MAX_URI_SIZE = 1_048_576;

export interface EmbeddedClickHouseOptions {
  /** Interface to listen on. Default 127.0.0.1 (the server has no TLS). */
  host?: string;
  /** TCP port; 0 (default) picks a free one. */
  port?: number;
  /** Data directory of the engine; created if missing. One directory per process (a chdb rule). */
  dataPath: string;
  logger?: ClickHouseLogger;
  /** Request bodies larger than this (compressed or not) are refused with HTTP 413. Default 256 MiB. */
  maxBodyBytes?: number;
  /** Requests waiting for the engine beyond this number are refused (TOO_MANY_SIMULTANEOUS_QUERIES). Default 1000. */
  maxQueuedRequests?: number;
  /**
   * The one user every query must authenticate as (Basic auth, X-ClickHouse-User/Key or
   * user/password URL parameters). The password may not be empty: there is no open mode.
   */
  auth: { username: string; password: string };
  /**
   * A ClickHouse server configuration file for the engine (`--config-file`), e.g. macros,
   * `remote_servers` and a test Keeper to check the cluster variant of the migrations.
   * It applies to the whole engine and must be the same for every server of this process.
   */
  configFile?: string;
}

export interface EmbeddedClickHouse {
  /** Base URL without credentials, e.g. `http://127.0.0.1:41234` (safe to print). */
  readonly url: string;
  /** The base URL with the credentials, e.g. `http://default:<password>@127.0.0.1:41234`, for `createClickHouse`. Never print it. */
  readonly authenticatedUrl: string;
  readonly port: number;
  /** Stops accepting connections, waits for queued and running queries, then releases the engine. */
  close(): Promise<void>;
}

const DEFAULT_MAX_BODY_BYTES = 256 * 1024 * 1024;
const DEFAULT_MAX_QUEUED = 1000;
const MAX_SESSIONS = 100;
const DEFAULT_SESSION_TIMEOUT_S = 60;
const MAX_SESSION_TIMEOUT_S = 3600;
const CLOSE_GRACE_MS = 30_000;

/** URL parameters that are part of the protocol, not settings. */
const PROTOCOL_PARAMS = new Set([
  'query', 'query_id', 'database', 'default_format', 'session_id', 'session_timeout', 'session_check', 'close_session',
  'role', 'user', 'password', 'quota_key', 'compress', 'decompress', 'buffer_size', 'stacktrace', 'client_protocol_version',
]);

/** Settings that only steer the HTTP layer: we honour them here and do not pass them to the engine. */
const HTTP_LAYER_SETTINGS = new Set([
  'enable_http_compression', 'http_zlib_compression_level', 'http_response_compression_method', 'wait_end_of_query',
  'http_wait_end_of_query', 'send_progress_in_http_headers', 'http_headers_progress_interval_ms', 'http_response_buffer_size',
  'http_native_compression_disable_checksumming_on_decompress', 'http_write_exception_in_output_format', 'add_http_cors_header',
  'cancel_http_readonly_queries_on_client_close', 'http_send_progress_in_http_headers',
]);

/** Formats chdb's zero-copy raw insert accepts (it whitelists them). */
const RAW_INSERT_FORMATS = new Set(['JSONEachRow', 'JSONCompactEachRow', 'CSV', 'CSVWithNames', 'TSV', 'TabSeparated', 'TSVWithNames', 'TabSeparatedWithNames']);
const SIMPLE_INSERT =
  /^\s*INSERT\s+INTO\s+(?:TABLE\s+)?([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)\s*(?:\(\s*([A-Za-z_][A-Za-z0-9_]*(?:\s*,\s*[A-Za-z_][A-Za-z0-9_]*)*)\s*\))?\s*FORMAT\s+([A-Za-z]+)\s*$/i;
const INSERT_WITH_FORMAT = /^\s*INSERT\s+INTO\b[\s\S]*\bFORMAT\s+[A-Za-z0-9_]+\s*$/i;

const SETTING_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

const gzip = promisify(zlib.gzip);
const deflate = promisify(zlib.deflate);
const brotli = promisify(zlib.brotliCompress);

/** One chdb data directory per process: remember which one this process serves. */
let processDataPath: string | undefined;
let processUsers = 0;

/** Serialises work on the engine. */
class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private waiting = 0;

  get size(): number {
    return this.waiting;
  }

  run<T>(job: () => Promise<T>): Promise<T> {
    this.waiting += 1;
    const result = this.tail.then(job);
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    void this.tail.then(() => {
      this.waiting -= 1;
    });
    return result;
  }

  /** Resolves when everything queued so far has finished. */
  async drain(): Promise<void> {
    let seen: Promise<unknown> | undefined;
    while (seen !== this.tail) {
      seen = this.tail;
      await seen;
    }
  }
}

interface NamedSession {
  readonly session: Session;
  timeoutMs: number;
  timer?: NodeJS.Timeout;
}

interface QueryRequest {
  readonly queryId: string;
  /** The statement text (query param and/or body). */
  readonly head: string;
  /** Body data when the statement came in `?query=` (INSERT data), else undefined. */
  readonly data: Buffer | undefined;
  readonly database: string | undefined;
  readonly defaultFormat: string | undefined;
  readonly settings: ReadonlyArray<readonly [string, string]>;
  readonly params: ReadonlyMap<string, string>;
  readonly sessionId: string | undefined;
  readonly sessionTimeoutS: number;
  readonly sessionCheck: boolean;
  readonly closeSession: boolean;
}

interface QueryOutcome {
  readonly body: Buffer;
  readonly format: string;
  readonly summary: Record<string, string>;
}

function quoteIdentifier(name: string): string {
  return '`' + name.replace(/\\/g, '\\\\').replace(/`/g, '\\`') + '`';
}

function quoteString(value: string): string {
  return "'" + value.replace(/\\/g, '\\\\').replace(/'/g, "\\'") + "'";
}

function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function summaryOf(values: { readRows?: number; readBytes?: number; writtenRows?: number; writtenBytes?: number; resultBytes?: number; elapsedS?: number }): Record<string, string> {
  const s = (n: number | undefined) => String(Math.max(0, Math.round(n ?? 0)));
  return {
    read_rows: s(values.readRows),
    read_bytes: s(values.readBytes),
    written_rows: s(values.writtenRows),
    written_bytes: s(values.writtenBytes),
    total_rows_to_read: s(values.readRows),
    result_rows: '0',
    result_bytes: s(values.resultBytes),
    elapsed_ns: s((values.elapsedS ?? 0) * 1e9),
  };
}

/** Reads a request body, refusing more than `limit` bytes. */
function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) {
      req.resume();
      reject(tooLarge(limit));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    req.on('data', (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > limit) {
        failed = true;
        chunks.length = 0;
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      if (!failed) resolve(Buffer.concat(chunks, size));
    });
    req.on('error', (err) => {
      if (!failed) {
        failed = true;
        reject(err);
      }
    });
  });
}

function tooLarge(limit: number): ClickHouseServerFailure {
  return ClickHouseServerFailure.of(
    'QUERY_IS_TOO_LARGE',
    `Request body is larger than the embedded ClickHouse limit of ${limit} bytes (${(limit / 1024 / 1024).toFixed(0)} MiB); send smaller batches`,
    413,
  );
}

async function decodeBody(body: Buffer, encoding: string | undefined, limit: number): Promise<Buffer> {
  const enc = (encoding ?? '').trim().toLowerCase();
  if (enc === '' || enc === 'identity' || body.length === 0) return body;
  const options = { maxOutputLength: limit };
  try {
    if (enc === 'gzip' || enc === 'x-gzip') return await promisify(zlib.gunzip)(body, options);
    if (enc === 'deflate') {
      try {
        return await promisify(zlib.inflate)(body, options);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw err;
        return await promisify(zlib.inflateRaw)(body, options); // some clients send raw deflate
      }
    }
    if (enc === 'br') return await promisify(zlib.brotliDecompress)(body, options);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) throw tooLarge(limit);
    throw ClickHouseServerFailure.of('CANNOT_DECOMPRESS', `Cannot decompress the request body (Content-Encoding: ${enc}): ${(err as Error).message}`, 400);
  }
  throw ClickHouseServerFailure.of('UNKNOWN_COMPRESSION_METHOD', `Unsupported Content-Encoding '${enc}'; the embedded ClickHouse accepts gzip, deflate and br`, 415);
}

function credentialsOf(req: http.IncomingMessage, url: URL): { user?: string; password?: string } {
  const authorization = req.headers.authorization;
  if (authorization && /^basic\s+/i.test(authorization)) {
    const decoded = Buffer.from(authorization.replace(/^basic\s+/i, ''), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    return colon === -1 ? { user: decoded, password: '' } : { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  // Like clickhouse-server: a missing user is `default`, a missing password empty.
  const headerUser = req.headers['x-clickhouse-user'];
  const headerKey = req.headers['x-clickhouse-key'];
  if (typeof headerUser === 'string' || typeof headerKey === 'string') {
    return { user: typeof headerUser === 'string' ? headerUser : 'default', password: typeof headerKey === 'string' ? headerKey : '' };
  }
  const user = url.searchParams.get('user');
  const password = url.searchParams.get('password');
  if (user !== null || password !== null) return { user: user ?? 'default', password: password ?? '' };
  return {};
}

/** Constant-time comparison of credentials (hashing first equalises the lengths). */
function sameSecret(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  const digest = (v: string) => createHash('sha256').update(v).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/**
 * Starts the embedded ClickHouse and resolves once it listens.
 * Throws a clear error when the port is busy or the data directory cannot be used.
 */
export async function startEmbeddedClickHouse(opts: EmbeddedClickHouseOptions): Promise<EmbeddedClickHouse> {
  const logger = opts.logger ?? silentClickHouseLogger;
  const host = opts.host ?? '127.0.0.1';
  const requestedPort = opts.port ?? 0;
  const maxBodyBytes = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const maxQueued = opts.maxQueuedRequests ?? DEFAULT_MAX_QUEUED;
  if (!Number.isInteger(requestedPort) || requestedPort < 0 || requestedPort > 65535) {
    throw new Error(`Embedded ClickHouse: invalid port ${String(opts.port)} (expected 0..65535; 0 picks a free port)`);
  }
  if (!opts.dataPath) throw new Error('Embedded ClickHouse: dataPath is required (the directory where the engine keeps its data)');
  if (!opts.auth?.username || !opts.auth.password) {
    throw new Error('Embedded ClickHouse: auth { username, password } with a non-empty password is required (every query authenticates)');
  }
  const auth = { username: opts.auth.username, password: opts.auth.password };
  const dataPath = path.resolve(opts.dataPath);
  if (processDataPath !== undefined && processDataPath !== dataPath) {
    throw new Error(
      `Embedded ClickHouse: this process already serves chdb data directory '${processDataPath}'; chdb binds one data directory per process. ` +
        `Use the same dataPath, or run another server in its own process (src/server-cli.ts).`,
    );
  }
  // The data is for this user only (also narrowing a directory an older version created wider).
  await mkdir(dataPath, { recursive: true, mode: 0o700 });
  await chmod(dataPath, 0o700).catch((err: unknown) => logger.warn({ err, dataPath }, 'embedded ClickHouse: could not make the data directory private (mode 700)'));
  const { Session, drainPending } = await import('chdb');

  let anchor: Session;
  try {
    // The anchor connection keeps the engine open for the server's lifetime; requests use their own connections.
    anchor = opts.configFile ? new Session(dataPath, { connectionArgs: [`--config-file=${path.resolve(opts.configFile)}`] }) : new Session(dataPath);
  } catch (err) {
    throw new Error(
      `Embedded ClickHouse: cannot open chdb data directory '${dataPath}': ${(err as Error).message}. ` +
        `Another process may be using it (ClickHouse locks ${path.join(dataPath, 'status')}), or it is not writable.`,
      { cause: err },
    );
  }
  processDataPath = dataPath;
  processUsers += 1;

  let version = 'unknown';
  let timezone = 'UTC';
  try {
    const info = (await anchor.queryAsync('SELECT version(), timezone()', { format: 'TabSeparated' })).text().trim().split('\t');
    version = info[0] ?? version;
    timezone = info[1] ?? timezone;
  } catch (err) {
    logger.warn({ err }, 'embedded ClickHouse: could not read engine version');
  }

  const queue = new SerialQueue();
  const sessions = new Map<string, NamedSession>();
  let closing: Promise<void> | undefined;

  const releaseEngine = async () => {
    for (const [id, named] of sessions) {
      if (named.timer) clearTimeout(named.timer);
      named.session.close();
      sessions.delete(id);
    }
    anchor.close();
    await drainPending();
    processUsers -= 1;
    if (processUsers === 0) processDataPath = undefined;
  };

  const scheduleExpiry = (id: string, named: NamedSession) => {
    if (named.timer) clearTimeout(named.timer);
    named.timer = setTimeout(() => {
      void queue.run(async () => {
        if (sessions.get(id) === named) {
          sessions.delete(id);
          named.session.close();
          logger.debug({ sessionId: id }, 'embedded ClickHouse: session expired');
        }
      });
    }, named.timeoutMs);
    named.timer.unref();
  };

  /** Runs one query on the engine (called inside the queue). */
  const execute = async (q: QueryRequest): Promise<QueryOutcome> => {
    let named: NamedSession | undefined;
    if (q.sessionId !== undefined) {
      named = sessions.get(q.sessionId);
      if (!named) {
        if (q.sessionCheck) throw ClickHouseServerFailure.of('SESSION_NOT_FOUND', `Session ${q.sessionId} not found`, 404);
        if (sessions.size >= MAX_SESSIONS) {
          throw ClickHouseServerFailure.of('TOO_MANY_SIMULTANEOUS_QUERIES', `Too many open sessions (limit ${MAX_SESSIONS})`);
        }
        named = { session: new Session(dataPath), timeoutMs: q.sessionTimeoutS * 1000 };
        sessions.set(q.sessionId, named);
      }
      named.timeoutMs = q.sessionTimeoutS * 1000;
    }
    const session = named?.session ?? new Session(dataPath);
    const restore: string[] = [];
    try {
      const settingNames = q.settings.map(([name]) => name);
      if (named && settingNames.length > 0) {
        // Settings from the URL apply to this query only, even inside a session: remember the session's values.
        const current = await session.queryAsync(
          `SELECT name, value, changed FROM system.settings WHERE name IN (${settingNames.map(quoteString).join(', ')})`,
          { format: 'JSONEachRow' },
        );
        const rows = current.text().split('\n').filter(Boolean).map((line) => JSON.parse(line) as { name: string; value: string; changed: number });
        for (const row of rows) restore.push(row.changed ? `SET ${row.name} = ${quoteString(row.value)}` : `SET ${row.name} = DEFAULT`);
      }
      if (named && q.database !== undefined) {
        const db = (await session.queryAsync('SELECT currentDatabase()', { format: 'TabSeparated' })).text().trim();
        restore.push(`USE ${quoteIdentifier(db)}`);
      }
      if (q.database !== undefined && q.database !== '') await session.queryAsync(`USE ${quoteIdentifier(q.database)}`, { format: 'TabSeparated' });
      if (q.settings.length > 0) {
        // readonly last: once set, it may forbid changing the others.
        const ordered = [...q.settings].sort(([a], [b]) => Number(a === 'readonly') - Number(b === 'readonly'));
        await session.queryAsync(`SET ${ordered.map(([name, value]) => `${name} = ${quoteString(value)}`).join(', ')}`, { format: 'TabSeparated' });
      }
      return await runStatement(session, q);
    } finally {
      if (named) {
        for (const statement of restore.reverse()) {
          try {
            await session.queryAsync(statement, { format: 'TabSeparated' });
          } catch (err) {
            logger.warn({ err, sessionId: q.sessionId }, 'embedded ClickHouse: could not restore session state');
          }
        }
        if (q.sessionId !== undefined && q.closeSession) {
          if (named.timer) clearTimeout(named.timer);
          sessions.delete(q.sessionId);
          named.session.close();
        } else if (q.sessionId !== undefined) {
          scheduleExpiry(q.sessionId, named);
        }
      } else {
        session.close();
      }
    }
  };

  const runStatement = async (session: Session, q: QueryRequest): Promise<QueryOutcome> => {
    const defaultFormat = q.defaultFormat || 'TabSeparated';
    const tokens = safeTokens(q.head);
    const keyword = tokens ? firstKeyword(tokens) : undefined;
    const isInsert = keyword === 'INSERT';
    const format = (!isInsert && tokens && findOutputFormat(tokens)) || defaultFormat;
    const hasData = q.data !== undefined && q.data.length > 0;
    if (tokens && !isInsert && !hasData) {
      const offset = secondStatementOffset(tokens);
      if (offset !== -1) {
        throw ClickHouseServerFailure.of('SYNTAX_ERROR', `Syntax error (Multi-statements are not allowed): failed at position ${offset + 1}: ${q.head.slice(offset, offset + 40)}`);
      }
    }
    if (q.head.trim() === '') throw ClickHouseServerFailure.of('SYNTAX_ERROR', 'Empty query');

    // HTTP-style insert: statement in ?query=, rows in the body.
    if (q.data !== undefined && q.params.size === 0 && INSERT_WITH_FORMAT.test(q.head)) {
      if (q.data.length <= 4096 && q.data.toString('utf8').trim() === '') {
        // Nothing to insert: succeed with zero rows like the server does for an empty body.
        return { body: Buffer.alloc(0), format: defaultFormat, summary: summaryOf({}) };
      }
      const simple = SIMPLE_INSERT.exec(q.head);
      if (simple && RAW_INSERT_FORMATS.has(simple[3] as string)) {
        const columns = simple[2]?.split(',').map((c) => c.trim());
        const summary = await session.insert({
          table: simple[1] as string,
          values: q.data,
          format: simple[3] as 'JSONEachRow',
          ...(columns ? { columns } : {}),
        });
        return {
          body: Buffer.alloc(0),
          format: defaultFormat,
          summary: summaryOf({ readRows: summary.rowsWritten, readBytes: summary.bytesSent, writtenRows: summary.rowsWritten, writtenBytes: summary.bytesWritten, elapsedS: summary.elapsed }),
        };
      }
    }

    let sql = q.head;
    if (hasData && q.data !== undefined) {
      let text: string;
      try {
        text = new TextDecoder('utf-8', { fatal: true }).decode(q.data);
      } catch {
        throw ClickHouseServerFailure.of(
          'NOT_IMPLEMENTED',
          'The request body is not UTF-8 text: binary input formats (RowBinary, Native, Parquet, …) are not supported by the embedded ClickHouse; use JSONEachRow, CSV or TabSeparated',
        );
      }
      sql = `${q.head}\n${text}`;
    }
    let result: ChdbResult;
    if (q.params.size > 0) {
      const types = placeholderTypes(q.head);
      const bound: Record<string, string | null> = {};
      for (const [name, raw] of q.params) bound[name] = decodeWireQueryParam(raw, types.get(name));
      result = await session.queryBindAsync(sql, bound, { format: defaultFormat });
    } else {
      result = await session.queryAsync(sql, { format: defaultFormat });
    }
    const body = toBuffer(result.bytes());
    return {
      body,
      format,
      summary: summaryOf({ readRows: result.rowsRead, readBytes: result.bytesRead, resultBytes: body.length, elapsedS: result.elapsed }),
    };
  };

  const safeTokens = (sql: string) => {
    try {
      return tokenizeSql(sql);
    } catch (err) {
      if (err instanceof SqlLexError) return undefined; // let the engine report the syntax error
      throw err;
    }
  };

  const send = async (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    status: number,
    headers: Record<string, string>,
    body: Buffer,
    compression: { enabled: boolean; level: number },
  ) => {
    let payload = body;
    const out: Record<string, string> = { ...headers };
    if (compression.enabled && body.length > 0) {
      const encoding = negotiateEncoding(req.headers['accept-encoding'], ['gzip', 'deflate', 'br']);
      if (encoding === 'gzip') payload = await gzip(body, { level: compression.level });
      else if (encoding === 'deflate') payload = await deflate(body, { level: compression.level });
      else if (encoding === 'br') payload = await brotli(body);
      if (encoding) out['Content-Encoding'] = encoding;
    }
    out['Content-Length'] = String(payload.length);
    if (closing) out.Connection = 'close';
    if (res.destroyed) return;
    res.writeHead(status, out);
    res.end(req.method === 'HEAD' ? undefined : payload);
  };

  const sendFailure = async (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    failure: ClickHouseServerFailure,
    queryId: string | undefined,
    compression: { enabled: boolean; level: number },
  ) => {
    const headers: Record<string, string> = {
      'Content-Type': 'text/plain; charset=UTF-8',
      'X-ClickHouse-Exception-Code': String(failure.code),
      'X-ClickHouse-Server-Display-Name': 'pepeunit-embedded-clickhouse',
    };
    if (queryId) headers['X-ClickHouse-Query-Id'] = queryId;
    await send(req, res, failure.httpStatus ?? httpStatusForException(failure.exceptionName), headers, Buffer.from(formatExceptionBody(failure, version)), compression);
  };

  let inflight = 0;
  let inflightDone: (() => void) | undefined;
  const handle = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    inflight += 1;
    try {
      await handleRequest(req, res);
    } finally {
      inflight -= 1;
      if (inflight === 0) inflightDone?.();
    }
  };

  const handleRequest = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const started = Date.now();
    const url = new URL(req.url ?? '/', 'http://embedded.invalid');
    const method = req.method ?? 'GET';
    const compression = {
      enabled: ['1', 'true'].includes(url.searchParams.get('enable_http_compression') ?? ''),
      level: Math.min(9, Math.max(1, Number(url.searchParams.get('http_zlib_compression_level') ?? 3) || 3)),
    };
    const queryId = url.searchParams.get('query_id') || randomUUID();
    const plain = { 'Content-Type': 'text/html; charset=UTF-8' };
    try {
      if (url.pathname === '/ping' || url.pathname === '/replicas_status') {
        req.resume();
        await send(req, res, 200, plain, Buffer.from('Ok.\n'), { enabled: false, level: 1 });
        return;
      }
      if (url.pathname !== '/') {
        req.resume();
        await send(req, res, 404, { 'Content-Type': 'text/plain; charset=UTF-8' }, Buffer.from(`There is no handle ${url.pathname}\n\nUse / or /ping for health checks.\nSend queries with POST or GET /?query=...\n`), { enabled: false, level: 1 });
        return;
      }
      if ((method === 'GET' || method === 'HEAD') && !url.searchParams.has('query')) {
        req.resume();
        await send(req, res, 200, plain, Buffer.from('Ok.\n'), { enabled: false, level: 1 });
        return;
      }
      if (method !== 'GET' && method !== 'POST' && method !== 'HEAD') {
        req.resume();
        throw ClickHouseServerFailure.of('UNSUPPORTED_METHOD', `HTTP method ${method} is not supported; use GET or POST`, 405);
      }
      if (closing) {
        req.resume();
        throw ClickHouseServerFailure.of('ABORTED', 'The embedded ClickHouse server is shutting down', 503);
      }
      const given = credentialsOf(req, url);
      // Both compared (in constant time) so a wrong user and a wrong password look the same.
      const userMatches = sameSecret(given.user, auth.username);
      const passwordMatches = sameSecret(given.password, auth.password);
      if (!userMatches || !passwordMatches) {
        req.resume();
        throw ClickHouseServerFailure.of(
          'AUTHENTICATION_FAILED',
          `${given.user ?? 'default'}: Authentication failed: password is incorrect, or there is no user with such name`,
        );
      }
      if (url.searchParams.get('compress') === '1' || url.searchParams.get('decompress') === '1') {
        req.resume();
        throw ClickHouseServerFailure.of('NOT_IMPLEMENTED', 'ClickHouse native compression (compress=1/decompress=1) is not supported by the embedded ClickHouse; use Content-Encoding gzip');
      }
      if (queue.size >= maxQueued) {
        req.resume();
        throw ClickHouseServerFailure.of('TOO_MANY_SIMULTANEOUS_QUERIES', `Too many queued queries (limit ${maxQueued})`);
      }

      const rawBody = method === 'POST' ? await readBody(req, maxBodyBytes) : (req.resume(), Buffer.alloc(0));
      const body = await decodeBody(rawBody, req.headers['content-encoding'], maxBodyBytes);

      const params = new Map<string, string>();
      const settings: Array<[string, string]> = [];
      for (const [key, value] of url.searchParams) {
        if (key.startsWith('param_')) params.set(key.slice('param_'.length), value);
        else if (PROTOCOL_PARAMS.has(key) || HTTP_LAYER_SETTINGS.has(key)) continue;
        else if (!SETTING_NAME.test(key)) throw ClickHouseServerFailure.of('BAD_ARGUMENTS', `Invalid setting name '${key}'`);
        else settings.push([key, value]);
      }
      if ((method === 'GET' || method === 'HEAD') && !settings.some(([k]) => k === 'readonly')) settings.push(['readonly', '2']);

      let head: string;
      let data: Buffer | undefined;
      const urlQuery = url.searchParams.get('query');
      const boundary = multipartBoundary(req.headers['content-type']);
      if (boundary !== undefined) {
        let bodyQuery: string | undefined;
        for (const field of parseMultipart(body, boundary)) {
          if (field.filename !== undefined) {
            throw ClickHouseServerFailure.of('NOT_IMPLEMENTED', `External data (multipart file '${field.name}') is not supported by the embedded ClickHouse`);
          }
          if (field.name === 'query') bodyQuery = field.value.toString('utf8');
          else if (field.name.startsWith('param_')) params.set(field.name.slice('param_'.length), field.value.toString('utf8'));
          else throw ClickHouseServerFailure.of('NOT_IMPLEMENTED', `Unsupported multipart field '${field.name}' (only 'query' and 'param_*' are supported)`);
        }
        head = [urlQuery, bodyQuery].filter((s): s is string => s !== null && s !== undefined).join('\n');
      } else if (urlQuery !== null) {
        head = urlQuery;
        data = method === 'POST' ? body : undefined;
      } else {
        head = body.toString('utf8');
      }

      const headerDatabase = req.headers['x-clickhouse-database'];
      const headerFormat = req.headers['x-clickhouse-format'];
      const sessionTimeoutRaw = url.searchParams.get('session_timeout');
      const sessionTimeoutS = sessionTimeoutRaw === null ? DEFAULT_SESSION_TIMEOUT_S : Number(sessionTimeoutRaw);
      if (!Number.isFinite(sessionTimeoutS) || sessionTimeoutS <= 0 || sessionTimeoutS > MAX_SESSION_TIMEOUT_S) {
        throw ClickHouseServerFailure.of('BAD_ARGUMENTS', `session_timeout must be between 1 and ${MAX_SESSION_TIMEOUT_S} seconds`);
      }
      const request: QueryRequest = {
        queryId,
        head,
        data,
        database: (typeof headerDatabase === 'string' && headerDatabase !== '' ? headerDatabase : url.searchParams.get('database')) ?? undefined,
        defaultFormat: (typeof headerFormat === 'string' && headerFormat !== '' ? headerFormat : url.searchParams.get('default_format')) ?? undefined,
        settings,
        params,
        sessionId: url.searchParams.get('session_id') || undefined,
        sessionTimeoutS,
        sessionCheck: url.searchParams.get('session_check') === '1',
        closeSession: url.searchParams.get('close_session') === '1',
      };
      const outcome = await queue.run(() => execute(request));
      await send(
        req,
        res,
        200,
        {
          'Content-Type': contentTypeForFormat(outcome.format),
          'X-ClickHouse-Query-Id': queryId,
          'X-ClickHouse-Format': outcome.format,
          'X-ClickHouse-Timezone': timezone,
          'X-ClickHouse-Server-Display-Name': 'pepeunit-embedded-clickhouse',
          'X-ClickHouse-Summary': JSON.stringify(outcome.summary),
        },
        outcome.body,
        compression,
      );
      logger.debug({ queryId, ms: Date.now() - started, bytes: outcome.body.length }, 'embedded ClickHouse: query done');
    } catch (err) {
      const failure = failureFromError(err);
      if (failure.exceptionName === 'STD_EXCEPTION') logger.error({ err, queryId }, 'embedded ClickHouse: unexpected failure');
      else logger.debug({ queryId, code: failure.code, name: failure.exceptionName }, 'embedded ClickHouse: query failed');
      try {
        await sendFailure(req, res, failure, queryId, compression);
      } catch (sendErr) {
        logger.warn({ err: sendErr }, 'embedded ClickHouse: could not send the error response');
        res.destroy();
      }
    }
  };

  // Query parameters travel in the URL: ClickHouse accepts URIs up to http_max_uri_size (1 MiB
  // by default), Node only 16 KiB of headers. A statement with a few hundred bound UUIDs (the
  // NRecords trim, reads of many nodes) must not fail here when it works on a server.
  const server = http.createServer({ maxHeaderSize: HTTP_MAX_URI_SIZE }, (req, res) => {
    void handle(req, res);
  });
  server.keepAliveTimeout = 10_000;
  server.requestTimeout = 0; // large inserts may take a while; the body size is bounded instead
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable) return;
    // Say why, as ClickHouse does, instead of an empty 400 the client reports as a blank error.
    const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
    const body = tooLarge ? `Code: 36. DB::Exception: URI or headers are longer than ${HTTP_MAX_URI_SIZE} bytes. (BAD_ARGUMENTS)\n` : `Code: 1000. DB::Exception: malformed HTTP request: ${err.code ?? 'parse error'}. (POCO_EXCEPTION)\n`;
    socket.end(`HTTP/1.1 ${tooLarge ? '431 Request Header Fields Too Large' : '400 Bad Request'}\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  });

  try {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        server.off('listening', onListening);
        reject(
          err.code === 'EADDRINUSE'
            ? new Error(`Embedded ClickHouse: port ${requestedPort} on ${host} is already in use; choose another port (0 picks a free one)`)
            : err.code === 'EACCES'
              ? new Error(`Embedded ClickHouse: not allowed to listen on ${host}:${requestedPort}`)
              : err,
        );
      };
      const onListening = () => {
        server.off('error', onError);
        resolve();
      };
      server.once('error', onError);
      server.once('listening', onListening);
      server.listen(requestedPort, host);
    });
  } catch (err) {
    await releaseEngine();
    throw err;
  }
  server.on('error', (err) => logger.error({ err }, 'embedded ClickHouse: HTTP server error'));

  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : host;
  const baseUrl = `http://${urlHost}:${port}`;
  logger.info({ url: baseUrl, dataPath, version }, 'embedded ClickHouse listening');

  const authenticated = new URL(baseUrl);
  authenticated.username = encodeURIComponent(auth.username);
  authenticated.password = encodeURIComponent(auth.password);
  return {
    url: baseUrl,
    authenticatedUrl: authenticated.toString().replace(/\/$/, ''),
    port,
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        // Let requests already received finish (bounded, so a stalled upload cannot block shutdown).
        if (inflight > 0) {
          await Promise.race([
            new Promise<void>((resolve) => (inflightDone = resolve)),
            new Promise<void>((resolve) => setTimeout(resolve, CLOSE_GRACE_MS).unref()),
          ]);
        }
        await queue.drain();
        server.closeAllConnections();
        await stopped;
        await releaseEngine();
        logger.info({ url: baseUrl }, 'embedded ClickHouse stopped');
      })();
      return closing;
    },
  };
}
