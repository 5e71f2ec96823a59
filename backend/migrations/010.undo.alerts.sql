DROP TABLE IF EXISTS telegram_sessions;
DROP TABLE IF EXISTS telegram_verification_codes;
DROP TABLE IF EXISTS alert_chats;
DROP TABLE IF EXISTS alert_events;
DROP TABLE IF EXISTS alert_messages;
DROP TABLE IF EXISTS alert_mute_windows;
DROP TABLE IF EXISTS alert_unit_settings;
