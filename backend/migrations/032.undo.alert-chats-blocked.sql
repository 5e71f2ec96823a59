ALTER TABLE alert_chats DROP COLUMN IF EXISTS blocked_reason;
ALTER TABLE alert_chats DROP COLUMN IF EXISTS blocked_at;
