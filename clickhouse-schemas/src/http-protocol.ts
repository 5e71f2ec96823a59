/**
 * Pieces of ClickHouse's HTTP protocol that the embedded server needs and that are pure
 * functions: error formatting and status codes, parameter decoding, content types,
 * multipart bodies. Kept apart from the server so they can be tested with tables of cases.
 */

/** Error codes we raise ourselves (values from ClickHouse's ErrorCodes.cpp). */
export const ErrorCode = {
  UNSUPPORTED_METHOD: 1,
  BAD_ARGUMENTS: 36,
  NOT_IMPLEMENTED: 48,
  SYNTAX_ERROR: 62,
  UNKNOWN_COMPRESSION_METHOD: 89,
  TOO_MANY_SIMULTANEOUS_QUERIES: 202,
  QUERY_IS_TOO_LARGE: 229,
  ABORTED: 236,
  CANNOT_DECOMPRESS: 271,
  SESSION_NOT_FOUND: 372,
  BAD_QUERY_PARAMETER: 457,
  AUTHENTICATION_FAILED: 516,
  STD_EXCEPTION: 1001,
} as const;

export type ErrorName = keyof typeof ErrorCode;

/** A failure in ClickHouse's terms: numeric code, exception name and message (without prefixes). */
export class ClickHouseServerFailure extends Error {
  constructor(
    readonly code: number,
    readonly exceptionName: string,
    message: string,
    /** Overrides the status derived from the exception name. */
    readonly httpStatus?: number,
  ) {
    super(message);
    this.name = 'ClickHouseServerFailure';
  }

  static of(name: ErrorName, message: string, httpStatus?: number): ClickHouseServerFailure {
    return new ClickHouseServerFailure(ErrorCode[name], name, message, httpStatus);
  }
}

const STATUS_BY_NAME: ReadonlyMap<string, number> = (() => {
  const map = new Map<string, number>();
  const set = (status: number, names: string) => names.split(/\s+/).filter(Boolean).forEach((n) => map.set(n, status));
  // Mirrors src/Server/HTTP/exceptionCodeToHTTPStatus.cpp of ClickHouse.
  set(401, 'REQUIRED_PASSWORD');
  set(403, 'UNKNOWN_USER WRONG_PASSWORD AUTHENTICATION_FAILED SET_NON_GRANTED_ROLE ACCESS_DENIED');
  set(
    400,
    `BAD_ARGUMENTS CANNOT_COMPILE_REGEXP CANNOT_PARSE_TEXT CANNOT_PARSE_ESCAPE_SEQUENCE CANNOT_PARSE_QUOTED_STRING
     CANNOT_PARSE_DATE CANNOT_PARSE_DATETIME CANNOT_PARSE_NUMBER CANNOT_PARSE_DOMAIN_VALUE_FROM_STRING CANNOT_PARSE_IPV4
     CANNOT_PARSE_IPV6 CANNOT_PARSE_INPUT_ASSERTION_FAILED CANNOT_PARSE_UUID DUPLICATE_COLUMN ILLEGAL_COLUMN
     UNKNOWN_ELEMENT_IN_AST UNKNOWN_TYPE_OF_AST_NODE THERE_IS_NO_COLUMN TOO_DEEP_AST TOO_BIG_AST UNEXPECTED_AST_STRUCTURE
     SYNTAX_ERROR INCORRECT_DATA TYPE_MISMATCH VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE`,
  );
  set(
    404,
    `UNKNOWN_TABLE UNKNOWN_FUNCTION UNKNOWN_IDENTIFIER UNKNOWN_TYPE UNKNOWN_STORAGE UNKNOWN_DATABASE UNKNOWN_SETTING
     UNKNOWN_DIRECTION_OF_SORTING UNKNOWN_AGGREGATE_FUNCTION UNKNOWN_FORMAT UNKNOWN_DATABASE_ENGINE UNKNOWN_TYPE_OF_QUERY
     UNKNOWN_ROLE`,
  );
  set(413, 'QUERY_IS_TOO_LARGE');
  set(501, 'NOT_IMPLEMENTED');
  set(503, 'SOCKET_TIMEOUT CANNOT_OPEN_FILE CANNOT_SCHEDULE_TASK');
  set(411, 'HTTP_LENGTH_REQUIRED');
  set(408, 'TIMEOUT_EXCEEDED');
  set(415, 'UNSUPPORTED_MEDIA_TYPE');
  return map;
})();

