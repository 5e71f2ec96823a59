DROP TABLE IF EXISTS grade_iterations;
DROP TABLE IF EXISTS grade_runs;
DROP TABLE IF EXISTS scraper_tokens;
DROP TABLE IF EXISTS instance_keys;
