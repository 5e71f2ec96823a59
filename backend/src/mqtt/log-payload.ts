/**
 * The `log` system topic payload (reference pepeunit-backend.md §2.3, device docs §7.3): one
 * object `{level, text[, create_datetime]}` or an array of them, turned into `unit_logs` rows.
 * Invalid entries are dropped one by one (the valid entries of the same message are kept).
 */
import { randomUUID } from 'node:crypto';

export const LOG_LEVELS = ['Debug', 'Info', 'Warning', 'Error', 'Critical'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
const LEVEL_SET: ReadonlySet<string> = new Set(LOG_LEVELS);

/** A row of ClickHouse `unit_logs` (JSONEachRow; datetimes as ISO-8601 UTC). */
export interface UnitLogRow {
  uuid: string;
  level: LogLevel;
  unit_uuid: string;
  text: string;
  create_datetime: string;
  expiration_datetime: string;
}

export type LogEntryDropReason = 'unknown_level' | 'invalid_log_entry';

// DateTime64(3) holds 1900..2299; we accept a narrower, sane window so one odd device clock can
// never make a whole ClickHouse batch fail.
const MIN_MS = Date.UTC(1970, 0, 1);
const MAX_MS = Date.UTC(2105, 11, 31);
const ISO_RE = /^(\d{4}-\d{2}-\d{2})(?:[T ](\d{2}:\d{2}(?::\d{2})?)(?:\.(\d{1,9}))?)?([zZ]|[+-]\d{2}:?\d{2})?$/;

// JSON escapes can smuggle lone UTF-16 surrogates (`"\ud800"`) into otherwise valid UTF-8 text;
// they are replaced so every stored text is valid UTF-8.
const LONE_SURROGATE_RE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const LONE_SURROGATE_RE_G = new RegExp(LONE_SURROGATE_RE.source, 'g');

/** Python `str.capitalize()`: first character upper case, the rest lower case. */
export function capitalizeLevel(level: string): string {
  return level.length === 0 ? level : level.charAt(0).toUpperCase() + level.slice(1).toLowerCase();
}

/**
 * Parses a device timestamp: ISO-8601 (naive values are UTC, as the reference stores them) or
 * Unix seconds (milliseconds when larger than 2e10, like pydantic). Returns epoch ms or null.
 */
export function parseDeviceDatetime(value: unknown): number | null {
  let ms: number;
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) return null;
    ms = Math.abs(value) > 2e10 ? value : value * 1000;
  } else if (typeof value === 'string') {
    const m = ISO_RE.exec(value.trim());
    if (!m) return null;
    const [, date, time, fraction, zone] = m;
    const hms = time ? (time.length === 5 ? `${time}:00` : time) : '00:00:00';
    const millis = fraction ? `.${fraction.slice(0, 3).padEnd(3, '0')}` : '';
    const tz = zone ? (zone === 'z' ? 'Z' : zone.length === 5 ? `${zone.slice(0, 3)}:${zone.slice(3)}` : zone) : 'Z';
    ms = Date.parse(`${date}T${hms}${millis}${tz}`);
    if (Number.isNaN(ms)) return null;
  } else {
    return null;
  }
  return ms >= MIN_MS && ms <= MAX_MS ? Math.floor(ms) : null;
}

/**
 * Builds the rows of one parsed log payload. `create_datetime` is the given value, else
 * `now + i seconds` (i = position in the message, so a batch keeps its order);
 * `expiration_datetime = now + expirationSeconds`. Returns null when the payload is neither an
 * object nor an array; invalid entries are reported through `onDrop` and skipped.
 */
export function buildLogRows(
  parsed: unknown,
  unitUuid: string,
  nowMs: number,
  expirationSeconds: number,
  onDrop: (reason: LogEntryDropReason) => void,
): UnitLogRow[] | null {
  let entries: unknown[];
  if (Array.isArray(parsed)) entries = parsed;
  else if (parsed !== null && typeof parsed === 'object') entries = [parsed];
  else return null;
  const expiration = new Date(Math.floor(nowMs / 1000) * 1000 + expirationSeconds * 1000).toISOString();
  const rows: UnitLogRow[] = [];
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i];
    if (entry === null || typeof entry !== 'object' || Array.isArray(entry)) {
      onDrop('invalid_log_entry');
      continue;
    }
    const { level, text, create_datetime: given } = entry as Record<string, unknown>;
    if (typeof text !== 'string') {
      onDrop('invalid_log_entry');
      continue;
    }
    if (typeof level !== 'string') {
      onDrop('unknown_level');
      continue;
    }
    const normalizedLevel = capitalizeLevel(level);
    if (!LEVEL_SET.has(normalizedLevel)) {
      onDrop('unknown_level');
      continue;
    }
    let createdMs: number;
    if (given === undefined || given === null) {
      createdMs = nowMs + i * 1000;
    } else {
      const parsedMs = parseDeviceDatetime(given);
      if (parsedMs === null) {
        onDrop('invalid_log_entry');
        continue;
      }
      createdMs = parsedMs;
    }
    rows.push({
      uuid: randomUUID(),
      level: normalizedLevel as LogLevel,
      unit_uuid: unitUuid,
      text: LONE_SURROGATE_RE.test(text) ? text.replace(LONE_SURROGATE_RE_G, '\ufffd') : text,
      create_datetime: new Date(createdMs).toISOString(),
      expiration_datetime: expiration,
    });
  }
  return rows;
}
