-- Time of the last accepted `state` message of a unit. The system-topic consumer updates a unit's
-- state only when this is older than PU_STATE_SEND_INTERVAL - 1 seconds, so several backend
-- replicas sharing the subscription cannot write the same unit twice within the interval.
-- (units.last_update_datetime cannot serve: every log message bumps it.) Nullable: tools that
-- only know the reference columns keep working.
ALTER TABLE units ADD COLUMN IF NOT EXISTS last_state_update_datetime timestamp without time zone;
