/**
 * The reference Pepeunit ClickHouse tables as they must look after all migrations
 * (reference/pepeunit-datapipe.md §4.1, pepeunit-backend.md §1.3). Writers insert
 * positionally, so column order is part of the contract. Used to detect drift when an
 * existing database is adopted.
 */
export interface ReferenceTable {
  readonly name: string;
  /** [column, ClickHouse type] in table order. */
  readonly columns: ReadonlyArray<readonly [string, string]>;
  /** system.tables.sorting_key */
  readonly sortingKey: string;
  /** system.tables.primary_key */
  readonly primaryKey: string;
  readonly hasTtl: boolean;
}

const STATE_TYPE = "Enum8('Number' = 1, 'Text' = 2)";

export const REFERENCE_CLICKHOUSE_TABLES: readonly ReferenceTable[] = [
  {
    name: 'unit_logs',
    columns: [
      ['uuid', 'UUID'],
      ['level', "Enum8('Debug' = 1, 'Info' = 2, 'Warning' = 3, 'Error' = 4, 'Critical' = 5)"],
      ['unit_uuid', 'UUID'],
      ['text', 'String'],
      ['create_datetime', 'DateTime64(3)'],
      ['expiration_datetime', 'DateTime'],
    ],
    sortingKey: 'unit_uuid, create_datetime',
    primaryKey: 'unit_uuid, create_datetime',
    hasTtl: true,
  },
  {
    name: 'n_last_entry',
    columns: [
      ['unit_node_uuid', 'UUID'],
      ['state', 'String'],
      ['state_type', STATE_TYPE],
      ['create_datetime', 'DateTime64(3)'],
      ['max_count', 'UInt32'],
      ['size', 'UInt32'],
    ],
    sortingKey: 'unit_node_uuid, create_datetime',
    primaryKey: 'unit_node_uuid, create_datetime',
    hasTtl: false,
  },
  {
    name: 'window_entry',
    columns: [
      ['unit_node_uuid', 'UUID'],
      ['state', 'String'],
      ['state_type', STATE_TYPE],
      ['create_datetime', 'DateTime64(3)'],
      ['expiration_datetime', 'DateTime'],
      ['size', 'UInt32'],
    ],
    sortingKey: 'unit_node_uuid, create_datetime',
    primaryKey: 'unit_node_uuid, create_datetime',
    hasTtl: true,
  },
  {
    name: 'aggregation_entry',
    columns: [
      ['unit_node_uuid', 'UUID'],
      ['state', 'Float64'],
      ['aggregation_type', "Enum8('Avg' = 1, 'Min' = 2, 'Max' = 3, 'Sum' = 4)"],
      ['time_window_size', 'UInt32'],
      ['create_datetime', 'DateTime64(3)'],
      ['start_window_datetime', 'DateTime64(3)'],
      ['end_window_datetime', 'DateTime64(3)'],
    ],
    sortingKey: 'unit_node_uuid, start_window_datetime',
    primaryKey: 'unit_node_uuid, start_window_datetime',
    hasTtl: false,
  },
];
