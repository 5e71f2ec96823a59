ALTER TABLE units DROP COLUMN IF EXISTS firmware_update_target_commit;
