ALTER TABLE units DROP COLUMN IF EXISTS last_state_update_datetime;
