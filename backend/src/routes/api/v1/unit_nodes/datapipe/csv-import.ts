/**
 * Validation of an uploaded CSV against the node's config (pepeunit-datapipe.md §5.4), before
 * anything is written: every row is checked, and the caller replaces the node's data only when
 * all rows pass (the reference deleted first and validated while inserting, §8.2.5).
 *
 * Columns: `state`, `create_datetime`, and for Aggregation `start_window_datetime`,
 * `end_window_datetime`; others are ignored, so an export can be re-imported. Datetimes are
 * `YYYY-MM-DD HH:MM:SS[.ffffff]` in UTC. Rows are numbered from 1 after the header, and every
 * message is `Row <n>: ...`. Per-row checks, in the reference order:
 *  1. create_datetime not before the previous row's;
 *  2. state parses (Number and Aggregation: Python `float()`);
 *  3. active period, inclusive bounds;
 *  4. white/black list;  5. thresholds (Number);
 *  6. max_rate and 7. last_unique_check (NRecords, TimeWindow);
 *  8. max_size;  9. policy rules (TimeWindow range, NRecords count, Aggregation windows).
 *
 * Ours on top of the reference: Aggregation windows must be aligned to multiples of
 * time_window_size from UTC midnight (as the ingest produces them) and strictly increasing,
 * and their state finite; `max_size` and `size` count UTF-8 bytes, as the live pipe does
 * (the reference's CSV import counted characters, §8.1.8).
 */
import {
  ActivePeriodType,
  FilterTypeValueFiltering,
  FilterTypeValueThreshold,
  ProcessingPolicyType,
  TypeInputValue,
  parseConfigDateTimeText,
  pythonFloatRepr,
  type DataPipeConfig,
} from '@pepeunit/common/datapipe';
import { aggregationWindow } from '@pepeunit/common/datapipe';
import { CsvSyntaxError, CsvTooManyRowsError, fromSpreadsheetSafe, parseCsv } from './csv.js';
import { DataPipeDetailedError, type DataPipeProblem } from './errors.js';
import { DATAPIPE_POLICY_TABLES } from '@pepeunit/clickhouse-schemas';
import type { ClickHousePolicy } from './tables.js';

export interface CsvImportOptions {
  /** Maximum number of data rows. */
  readonly maxRows: number;
  /** Validation stops after this many failing rows (all are reported). Default 50. */
  readonly maxErrors?: number;
  /** Called every `progressEvery` validated rows (default 50 000). */
  readonly onProgress?: (validatedRows: number, totalRows: number) => void;
  readonly progressEvery?: number;
}

/** One row ready for `INSERT ... FORMAT JSONEachRow` into the policy's table. */
export type ImportRow = Record<string, string | number>;

export interface CsvImportResult {
  readonly policy: ClickHousePolicy;
  readonly table: string;
  readonly rows: ImportRow[];
}

const fail = (message: string, errors: DataPipeProblem[] = [{ message }]): DataPipeDetailedError => new DataPipeDetailedError(message, errors);

/** Python `float(text)`: surrounding whitespace, `_` between digits, inf/infinity/nan. */
export function parsePythonFloat(text: string): number | null {
  const s = text.trim();
  if (/^[+-]?(?:inf|infinity)$/i.test(s)) return s.startsWith('-') ? -Infinity : Infinity;
  if (/^[+-]?nan$/i.test(s)) return NaN;
  const digits = String.raw`\d(?:_?\d)*`;
  const re = new RegExp(`^[+-]?(?:${digits}(?:\\.(?:${digits})?)?|\\.${digits})(?:[eE][+-]?${digits})?$`);
  if (!re.test(s)) return null;
  return Number(s.replace(/_/g, ''));
}

const CSV_DATETIME = /^(\d{4})-(\d{1,2})-(\d{1,2}) (\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d{1,6}))?$/;