/** HTTP status ClickHouse answers with for an exception name (500 when not listed). */
export function httpStatusForException(name: string): number {
  return STATUS_BY_NAME.get(name) ?? 500;
}

const CODE_PREFIX = /^(?:\s*Code: (\d+)\. DB::Exception: )+/;
const EXCEPTION_NAME = /\(([A-Z][A-Z0-9_]{2,})\)/g;

/**
 * Normalises an engine error (chdb messages look like `Code: 60. DB::Exception: … (UNKNOWN_TABLE)`,
 * sometimes nested several times) into a ClickHouseServerFailure.
 */
export function failureFromError(err: unknown): ClickHouseServerFailure {
  if (err instanceof ClickHouseServerFailure) return err;
  const raw = err instanceof Error ? err.message : String(err);
  const engineCode = (err as { clickhouseCode?: unknown } | null)?.clickhouseCode;
  const prefix = CODE_PREFIX.exec(raw);
  let text = prefix ? raw.slice(prefix[0].length) : raw;
  const names = [...text.matchAll(EXCEPTION_NAME)].map((m) => m[1] as string);
  const name = names.at(-1);
  const code = prefix?.[1] !== undefined ? Number(prefix[1]) : typeof engineCode === 'number' ? engineCode : undefined;
  if (name !== undefined && code !== undefined) {
    const cut = text.indexOf(`(${name})`);
    text = text.slice(0, cut).trim();
    return new ClickHouseServerFailure(code, name, text);
  }
  // Not an engine message (e.g. a bind error raised by the chdb JS layer).
  const isBind = (err as { code?: unknown } | null)?.code === 'CHDB_BIND';
  return isBind
    ? ClickHouseServerFailure.of('BAD_QUERY_PARAMETER', endWithPeriod(raw.trim()))
    : new ClickHouseServerFailure(code ?? ErrorCode.STD_EXCEPTION, code === undefined ? 'STD_EXCEPTION' : 'UNKNOWN_EXCEPTION', endWithPeriod(raw.trim()));
}

function endWithPeriod(s: string): string {
  return /[.!?]$/.test(s) ? s : `${s}.`;
}

/** The response body ClickHouse sends for an exception (the client's parseError relies on it). */
export function formatExceptionBody(failure: ClickHouseServerFailure, version: string): string {
  return `Code: ${failure.code}. DB::Exception: ${endWithPeriod(failure.message)} (${failure.exceptionName}) (version ${version})\n`;
}

/**
 * Content-Type ClickHouse uses for an output format.
 */
export function contentTypeForFormat(format: string): string {
  const f = format.toLowerCase();
  if (f.includes('eachrow') && f.startsWith('json')) return 'application/x-ndjson; charset=UTF-8';
  if (f === 'ndjson' || f === 'jsonlines' || f === 'jsonl') return 'application/x-ndjson; charset=UTF-8';
  if (f.startsWith('json')) return 'application/json; charset=UTF-8';
  if (f.startsWith('tabseparated') || f.startsWith('tsv')) return 'text/tab-separated-values; charset=UTF-8';
  if (f === 'csv' || f.startsWith('csvwith')) return 'text/csv; charset=UTF-8; header=' + (f === 'csv' ? 'absent' : 'present');
  if (['native', 'rowbinary', 'rowbinarywithnames', 'rowbinarywithnamesandtypes', 'parquet', 'arrow', 'arrowstream', 'orc', 'avro', 'msgpack', 'protobuf', 'capnproto', 'npy', 'bsoneachrow'].includes(f)) {
    return 'application/octet-stream';
  }
  return 'text/plain; charset=UTF-8';
}

const SIMPLE_ESCAPES: Readonly<Record<string, string>> = {
  '\\': '\\',
  t: '\t',
  n: '\n',
  r: '\r',
  '0': '\0',
  b: '\b',
  f: '\f',
  a: '\x07',
  v: '\x0B',
  "'": "'",
  '"': '"',
  '`': '`',
  '/': '/',
};

/**
 * Converts a query parameter as it travels over HTTP (`param_x=…`, in ClickHouse's "escaped"
 * text form, which is what @clickhouse/client sends) into the string chdb's bind API expects.
 *
 * chdb re-escapes string values itself (backslash, \0 \b \f \n \r \t), so we undo the wire
 * escaping first in a way whose re-escaped form the engine reads back to the same value:
 * - scalar types: decode escapes exactly like ClickHouse (unknown `\c` keeps its backslash);
 * - composite literals (Array, Map, Tuple, …): their quoted strings keep SQL-literal rules, so
 *   an escaped quote `\'` becomes the equivalent doubled quote `''` (chdb would otherwise
 *   double the backslash and break the literal).
 * A bare `\N` is NULL.
 */
