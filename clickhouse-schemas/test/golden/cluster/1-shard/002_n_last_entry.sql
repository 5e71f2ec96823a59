-- DataPipe NRecords policy: the last N values per unit node (reference table).
-- Writers insert positionally, so the column order is part of the contract.
-- Trimming to N rows is done by a periodic mutation, not by the table.
CREATE TABLE IF NOT EXISTS n_last_entry ON CLUSTER 'pepeunit'
(
    unit_node_uuid UUID,
    state String,
    state_type Enum8('Number' = 1, 'Text' = 2),
    create_datetime DateTime64(3),
    max_count UInt32,
    size UInt32
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (unit_node_uuid, create_datetime)
PRIMARY KEY (unit_node_uuid, create_datetime)
SETTINGS merge_with_ttl_timeout = 600, index_granularity = 128;
