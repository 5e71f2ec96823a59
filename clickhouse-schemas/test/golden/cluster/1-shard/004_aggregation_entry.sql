-- DataPipe Aggregation policy: one row per closed tumbling window and function (reference table).
-- No TTL: like the reference, the table keeps every window.
CREATE TABLE IF NOT EXISTS aggregation_entry ON CLUSTER 'pepeunit'
(
    unit_node_uuid UUID,
    state Float64,
    aggregation_type Enum8('Avg' = 1, 'Min' = 2, 'Max' = 3, 'Sum' = 4),
    time_window_size UInt32,
    create_datetime DateTime64(3),
    start_window_datetime DateTime64(3),
    end_window_datetime DateTime64(3)
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (unit_node_uuid, start_window_datetime)
PRIMARY KEY (unit_node_uuid, start_window_datetime)
SETTINGS index_granularity = 128;
