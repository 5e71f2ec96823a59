ALTER TABLE users DROP COLUMN IF EXISTS tokens_valid_after;