export function decodeWireQueryParam(raw: string, declaredType: string | undefined): string | null {
  if (raw === '\\N') return null;
  if (!raw.includes('\\')) return raw;
  const composite = declaredType !== undefined && /^\s*(Array|Map|Tuple|Nested|Object|JSON)\s*\(/i.test(declaredType);
  let out = '';
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i] as string;
    if (c !== '\\' || i + 1 >= raw.length) {
      out += c;
      continue;
    }
    const n = raw[i + 1] as string;
    i += 1;
    if (n === 'x' && /^[0-9A-Fa-f]{2}$/.test(raw.slice(i + 1, i + 3))) {
      out += String.fromCharCode(parseInt(raw.slice(i + 1, i + 3), 16));
      i += 2;
    } else if (composite && n === "'") {
      out += "''";
    } else if (n in SIMPLE_ESCAPES) {
      out += SIMPLE_ESCAPES[n];
    } else {
      // ClickHouse keeps the backslash of an unknown escape (`\%` stays `\%`).
      out += `\\${n}`;
    }
  }
  return out;
}

/** Declared types of `{name:Type}` placeholders in a query. */
export function placeholderTypes(sql: string): Map<string, string> {
  const types = new Map<string, string>();
  for (const m of sql.matchAll(/\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*:\s*([^{}]+?)\s*\}/g)) {
    types.set(m[1] as string, m[2] as string);
  }
  return types;
}

/** One field of a multipart/form-data body. */
export interface MultipartField {
  readonly name: string;
  readonly filename?: string;
  readonly value: Buffer;
}

/** Boundary of a `multipart/form-data` content type, or undefined for other types. */
export function multipartBoundary(contentType: string | undefined): string | undefined {
  if (!contentType || !/^\s*multipart\/form-data/i.test(contentType)) return undefined;
  const m = /boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  return m?.[1] ?? m?.[2];
}

/** Parses a multipart/form-data body (RFC 7578) into its fields. */
export function parseMultipart(body: Buffer, boundary: string): MultipartField[] {
  const delimiter = Buffer.from(`--${boundary}`);
  const fields: MultipartField[] = [];
  let pos = body.indexOf(delimiter);
  if (pos === -1) throw ClickHouseServerFailure.of('BAD_ARGUMENTS', 'Malformed multipart/form-data body: boundary not found.', 400);
  for (;;) {
    pos += delimiter.length;
    if (body.subarray(pos, pos + 2).toString() === '--') break; // closing delimiter
    if (body.subarray(pos, pos + 2).toString() === '\r\n') pos += 2;
    const headerEnd = body.indexOf('\r\n\r\n', pos);
    if (headerEnd === -1) throw ClickHouseServerFailure.of('BAD_ARGUMENTS', 'Malformed multipart/form-data body: part without headers.', 400);
    const headers = body.subarray(pos, headerEnd).toString('utf8');
    const next = body.indexOf(Buffer.concat([Buffer.from('\r\n'), delimiter]), headerEnd + 4);
    if (next === -1) throw ClickHouseServerFailure.of('BAD_ARGUMENTS', 'Malformed multipart/form-data body: unterminated part.', 400);
    const disposition = /content-disposition:\s*form-data;([^\r\n]*)/i.exec(headers)?.[1] ?? '';
    const name = /\bname="([^"]*)"/i.exec(disposition)?.[1];
    const filename = /\bfilename="([^"]*)"/i.exec(disposition)?.[1];
    if (name === undefined) throw ClickHouseServerFailure.of('BAD_ARGUMENTS', 'Malformed multipart/form-data body: part without a name.', 400);
    fields.push({ name, ...(filename !== undefined ? { filename } : {}), value: body.subarray(headerEnd + 4, next) });
    pos = next + 2;
  }
  return fields;
}

/** Picks a response encoding we support from an Accept-Encoding header, in the client's order. */
export function negotiateEncoding(acceptEncoding: string | undefined, supported: readonly string[]): string | undefined {
  if (!acceptEncoding) return undefined;
  for (const part of acceptEncoding.split(',')) {
    const [token, ...params] = part.trim().toLowerCase().split(';');
    const q = params.map((p) => /^\s*q=([0-9.]+)/.exec(p)?.[1]).find((v) => v !== undefined);
    if (q !== undefined && Number(q) === 0) continue;
    if (token && supported.includes(token)) return token;
  }
  return undefined;
}
