-- DataPipe TimeWindow policy: values of the last time_window_size seconds (reference table).
-- Retention is the table TTL on expiration_datetime (now + window), applied by TTL merges.
CREATE TABLE IF NOT EXISTS window_entry_local ON CLUSTER 'pepeunit'
(
    unit_node_uuid UUID,
    state String,
    state_type Enum8('Number' = 1, 'Text' = 2),
    create_datetime DateTime64(3),
    expiration_datetime DateTime,
    size UInt32
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (unit_node_uuid, create_datetime)
PRIMARY KEY (unit_node_uuid, create_datetime)
TTL expiration_datetime
SETTINGS merge_with_ttl_timeout = 600, index_granularity = 128;

CREATE TABLE IF NOT EXISTS window_entry ON CLUSTER 'pepeunit' AS window_entry_local
ENGINE = Distributed('pepeunit', 'pepeunit', 'window_entry_local', cityHash64(unit_node_uuid));
