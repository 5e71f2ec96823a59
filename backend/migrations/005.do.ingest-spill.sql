-- The ingest's shutdown spill: what a stopping ingest could not hand to its databases.
--   kind 'aggregation_snapshot': the open Aggregation windows (sum, count, min, max per window,
--        O(1) per window) plus aggregation rows not yet written; restored at the next start
--        BEFORE any message is processed, so windows of up to a day survive a restart.
--   kind 'n_last_entry' / 'window_entry' / 'aggregation_entry' / 'last_value': rows whose
--        write did not succeed before the shutdown deadline (database down); written by the
--        next ingest that starts.
-- Rows are claimed with DELETE ... RETURNING (FOR UPDATE SKIP LOCKED), so with several ingest
-- processes each spill is restored exactly once.
CREATE TABLE pepeunit_ingest_spill (
    id bigserial PRIMARY KEY,
    kind character varying NOT NULL,
    payload jsonb NOT NULL,
    row_count integer NOT NULL,
    instance character varying NOT NULL,
    create_datetime timestamp without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    CONSTRAINT ck_pepeunit_ingest_spill_kind
        CHECK (kind IN ('aggregation_snapshot', 'n_last_entry', 'window_entry', 'aggregation_entry', 'last_value'))
);
