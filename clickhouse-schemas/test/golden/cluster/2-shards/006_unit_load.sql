-- Load per unit (ours, issue 13; docs/LOAD.md "Backend"). Written only by the backend's load
-- sampler, from the deltas of EMQX's counting rules (`cnt-unit-<unit>` + `cnt-node-<node>` of its
-- nodes): every message routed on any topic of the unit counts once.
--
-- Three tables, no materialised views (the sampler writes all three; a view would need a
-- cluster variant of its own): rows with the same sorting key are merged by the engine
-- (AggregatingMergeTree with SimpleAggregateFunction measures), so readers always aggregate:
--   SELECT unit_uuid, sum(messages) ... GROUP BY unit_uuid
-- Contract used by billing (issue 14): `unit_uuid`, `creator_uuid`, `repo_uuid`, the period
-- column (`minute` / `hour` / `day`) and `messages`. All times are UTC.
--
-- unit_load_minute: one row per unit and sampling cycle (deltas), merged per minute. Units with
--   no message in a cycle get no row. Kept 8 days.
CREATE TABLE IF NOT EXISTS unit_load_minute_local ON CLUSTER 'pepeunit'
(
    creator_uuid UUID,
    unit_uuid UUID,
    repo_uuid Nullable(UUID),
    minute DateTime,
    messages SimpleAggregateFunction(sum, UInt64)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (creator_uuid, unit_uuid, repo_uuid, minute)
TTL minute + INTERVAL 8 DAY
SETTINGS allow_nullable_key = 1, merge_with_ttl_timeout = 3600;

CREATE TABLE IF NOT EXISTS unit_load_minute ON CLUSTER 'pepeunit' AS unit_load_minute_local
ENGINE = Distributed('pepeunit', 'pepeunit', 'unit_load_minute_local', cityHash64(creator_uuid));

-- unit_load_hourly: one row per unit and closed minute, merged per hour; `peak_minute_messages`
--   is the busiest minute of the hour (peak MPS = peak_minute_messages / 60). Kept 400 days.
CREATE TABLE IF NOT EXISTS unit_load_hourly_local ON CLUSTER 'pepeunit'
(
    creator_uuid UUID,
    unit_uuid UUID,
    repo_uuid Nullable(UUID),
    hour DateTime,
    messages SimpleAggregateFunction(sum, UInt64),
    peak_minute_messages SimpleAggregateFunction(max, UInt64)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (creator_uuid, unit_uuid, repo_uuid, hour)
TTL hour + INTERVAL 400 DAY
SETTINGS allow_nullable_key = 1, merge_with_ttl_timeout = 86400;

CREATE TABLE IF NOT EXISTS unit_load_hourly ON CLUSTER 'pepeunit' AS unit_load_hourly_local
ENGINE = Distributed('pepeunit', 'pepeunit', 'unit_load_hourly_local', cityHash64(creator_uuid));

-- unit_load_daily: the same per UTC day. Kept 5 years.
CREATE TABLE IF NOT EXISTS unit_load_daily_local ON CLUSTER 'pepeunit'
(
    creator_uuid UUID,
    unit_uuid UUID,
    repo_uuid Nullable(UUID),
    day Date,
    messages SimpleAggregateFunction(sum, UInt64),
    peak_minute_messages SimpleAggregateFunction(max, UInt64)
)
ENGINE = ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')
ORDER BY (creator_uuid, unit_uuid, repo_uuid, day)
TTL day + INTERVAL 5 YEAR
SETTINGS allow_nullable_key = 1, merge_with_ttl_timeout = 86400;

CREATE TABLE IF NOT EXISTS unit_load_daily ON CLUSTER 'pepeunit' AS unit_load_daily_local
ENGINE = Distributed('pepeunit', 'pepeunit', 'unit_load_daily_local', cityHash64(creator_uuid));
