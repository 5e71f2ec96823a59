-- Tokens of a user issued before this time are refused (ours): set when the password changes,
-- so a stolen token dies with the old password. Nullable: reference tools keep working.
ALTER TABLE users ADD COLUMN IF NOT EXISTS tokens_valid_after timestamp without time zone;
