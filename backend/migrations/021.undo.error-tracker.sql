DROP TABLE IF EXISTS error_counts_hourly;
DROP TABLE IF EXISTS error_fingerprints;
