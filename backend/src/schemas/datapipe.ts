/**
 * Schemas of the DataPipe API under `/unit_nodes` (pepeunit-datapipe.md §5): the read filter
 * (§5.1 plus our `cursor`), the per-policy result items (§5.2), the check result (§1.4) and
 * the detailed 422 body of set/import failures.
 */
import { Type, type Static } from '@sinclair/typebox';
import { Nullable, OrderBy, Uuid, StringEnum } from './common.js';

export const ProcessingPolicy = Type.Union([
  Type.Literal('LastValue'),
  Type.Literal('NRecords'),
  Type.Literal('TimeWindow'),
  Type.Literal('Aggregation'),
]);
export type ProcessingPolicy = Static<typeof ProcessingPolicy>;

export const AggregationFunction = StringEnum(['Avg', 'Min', 'Max', 'Sum']);
export type AggregationFunction = Static<typeof AggregationFunction>;

export const UuidQuery = Type.Object({ uuid: Uuid });

/** Datetimes are validated by the service (ISO 8601 / RFC 3339, naive = UTC) for clear messages. */
const DateTimeText = Type.String({ maxLength: 64, description: 'ISO 8601 datetime, e.g. 2025-01-01T00:00:00Z (no offset = UTC)' });

/**
 * `GET /unit_nodes/get_data_pipe_data/`: the reference filter (§5.1) plus `cursor`. Enums,
 * numbers and the uuid are checked here (422 with a `detail` list); datetimes, `relative_time`
 * and the cursor by the service (422 with a message).
 */
export const DataPipeDataQuery = Type.Object({
  uuid: Uuid,
  type: ProcessingPolicy,
  search_string: Type.Optional(Type.String({ maxLength: 256, description: 'Case-insensitive substring of state (not for Aggregation); matched literally' })),
  aggregation_type: Type.Optional(Type.Array(AggregationFunction, { maxItems: 4, description: 'Aggregation only; repeatable' })),
  time_window_size: Type.Optional(Type.Integer({ minimum: 1, maximum: 86400, description: 'Aggregation only: equality filter' })),
  start_agg_window_datetime: Type.Optional(DateTimeText),
  end_agg_window_datetime: Type.Optional(DateTimeText),
  start_create_datetime: Type.Optional(DateTimeText),
  end_create_datetime: Type.Optional(DateTimeText),
  relative_time: Type.Optional(Type.String({ maxLength: 32, description: '<int><s|m|h|d|M|y>: only rows created within this period before now' })),
  order_by_create_date: Type.Optional(OrderBy),
  offset: Type.Optional(Type.Integer({ minimum: 0, maximum: 1_000_000_000 })),
  limit: Type.Optional(Type.Integer({ minimum: 0, maximum: 2_147_483_647, description: '0 or absent = PU_MAX_PAGINATION_SIZE (never unlimited)' })),
  cursor: Type.Optional(Type.String({ maxLength: 1024, description: 'next_cursor of the previous page (keyset pagination)' })),
});
export type DataPipeDataQuery = Static<typeof DataPipeDataQuery>;

export const NRecordsItem = Type.Object({
  unit_node_uuid: Uuid,
  state: Type.String(),
  state_type: Type.String(),
  create_datetime: Type.String(),
  max_count: Type.Integer(),
  size: Type.Integer(),
});
export const TimeWindowItem = Type.Object({
  unit_node_uuid: Uuid,
  state: Type.String(),
  state_type: Type.String(),
  create_datetime: Type.String(),
  expiration_datetime: Type.String(),
  size: Type.Integer(),
});
export const AggregationItem = Type.Object({
  unit_node_uuid: Uuid,
  state: Nullable(Type.Number()),
  aggregation_type: Type.String(),
  time_window_size: Type.Integer(),
  create_datetime: Type.String(),
  start_window_datetime: Type.String(),
  end_window_datetime: Type.String(),
});
export const LastValueItem = Type.Object({
  unit_node_uuid: Uuid,
  state: Type.String(),
  last_update_datetime: Type.String(),
});
export type NRecordsItem = Static<typeof NRecordsItem>;
export type TimeWindowItem = Static<typeof TimeWindowItem>;
export type AggregationItem = Static<typeof AggregationItem>;
export type LastValueItem = Static<typeof LastValueItem>;
export type PipeDataItem = NRecordsItem | TimeWindowItem | AggregationItem | LastValueItem;

export const PipeDataResult = Type.Object({
  count: Type.Integer({ description: 'Rows matching the filters (all pages)' }),
  pipe_data: Type.Array(Type.Union([NRecordsItem, TimeWindowItem, AggregationItem, LastValueItem])),
  next_cursor: Nullable(Type.String({ description: 'Pass as `cursor` for the next page; null on the last page' })),
});
export type PipeDataResult = Static<typeof PipeDataResult>;

export const DataPipeValidationEntry = Type.Object({ stage: Type.String(), message: Type.String() });
export const DataPipeCheckResult = Type.Array(DataPipeValidationEntry);

/** Body of a 422 from set_data_pipe_config / set_data_pipe_data_csv: `detail` stays the reference string. */
export const DataPipeErrorBody = Type.Object({
  detail: Type.String(),
  errors: Type.Array(Type.Object({ stage: Type.Optional(Type.String()), row: Type.Optional(Type.Integer()), message: Type.String() })),
});
