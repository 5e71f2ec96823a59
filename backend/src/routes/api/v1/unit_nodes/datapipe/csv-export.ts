/**
 * CSV export of a node's data (pepeunit-datapipe.md §5.3): the configured policy's visible rows
 * (NRecords: the N newest; TimeWindow: not expired), oldest first, header = the item fields of
 * §5.2, values as Python's `str()` (datetimes `2025-09-10 08:27:00[.123000]`, floats `repr`).
 * Rows are streamed from ClickHouse into the zip, never held in memory all at once.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { pythonFloatRepr } from '@pepeunit/common/datapipe';
import { parsePythonFloat, pythonDateTimeText } from './csv-import.js';
import { csvLine, spreadsheetSafe } from './csv.js';
import { QueryParams, TABLE_SPECS, visibleSource, type ClickHousePolicy } from './tables.js';

export const CSV_HEADERS: Readonly<Record<ClickHousePolicy, readonly string[]>> = {
  NRecords: ['unit_node_uuid', 'state', 'state_type', 'create_datetime', 'max_count', 'size'],
  TimeWindow: ['unit_node_uuid', 'state', 'state_type', 'create_datetime', 'expiration_datetime', 'size'],
  Aggregation: ['unit_node_uuid', 'state', 'aggregation_type', 'time_window_size', 'create_datetime', 'start_window_datetime', 'end_window_datetime'],
};

/** One ClickHouse row as the export (and the reads) select it. */
export interface ExportRow {
  node_text: string;
  state: string | number | null;
  state_text?: string;
  state_type_text?: string;
  aggregation_type_text?: string;
  create_ms: number | string;
  expiration_s?: number | string;
  start_ms?: number | string;
  end_ms?: number | string;
  max_count?: number | string;
  time_window_size?: number | string;
  size?: number | string;
}

function csvFields(policy: ClickHousePolicy, r: ExportRow): string[] {
  const dt = (ms: number | string | undefined) => pythonDateTimeText(Number(ms));
  switch (policy) {
    case 'NRecords':
      return [r.node_text, spreadsheetSafe(String(r.state)), r.state_type_text ?? '', dt(r.create_ms), String(r.max_count), String(r.size)];
    case 'TimeWindow':
      return [r.node_text, spreadsheetSafe(String(r.state)), r.state_type_text ?? '', dt(r.create_ms), dt(Number(r.expiration_s) * 1000), String(r.size)];
    case 'Aggregation': {
      const value = parsePythonFloat(r.state_text ?? String(r.state));
      return [
        r.node_text,
        value === null ? spreadsheetSafe(String(r.state_text)) : pythonFloatRepr(value),
        r.aggregation_type_text ?? '',
        String(r.time_window_size),
        dt(r.create_ms),
        dt(r.start_ms),
        dt(r.end_ms),
      ];
    }
  }
}

function exportQuery(policy: ClickHousePolicy, nodeUuid: string, nRecords: number): { sql: string; countSql: string; params: Record<string, unknown> } {
  const spec = TABLE_SPECS[policy];
  const params = new QueryParams();
  const source = visibleSource(policy, params, nodeUuid, nRecords);
  const where = source.conditions.length ? `WHERE ${source.conditions.join(' AND ')}` : '';
  return {
    sql: `SELECT ${spec.columns} FROM ${source.from} ${where} ORDER BY ${spec.ts} ASC, ${spec.tiebreak} ASC`,
    countSql: `SELECT count() AS c FROM ${source.from} ${where}`,
    params: params.values,
  };
}

/** Number of rows the export would hold. */
export async function countExportRows(clickhouse: ClickHouseClient, policy: ClickHousePolicy, nodeUuid: string, nRecords: number): Promise<number> {
  const q = exportQuery(policy, nodeUuid, nRecords);
  const rows = await clickhouse.query({ query: q.countSql, query_params: q.params, format: 'JSONEachRow' }).then((r) => r.json<{ c: number | string }>());
  return Number(rows[0]?.c ?? 0);
}

/** The CSV text in chunks of about 64 KiB. */
export async function* exportCsvChunks(clickhouse: ClickHouseClient, policy: ClickHousePolicy, nodeUuid: string, nRecords: number): AsyncGenerator<string> {
  const q = exportQuery(policy, nodeUuid, nRecords);
  const result = await clickhouse.query({ query: q.sql, query_params: q.params, format: 'JSONEachRow' });
  let buffer = csvLine(CSV_HEADERS[policy]);
  for await (const rows of result.stream<ExportRow>()) {
    for (const row of rows) {
      buffer += csvLine(csvFields(policy, row.json<ExportRow>()));
      if (buffer.length >= 65536) {
        yield buffer;
        buffer = '';
      }
    }
  }
  if (buffer) yield buffer;
}
