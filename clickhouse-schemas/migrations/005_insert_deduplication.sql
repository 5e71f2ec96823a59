-- Ours (not in the reference): remember the last 1000 insert blocks per table, so a batch the
-- ingest re-sends after a lost response (same insert_deduplication_token) is written once.
-- Settings only: columns, keys and TTL of the reference tables are unchanged.
ALTER TABLE n_last_entry MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE window_entry MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE aggregation_entry MODIFY SETTING non_replicated_deduplication_window = 1000;
