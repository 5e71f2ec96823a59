-- Unit logs received on the `log` system topic (reference table, same name, columns and order).
-- Rows expire through the table TTL; the backend sets expiration_datetime = now + PU_UNIT_LOG_EXPIRATION.
CREATE TABLE IF NOT EXISTS unit_logs_local ON CLUSTER 'pepeunit'
(
    uuid UUID,
    level Enum8('Debug' = 1, 'Info' = 2, 'Warning' = 3, 'Error' = 4, 'Critical' = 5),
    unit_uuid UUID,
    text String,
    create_datetime DateTime64(3),
    expiration_datetime DateTime
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (unit_uuid, create_datetime)
TTL expiration_datetime
SETTINGS merge_with_ttl_timeout = 600;

CREATE TABLE IF NOT EXISTS unit_logs ON CLUSTER 'pepeunit' AS unit_logs_local
ENGINE = Distributed('pepeunit', 'pepeunit', 'unit_logs_local', cityHash64(unit_uuid));
