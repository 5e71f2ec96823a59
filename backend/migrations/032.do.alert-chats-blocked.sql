-- A chat that blocked the bot (Telegram answered 403, or sent my_chat_member "kicked"): no
-- alert message is sent to it until it unblocks the bot (my_chat_member "member"); its alerts
-- are stored as no_chat meanwhile.
ALTER TABLE alert_chats ADD COLUMN IF NOT EXISTS blocked_at timestamptz;
ALTER TABLE alert_chats ADD COLUMN IF NOT EXISTS blocked_reason text;
