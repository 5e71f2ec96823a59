-- Alerts (ours, issue 12): per-unit settings, mute windows, the alert outbox/history, the Telegram
-- messages built from it and the per-chat send state. Every alert accepted by the webhook (or
-- raised by a backend component) is one row of alert_events; the throttled sender merges the
-- pending rows of one chat into one alert_messages row per PU_TELEGRAM_ALERT_INTERVAL.

-- The minimum unit log level that alerts (NULL = off, the default: no row means off).
CREATE TABLE IF NOT EXISTS alert_unit_settings (
    unit_uuid uuid PRIMARY KEY REFERENCES units (uuid) ON DELETE CASCADE,
    min_level varchar(10) CHECK (min_level IN ('Debug', 'Info', 'Warning', 'Error', 'Critical')),
    update_datetime timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_alert_unit_settings_on ON alert_unit_settings (unit_uuid) WHERE min_level IS NOT NULL;

-- Mute windows of a user: for one unit, or every alert of the user (unit_uuid NULL).
CREATE TABLE IF NOT EXISTS alert_mute_windows (
    uuid uuid PRIMARY KEY,
    user_uuid uuid NOT NULL REFERENCES users (uuid) ON DELETE CASCADE,
    unit_uuid uuid REFERENCES units (uuid) ON DELETE CASCADE,
    starts_at timestamptz NOT NULL,
    ends_at timestamptz NOT NULL,
    create_datetime timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ck_alert_mute_windows_order CHECK (ends_at > starts_at)
);
CREATE INDEX IF NOT EXISTS idx_alert_mute_windows_user ON alert_mute_windows (user_uuid, ends_at);
CREATE INDEX IF NOT EXISTS idx_alert_mute_windows_unit ON alert_mute_windows (unit_uuid);

-- One Telegram message (a merge of alerts) per row.
CREATE TABLE IF NOT EXISTS alert_messages (
    id bigserial PRIMARY KEY,
    chat_id bigint NOT NULL,
    state varchar(12) NOT NULL CHECK (state IN ('sent', 'failed')),
    alert_count integer NOT NULL,
    text text NOT NULL,
    telegram_message_id bigint,
    error text,
    attempts integer NOT NULL DEFAULT 1,
    create_datetime timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_alert_messages_chat ON alert_messages (chat_id, id);

-- The outbox and the history. state: pending (waits for its chat's next message), sent, muted
-- (inside a mute window), no_chat (the recipient has no bound Telegram chat), failed (Telegram
-- refused it for good or the retries ran out).
CREATE TABLE IF NOT EXISTS alert_events (
    id bigserial PRIMARY KEY,
    recipient_uuid uuid REFERENCES users (uuid) ON DELETE CASCADE,
    chat_id bigint,
    source varchar(64) NOT NULL,
    level varchar(10) NOT NULL,
    unit_uuid uuid,
    group_key varchar(200) NOT NULL,
    text text NOT NULL,
    state varchar(10) NOT NULL CHECK (state IN ('pending', 'sent', 'muted', 'no_chat', 'failed')),
    message_id bigint REFERENCES alert_messages (id) ON DELETE SET NULL,
    create_datetime timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS idx_alert_events_pending ON alert_events (chat_id, id) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS idx_alert_events_recipient ON alert_events (recipient_uuid, id);
CREATE INDEX IF NOT EXISTS idx_alert_events_unit ON alert_events (unit_uuid, id);
CREATE INDEX IF NOT EXISTS idx_alert_events_message ON alert_events (message_id);
CREATE INDEX IF NOT EXISTS idx_alert_events_time ON alert_events (create_datetime);

-- Per chat: when the next message may go (interval, Telegram's retry_after, backoff after errors).
-- Its row lock (FOR UPDATE SKIP LOCKED) makes one replica at a time the sender of a chat.
CREATE TABLE IF NOT EXISTS alert_chats (
    chat_id bigint PRIMARY KEY,
    next_send_at timestamptz NOT NULL DEFAULT '-infinity',
    failures integer NOT NULL DEFAULT 0,
    last_sent_at timestamptz
);

-- Telegram account binding: one-time deep-link codes (single use: consumed by DELETE ... RETURNING).
CREATE TABLE IF NOT EXISTS telegram_verification_codes (
    code varchar(64) PRIMARY KEY,
    user_uuid uuid NOT NULL REFERENCES users (uuid) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_telegram_verification_codes_user ON telegram_verification_codes (user_uuid);

-- grammY session data when PU_REDIS_URL is empty (shared by every replica).
CREATE TABLE IF NOT EXISTS telegram_sessions (
    key varchar(128) PRIMARY KEY,
    value jsonb NOT NULL,
    update_datetime timestamptz NOT NULL DEFAULT now()
);
