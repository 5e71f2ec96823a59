-- Node state (ours, issue 13): one row per process and sample (PU_NODE_STATE_INTERVAL, default
-- 30 s) from every backend replica, ingest and embedded broker. Kept 30 days.
-- `process` is '<role>@<host>:<pid>'; message counters are deltas since the previous sample of
-- the same process (channel -> messages: mqtt, rest, telegram, ...); `disk_free_bytes` maps each
-- data folder to the free bytes of its file system.
CREATE TABLE IF NOT EXISTS node_state ON CLUSTER 'pepeunit'
(
    process String,
    role LowCardinality(String),
    host String,
    pid UInt32,
    version String,
    ts DateTime,
    uptime_seconds Float64,
    cpu_percent Float64,
    rss_bytes UInt64,
    heap_used_bytes UInt64,
    heap_total_bytes UInt64,
    event_loop_delay_mean_ms Float64,
    event_loop_delay_p99_ms Float64,
    messages Map(String, UInt64),
    disk_free_bytes Map(String, UInt64)
)
ENGINE = ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (process, ts)
TTL ts + INTERVAL 30 DAY
SETTINGS merge_with_ttl_timeout = 86400;
