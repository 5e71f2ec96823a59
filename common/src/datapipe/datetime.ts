/**
 * Datetimes of the DataPipe config (`active_period.start` / `end`).
 *
 * The reference validates them with pydantic v2 (speedate) and stores Python `isoformat()`
 * text. We accept the same inputs (ISO-8601 / RFC 3339 text, date-only text, unix
 * timestamps as numbers or digit strings, JS `Date` objects, YAML timestamps) and produce
 * the same text. One deliberate difference: a datetime without an offset is taken as UTC
 * and stored with `+00:00`. The reference stores it without an offset, which the Go
 * service cannot parse, so such a node was silently ignored (§8.1.9).
 */

/** A point in time with the UTC offset it was written with (needed to reproduce isoformat). */
export class ConfigDateTime {
  constructor(
    /** Whole seconds since the Unix epoch (UTC instant). */
    readonly epochSeconds: number,
    /** Microseconds within the second, 0..999999. */
    readonly micros: number,
    /** Offset of the original text from UTC in seconds (0 for `Z` and for naive input). */
    readonly offsetSeconds: number,
  ) {}

  /** Milliseconds since the epoch, possibly fractional (microsecond precision). */
  get epochMs(): number {
    return this.epochSeconds * 1000 + this.micros / 1000;
  }

  compare(other: ConfigDateTime): number {
    if (this.epochSeconds !== other.epochSeconds) return this.epochSeconds < other.epochSeconds ? -1 : 1;
    if (this.micros !== other.micros) return this.micros < other.micros ? -1 : 1;
    return 0;
  }

  /** Python `datetime.isoformat()` of the aware value, e.g. `2023-11-15T00:00:00+00:00`. */
  isoformat(): string {
    const wallSeconds = this.epochSeconds + this.offsetSeconds;
    const d = new Date(wallSeconds * 1000);
    const date = `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1, 2)}-${pad(d.getUTCDate(), 2)}`;
    const time = `${pad(d.getUTCHours(), 2)}:${pad(d.getUTCMinutes(), 2)}:${pad(d.getUTCSeconds(), 2)}`;
    const fraction = this.micros === 0 ? '' : `.${pad(this.micros, 6)}`;
    return `${date}T${time}${fraction}${formatOffset(this.offsetSeconds)}`;
  }

  static fromDate(date: Date): ConfigDateTime | null {
    const ms = date.getTime();
    if (!Number.isFinite(ms)) return null;
    const seconds = Math.floor(ms / 1000);
    return new ConfigDateTime(seconds, (ms - seconds * 1000) * 1000, 0);
  }
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}

function formatOffset(offsetSeconds: number): string {
  const sign = offsetSeconds < 0 ? '-' : '+';
  const abs = Math.abs(offsetSeconds);
  const hours = Math.floor(abs / 3600);
  const minutes = Math.floor((abs % 3600) / 60);
  const seconds = abs % 60;
  return `${sign}${pad(hours, 2)}:${pad(minutes, 2)}${seconds ? `:${pad(seconds, 2)}` : ''}`;
}

const MIN_EPOCH_SECONDS = -62135596800; // 0001-01-01T00:00:00Z
const MAX_EPOCH_SECONDS = 253402300799; // 9999-12-31T23:59:59Z

export function isLeapYear(year: number): boolean {
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
}

export function daysInMonth(year: number, month: number): number {
  if (month === 2) return isLeapYear(year) ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/** Seconds since the epoch of a UTC wall-clock time (years 1..9999, no two-digit-year quirk). */
export function utcEpochSeconds(year: number, month: number, day: number, hour: number, minute: number, second: number): number {
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day);
  d.setUTCHours(hour, minute, second, 0);
  return d.getTime() / 1000;
}

export type DateTimeResult = { ok: true; value: ConfigDateTime } | { ok: false; message: string };

const DIGIT = /^[0-9]$/;
const isDigit = (c: string | undefined): boolean => c !== undefined && DIGIT.test(c);
const num = (s: string, from: number, to: number): number => Number(s.slice(from, to));

/**
 * pydantic's reason when text is not a datetime: it falls back to parsing the text as a
 * date and reports that failure (`..., input is too short`, `..., month value is outside ...`).
 */
