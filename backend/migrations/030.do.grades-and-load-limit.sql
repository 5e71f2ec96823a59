-- Instance grades and the signed load_limit report (ours, issue 14).

-- The instance's Ed25519 key, generated once by the first backend that needs it (every replica
-- then reads the same row). The private key is stored encrypted with PU_ENCRYPT_KEY
-- (AES-256-GCM, the same format as other secrets at rest); the public key is published.
CREATE TABLE IF NOT EXISTS instance_keys (
    id smallint PRIMARY KEY CHECK (id = 1),
    algorithm varchar(16) NOT NULL DEFAULT 'Ed25519' CHECK (algorithm = 'Ed25519'),
    public_key text NOT NULL,            -- base64 of the SubjectPublicKeyInfo DER
    private_key_encrypted text NOT NULL, -- Cipher(base64 of the PKCS#8 DER)
    create_datetime timestamp without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
);

-- Tokens of scrapers allowed to read GET /metrics/load_limit. Only a SHA-256 of the token is
-- stored; the token is shown once when the admin creates it.
CREATE TABLE IF NOT EXISTS scraper_tokens (
    uuid uuid PRIMARY KEY,
    name varchar(100) NOT NULL,
    token_hash char(64) NOT NULL UNIQUE,
    token_prefix varchar(16) NOT NULL,  -- the first characters, to tell tokens apart in lists
    creator_uuid uuid,                  -- the admin (kept when the account is deleted: audit)
    create_datetime timestamp without time zone NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    last_used_datetime timestamp without time zone,
    revoked_datetime timestamp without time zone
);

-- Load checks (instance grades): one row per run, one row per iteration (no foreign keys: the
-- schema test keeps foreign keys to the reference ones; the code writes both in order). An iteration's body is
-- the canonical JSON that is hashed (text, so it is stored byte for byte as hashed); its hash
-- covers the previous hash, so the iterations form a chain from the run's genesis hash.
CREATE TABLE IF NOT EXISTS grade_runs (
    uuid uuid PRIMARY KEY,
    status varchar(16) NOT NULL CHECK (status IN ('running', 'finished', 'failed', 'cancelled')),
    parameters text NOT NULL,            -- canonical JSON of the ramp and the service level
    started_at timestamp without time zone NOT NULL,
    finished_at timestamp without time zone,
    grade_mps integer CHECK (grade_mps IS NULL OR grade_mps >= 0),
    stop_reason text,
    genesis_hash char(64) NOT NULL,
    creator_uuid uuid
);
CREATE INDEX IF NOT EXISTS idx_grade_runs_finished ON grade_runs (finished_at DESC) WHERE status = 'finished';
-- At most one run at a time (the check measures the instance; two would measure each other).
CREATE UNIQUE INDEX IF NOT EXISTS idx_grade_runs_one_running ON grade_runs ((true)) WHERE status = 'running';

CREATE TABLE IF NOT EXISTS grade_iterations (
    run_uuid uuid NOT NULL,
    index integer NOT NULL CHECK (index >= 0),
    body text NOT NULL,
    prev_hash char(64) NOT NULL,
    hash char(64) NOT NULL,
    PRIMARY KEY (run_uuid, index)
);
