/**
 * Batched ClickHouse inserts of the policy rows: `INSERT INTO <table> FORMAT JSONEachRow`, the
 * reference tables' columns in table order (pepeunit-datapipe.md §4.1). The body is built by
 * hand (only `state` needs JSON escaping), which is several times cheaper than serialising row
 * objects. Datetimes go as integers: DateTime64(3) columns take epoch milliseconds, the
 * DateTime column `expiration_datetime` takes epoch seconds; both are UTC instants, so the
 * server's time zone does not matter.
 */
import type { DataPipeTable } from '@pepeunit/clickhouse-schemas';
import { Readable } from 'node:stream';
import type { ClickHouseClient } from '@clickhouse/client';
import type { AggregationEntryRow, NLastEntryRow, WindowEntryRow } from '../pipeline/index.js';
import type { WriteErrorKind, WriteTarget } from './queued-writer.js';

/**
 * ClickHouse error names that mean "this data cannot be inserted" (parse, type, range,
 * constraint): bisect the batch. Anything else (connection refused/reset, timeouts, server
 * overload, missing table, authentication) is transient: keep the rows and retry.
 */
const DATA_ERROR_NAME =
  /^(CANNOT_PARSE|CANNOT_READ|CANNOT_CONVERT|INCORRECT_DATA|TYPE_MISMATCH|VIOLATED_CONSTRAINT|VALUE_IS_OUT_OF_RANGE|UNKNOWN_ELEMENT_IN_ENUM|TOO_LARGE_STRING_SIZE|ILLEGAL_TYPE_OF_ARGUMENT|CANNOT_INSERT_NULL|BAD_ARGUMENTS|ARGUMENT_OUT_OF_BOUND|INCORRECT_NUMBER_OF_COLUMNS|UNEXPECTED_END_OF_FILE)/;

export function classifyClickHouseError(error: unknown): WriteErrorKind {
  if (error && typeof error === 'object' && 'type' in error && typeof (error as { type?: unknown }).type === 'string') {
    return DATA_ERROR_NAME.test((error as { type: string }).type) ? 'data' : 'transient';
  }
  return 'transient';
}

/** A JSON number, or the text ClickHouse reads for non-finite floats. */
function float(value: number): string {
  if (Number.isFinite(value)) return String(value);
  return Number.isNaN(value) ? '"nan"' : value > 0 ? '"inf"' : '"-inf"';
}

export function nLastEntryLine(r: NLastEntryRow): string {
  return `{"unit_node_uuid":"${r.unit_node_uuid}","state":${JSON.stringify(r.state)},"state_type":"${r.state_type}","create_datetime":${Math.trunc(r.create_datetime)},"max_count":${r.max_count},"size":${r.size}}\n`;
}

export function windowEntryLine(r: WindowEntryRow): string {
  return `{"unit_node_uuid":"${r.unit_node_uuid}","state":${JSON.stringify(r.state)},"state_type":"${r.state_type}","create_datetime":${Math.trunc(r.create_datetime)},"expiration_datetime":${Math.floor(r.expiration_datetime / 1000)},"size":${r.size}}\n`;
}

export function aggregationEntryLine(r: AggregationEntryRow): string {
  return `{"unit_node_uuid":"${r.unit_node_uuid}","state":${float(r.state)},"aggregation_type":"${r.aggregation_type}","time_window_size":${r.time_window_size},"create_datetime":${Math.trunc(r.create_datetime)},"start_window_datetime":${Math.trunc(r.start_window_datetime)},"end_window_datetime":${Math.trunc(r.end_window_datetime)}}\n`;
}

/** Joins lines in chunks so a 100 000-row batch is not one giant string concatenation chain. */
function body<Row>(rows: readonly Row[], line: (row: Row) => string): Readable {
  const chunks: string[] = [];
  let current = '';
  for (let i = 0; i < rows.length; i++) {
    current += line(rows[i] as Row);
    if (current.length > 1 << 20) {
      chunks.push(current);
      current = '';
    }
  }
  if (current) chunks.push(current);
  return Readable.from(chunks, { objectMode: false });
}

export class ClickHouseTableTarget<Row> implements WriteTarget<Row> {
  constructor(
    readonly table: DataPipeTable,
    private readonly client: ClickHouseClient,
    private readonly line: (row: Row) => string,
  ) {}

  async write(rows: Row[], token: string): Promise<number> {
    // `exec` sends our pre-serialised body as it is (`insert` wants row objects for JSONEachRow).
    const result = await this.client.exec({
      query: `INSERT INTO ${this.table} FORMAT JSONEachRow`,
      values: body(rows, this.line),
      // One part per batch; the batch is all or nothing (it stays below max_insert_block_size).
      // The token makes a retried batch a no-op when the table deduplicates
      // (non_replicated_deduplication_window > 0, or a Replicated engine); ignored otherwise.
      clickhouse_settings: { async_insert: 0, max_insert_block_size: '1048576', insert_deduplication_token: token },
    });
    // Read the (empty) response to the end so the socket goes back to the pool.
    for await (const chunk of result.stream) void chunk;
    return rows.length;
  }

  classify(error: unknown): WriteErrorKind {
    return classifyClickHouseError(error);
  }
}

export function nLastEntryTarget(client: ClickHouseClient): ClickHouseTableTarget<NLastEntryRow> {
  return new ClickHouseTableTarget('n_last_entry', client, nLastEntryLine);
}

export function windowEntryTarget(client: ClickHouseClient): ClickHouseTableTarget<WindowEntryRow> {
  return new ClickHouseTableTarget('window_entry', client, windowEntryLine);
}

export function aggregationEntryTarget(client: ClickHouseClient): ClickHouseTableTarget<AggregationEntryRow> {
  return new ClickHouseTableTarget('aggregation_entry', client, aggregationEntryLine);
}