function dateFailureReason(s: string): string {
  if (s.length < 10) return 'input is too short';
  for (let i = 0; i < 4; i++) if (!isDigit(s[i])) return 'invalid character in year';
  if (s[4] !== '-') return 'invalid date separator, expected `-`';
  if (!isDigit(s[5]) || !isDigit(s[6])) return 'invalid character in month';
  if (s[7] !== '-') return 'invalid date separator, expected `-`';
  if (!isDigit(s[8]) || !isDigit(s[9])) return 'invalid character in day';
  const year = num(s, 0, 4);
  const month = num(s, 5, 7);
  const day = num(s, 8, 10);
  if (month < 1 || month > 12) return 'month value is outside expected range of 1-12';
  if (day < 1 || day > daysInMonth(year, month)) return 'day value is outside expected range';
  return 'unexpected extra characters at the end of the input';
}

/** RFC 3339 as speedate reads it: `YYYY-MM-DD[(T|t|_| )HH:MM[:SS[(.|,)fraction]][Z|z|±HH[:]MM]]`. */
function parseRfc3339(s: string): DateTimeResult | null {
  if (s.length < 10) return null;
  if (!/^[0-9]{4}-[0-9]{2}-[0-9]{2}/.test(s)) return null;
  const year = num(s, 0, 4);
  const month = num(s, 5, 7);
  const day = num(s, 8, 10);
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return null;
  let hour = 0;
  let minute = 0;
  let second = 0;
  let micros = 0;
  let offsetSeconds = 0;
  if (s.length > 10) {
    const m = /^[Tt_ ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]+))?)?(?:([Zz])|([+-])([0-9]{2}):?([0-9]{2}))?$/.exec(s.slice(10));
    if (!m) return null;
    hour = Number(m[1]);
    minute = Number(m[2]);
    second = m[3] === undefined ? 0 : Number(m[3]);
    if (hour > 23 || minute > 59 || second > 59) return null;
    if (m[4] !== undefined) micros = Number(m[4].slice(0, 6).padEnd(6, '0'));
    if (m[6] !== undefined) {
      const tzHours = Number(m[7]);
      const tzMinutes = Number(m[8]);
      if (tzHours > 23 || tzMinutes > 59) return null;
      offsetSeconds = (m[6] === '-' ? -1 : 1) * (tzHours * 3600 + tzMinutes * 60);
    }
  }
  if (year === 0) return { ok: false, message: 'Input should be a valid datetime, year 0 is out of range' };
  const wall = utcEpochSeconds(year, month, day, hour, minute, second);
  return { ok: true, value: new ConfigDateTime(wall - offsetSeconds, micros, offsetSeconds) };
}

/** A unix timestamp (seconds, or milliseconds when |value| > 2e10, as pydantic does). */
export function dateTimeFromTimestamp(value: number): DateTimeResult {
  if (Number.isNaN(value)) return { ok: false, message: 'Input should be a valid datetime, NaN values not permitted' };
  let seconds = Math.abs(value) > 2e10 ? value / 1000 : value;
  if (seconds > MAX_EPOCH_SECONDS) {
    return { ok: false, message: 'Input should be a valid datetime, dates after 9999 are not supported as unix timestamps' };
  }
  if (seconds < MIN_EPOCH_SECONDS) {
    return { ok: false, message: 'Input should be a valid datetime, dates before 0000 are not supported as unix timestamps' };
  }
  let whole = Math.floor(seconds);
  let micros = Math.round((seconds - whole) * 1e6);
  if (micros >= 1e6) {
    whole += 1;
    micros -= 1e6;
  }
  seconds = whole;
  return { ok: true, value: new ConfigDateTime(seconds, micros, 0) };
}

/** Text input, pydantic-style (ISO text, then a unix timestamp in digits). */
export function parseConfigDateTimeText(s: string): DateTimeResult {
  const rfc = parseRfc3339(s);
  if (rfc) return rfc;
  if (/^-?[0-9]+(?:\.[0-9]+)?$/.test(s)) return dateTimeFromTimestamp(Number(s));
  return { ok: false, message: `Input should be a valid datetime or date, ${dateFailureReason(s)}` };
}