function daysIn(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/** `%Y-%m-%d %H:%M:%S[.%f]` (UTC) to epoch ms with a microsecond fraction, or null. */
export function parseCsvDateTime(text: string): { ms: number; seconds: number; micros: number } | null {
  const m = CSV_DATETIME.exec(text);
  if (!m) return null;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  if (year < 1 || month < 1 || month > 12 || day < 1 || day > daysIn(year, month) || hour > 23 || minute > 59 || second > 59) return null;
  const micros = m[7] ? Number(m[7].padEnd(6, '0')) : 0;
  const base = Date.UTC(year, month - 1, day, hour, minute, second);
  const d = new Date(base);
  if (year < 100) d.setUTCFullYear(year);
  return { ms: d.getTime() + micros / 1000, seconds: second, micros };
}

/** Python `str(datetime)` of epoch ms: `2025-09-10 08:27:00` or `2025-09-10 08:27:00.123000`. */
export function pythonDateTimeText(ms: number): string {
  const d = new Date(ms);
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  const base = `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  const millis = d.getUTCMilliseconds();
  return millis === 0 ? base : `${base}.${pad(millis, 3)}000`;
}

const isoZ = (ms: number): string => new Date(Math.floor(ms)).toISOString();
const utf8Bytes = (s: string): number => Buffer.byteLength(s, 'utf8');

function columnsFor(policy: ClickHousePolicy): string[] {
  return policy === 'Aggregation' ? ['state', 'create_datetime', 'start_window_datetime', 'end_window_datetime'] : ['state', 'create_datetime'];
}

/** Decodes UTF-8 strictly; on failure names the first line that is not valid UTF-8. */
export function decodeCsvText(data: Buffer): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(data);
  } catch {
    const decoder = new TextDecoder('utf-8', { fatal: true });
    let start = 0;
    let line = 1;
    while (start <= data.length) {
      let end = data.indexOf(0x0a, start);
      if (end === -1) end = data.length;
      try {
        decoder.decode(data.subarray(start, end));
      } catch {
        throw fail(`CSV file is not valid UTF-8 text: line ${line} holds bytes that are not UTF-8`);
      }
      start = end + 1;
      line++;
    }
    throw fail('CSV file is not valid UTF-8 text');
  }
}

/**
 * Validates the CSV against the config and returns the rows to insert, or throws a
 * DataPipeDetailedError listing the failing rows (`detail` is the first one's message).
 */
export function validateCsvImport(data: Buffer, config: DataPipeConfig, nodeUuid: string, nowMs: number, opts: CsvImportOptions): CsvImportResult {
  const policy = config.processing_policy.policy_type;
  if (policy === ProcessingPolicyType.LastValue) throw fail('LastValue type is not supported on this function');
  const table = DATAPIPE_POLICY_TABLES[policy];
  const maxErrors = opts.maxErrors ?? 50;
  const progressEvery = opts.progressEvery ?? 50_000;

  const text = decodeCsvText(data);
  let records;
  try {
    records = parseCsv(text, opts.maxRows + 1);
  } catch (err) {
    if (err instanceof CsvSyntaxError) throw fail(`CSV syntax error at ${err.message}`);
    if (err instanceof CsvTooManyRowsError) throw fail(`CSV file has too many rows: the limit is ${opts.maxRows} data rows`);
    throw err;
  }
  const header = records[0];
  if (!header) throw fail('CSV file is empty: expected a header row with the columns state,create_datetime');
  const required = columnsFor(policy);
  const index = new Map<string, number>();
  for (const [i, name] of header.fields.entries()) {
    if (index.has(name) && required.includes(name)) throw fail(`CSV header has the column ${name} twice`);
    index.set(name, i);
  }
  const missing = required.filter((c) => !index.has(c));
  if (missing.length > 0) {
    throw fail(
      `CSV header must contain the columns ${required.join(', ')} (missing: ${missing.join(', ')}; found: ${header.fields.map((f) => JSON.stringify(f)).join(', ') || 'nothing'})`,
    );
  }
  const total = records.length - 1;
  if (total === 0) throw fail('CSV file has no data rows (to remove the data use delete_data_pipe_data)');

  const f = config.filters;
  const ap = config.active_period;
  const pp = config.processing_policy;
  const isNumber = f.type_input_value === TypeInputValue.Number;
  const startMs = ap.start === null ? null : (parseConfigDateTimeText(ap.start) as { ok: true; value: { epochMs: number } }).value.epochMs;
  const endMs = ap.end === null ? null : (parseConfigDateTimeText(ap.end) as { ok: true; value: { epochMs: number } }).value.epochMs;
  const windowSize = pp.time_window_size ?? 0;
  const nRecords = pp.n_records_count ?? 0;
  const listValues = f.filtering_values ?? [];
  const textList = new Set(listValues.map((v) => (typeof v === 'string' ? v : Number.isInteger(v) ? String(v) : pythonFloatRepr(v))));
  const numberList = listValues.map((v) => (typeof v === 'number' ? v : parsePythonFloat(v))).filter((v): v is number => v !== null);

  const col = (fields: string[], name: string): string | undefined => fields[index.get(name)!];
  const errors: DataPipeProblem[] = [];
  const rows: ImportRow[] = [];
  let prevCreate: number | null = null;
  let prevState: string | null = null;
  let prevEnd: number | null = null;

  for (let r = 1; r <= total; r++) {
    if (errors.length >= maxErrors) break;
    if (r % progressEvery === 0) opts.onProgress?.(r, total);
    const fields = records[r]!.fields;
    const problem = (message: string) => errors.push({ row: r, message: `Row ${r}: ${message}` });

    // 1. create_datetime, monotonic.
    const createText = col(fields, 'create_datetime');
    if (createText === undefined || createText === '') {
      problem('create_datetime is missing');
      continue;
    }
    const create = parseCsvDateTime(createText);
    if (!create) {
      problem(`create_datetime ${JSON.stringify(createText.slice(0, 64))} does not match the format YYYY-MM-DD HH:MM:SS[.ffffff] (UTC)`);
      continue;
    }
    const previous: number | null = prevCreate;
    prevCreate = create.ms;
    if (previous !== null && create.ms < previous) {
      problem("create_datetime is before the previous row's create_datetime (rows must be in time order)");
      continue;
    }

    // 2. state.
    const stateCell = col(fields, 'state');
    // Exports neutralise formula-like text with a leading ' (spreadsheetSafe); read it back as it was.
    const stateText = stateCell === undefined ? undefined : fromSpreadsheetSafe(stateCell);
    if (stateText === undefined) {
      problem('state is missing');
      continue;
    }
    let stateValue: number | null = null;
    let state = stateText;
    if (isNumber || policy === 'Aggregation') {
      stateValue = parsePythonFloat(stateText);
      if (stateValue === null) {
        problem('state is not a valid python float');
        continue;
      }
      state = pythonFloatRepr(stateValue);
    }
    const previousState = prevState;
    prevState = state;

    // 3. Active period, inclusive bounds.
    if ((ap.type === ActivePeriodType.FromDate || ap.type === ActivePeriodType.DateRange) && startMs !== null && create.ms < startMs) {
      problem(`create_datetime is outside the start ${ap.start} of the active period`);
      continue;
    }
    if ((ap.type === ActivePeriodType.ToDate || ap.type === ActivePeriodType.DateRange) && endMs !== null && create.ms > endMs) {
      problem(`create_datetime is outside the end ${ap.end} of the active period`);
      continue;
    }

    // 4. White/black list.
    if (f.type_value_filtering !== null) {
      const inList = isNumber ? numberList.some((v) => v === stateValue) : textList.has(state);
      if (f.type_value_filtering === FilterTypeValueFiltering.WhiteList && !inList) {
        problem('state not in whitelist');
        continue;
      }
      if (f.type_value_filtering === FilterTypeValueFiltering.BlackList && inList) {
        problem('state in blacklist');
        continue;
      }
    }

    // 5. Thresholds (Number only).
    if (isNumber && stateValue !== null && f.type_value_threshold !== null) {
      const t = f.type_value_threshold;
      const checkMin = t === FilterTypeValueThreshold.Min || t === FilterTypeValueThreshold.Range;
      const checkMax = t === FilterTypeValueThreshold.Max || t === FilterTypeValueThreshold.Range;
      if (checkMin && f.threshold_min !== null && stateValue < f.threshold_min) {
        problem(`state < threshold_min (${state} < ${f.threshold_min})`);
        continue;
      }
      if (checkMax && f.threshold_max !== null && stateValue > f.threshold_max) {
        problem(`state > threshold_max (${state} > ${f.threshold_max})`);
        continue;
      }
    }

    // 6-7. Rate and uniqueness against the previous row (NRecords, TimeWindow).
    if (policy !== 'Aggregation') {
      if (f.max_rate > 0 && previous !== null && previous + f.max_rate * 1000 > create.ms) {
        problem(`create_datetime is less than max_rate (${f.max_rate} s) after the previous row`);
        continue;
      }
      if (f.last_unique_check && previousState !== null && previousState === state) {
        problem('state is equal to the previous row\'s state (last_unique_check)');
        continue;
      }
    }

    // 8. Size in UTF-8 bytes.
    const size = utf8Bytes(state);
    if (f.max_size > 0 && size > f.max_size) {
      problem(`state is ${size} bytes long, more than max_size ${f.max_size}`);
      continue;
    }

    // 9. Policy rules.
    if (policy === 'TimeWindow') {
      if (create.ms < nowMs - windowSize * 1000 || create.ms > nowMs) {
        problem(`create_datetime is outside the range of valid values from time_window_size (the last ${windowSize} s before now)`);
        continue;
      }
      rows.push({
        unit_node_uuid: nodeUuid,
        state,
        state_type: f.type_input_value,
        create_datetime: isoZ(create.ms),
        expiration_datetime: isoZ(Math.floor((create.ms + windowSize * 1000) / 1000) * 1000),
        size,
      });
    } else if (policy === 'NRecords') {
      if (r > nRecords) {
        problem(`For NRecords: number of records exceeds limit n_records_count (${nRecords})`);
        continue;
      }
      rows.push({ unit_node_uuid: nodeUuid, state, state_type: f.type_input_value, create_datetime: isoZ(create.ms), max_count: nRecords, size });
    } else {
      if (!Number.isFinite(stateValue)) {
        problem('state must be a finite number for Aggregation');
        continue;
      }
      const startText = col(fields, 'start_window_datetime') ?? '';
      const endText = col(fields, 'end_window_datetime') ?? '';
      const start = parseCsvDateTime(startText);
      const end = parseCsvDateTime(endText);
      if (!start || !end) {
        problem(`${!start ? 'start_window_datetime' : 'end_window_datetime'} ${JSON.stringify((!start ? startText : endText).slice(0, 64))} does not match the format YYYY-MM-DD HH:MM:SS[.ffffff] (UTC)`);
        continue;
      }
      const previousEnd: number | null = prevEnd;
      prevEnd = end.ms;
      if (start.seconds !== 0 || start.micros !== 0 || end.seconds !== 0 || end.micros !== 0) {
        problem('start_window_datetime and end_window_datetime must have zero seconds');
        continue;
      }
      if (end.ms < start.ms) {
        problem('end_window_datetime is before start_window_datetime');
        continue;
      }
      if (Math.abs(create.ms - end.ms) >= 60_000) {
        problem('create_datetime must be less than 60 seconds away from end_window_datetime');
        continue;
      }
      if (end.ms - start.ms !== windowSize * 1000) {
        problem(`end_window_datetime - start_window_datetime must equal time_window_size (${windowSize} s)`);
        continue;
      }
      const aligned = aggregationWindow(start.ms, windowSize);
      if (aligned.startMs !== start.ms) {
        problem(`the window must start at a multiple of time_window_size (${windowSize} s) from UTC midnight, e.g. ${pythonDateTimeText(aligned.startMs)}`);
        continue;
      }
      if (previousEnd !== null) {
        if (end.ms <= previousEnd) {
          problem("the window must come after the previous row's window");
          continue;
        }
        if ((end.ms - previousEnd) % (windowSize * 1000) !== 0) {
          problem(`the window must end a whole number of time_window_size (${windowSize} s) after the previous row's window`);
          continue;
        }
      }
      rows.push({
        unit_node_uuid: nodeUuid,
        state: stateValue as number,
        aggregation_type: pp.aggregation_functions ?? 'Avg',
        time_window_size: windowSize,
        create_datetime: isoZ(create.ms),
        start_window_datetime: isoZ(start.ms),
        end_window_datetime: isoZ(end.ms),
      });
    }
  }
  if (errors.length > 0) {
    // `detail` is the first failure, as the reference reports it; `errors` lists them all.
    if (errors.length >= maxErrors) errors.push({ message: `Validation stopped after ${maxErrors} failing rows` });
    throw new DataPipeDetailedError(errors[0]!.message, errors);
  }
  return { policy, table, rows };
}
