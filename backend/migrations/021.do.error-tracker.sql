-- Error tracker (ours, issue 13): errors logged at error level or above, grouped by fingerprint
-- (sha1 of the normalised message and the top stack frames) per process; crashes are errors with
-- kind 'crash'. Counts are exact (one UPSERT per flush, batched in memory in between).
-- `alerted_count` is the count when the admin was last alerted, so the next alert says
-- "happened N times since the last alert".
CREATE TABLE IF NOT EXISTS error_fingerprints (
    fingerprint char(40) NOT NULL,
    process varchar(128) NOT NULL, -- '<role>@<host>:<pid>' of the process that logged it
    kind varchar(8) NOT NULL CHECK (kind IN ('error', 'crash')),
    level varchar(8) NOT NULL,
    message text NOT NULL,  -- normalised (numbers, uuids, hex ids replaced), at most 1000 chars
    sample text NOT NULL,   -- one original message, at most 1000 chars
    frames text NOT NULL,   -- top frames, one per line
    count bigint NOT NULL CHECK (count >= 0),
    first_seen timestamp without time zone NOT NULL,
    last_seen timestamp without time zone NOT NULL,
    alerted_count bigint NOT NULL DEFAULT 0,
    last_alert_at timestamp without time zone,
    PRIMARY KEY (fingerprint, process)
);
CREATE INDEX IF NOT EXISTS idx_error_fingerprints_last_seen ON error_fingerprints (last_seen DESC);

-- Hourly counts, for "top N over a period". Rows older than 90 days are removed by the tracker.
CREATE TABLE IF NOT EXISTS error_counts_hourly (
    fingerprint char(40) NOT NULL,
    process varchar(128) NOT NULL,
    hour timestamp without time zone NOT NULL,
    count bigint NOT NULL CHECK (count >= 0),
    PRIMARY KEY (hour, fingerprint, process)
);
