-- The commit the last Update command asked a unit to install (ours). Automatic updates use it to
-- tell an update already in flight for the current target from a target that moved since, so a
-- device is neither left behind nor sent the same Update twice. Nullable: tools that only know
-- the reference columns keep working.
ALTER TABLE units ADD COLUMN IF NOT EXISTS firmware_update_target_commit varchar;
