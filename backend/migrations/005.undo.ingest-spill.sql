-- Reverts 005: drops the ingest's shutdown spill (unrestored open windows are lost).
DROP TABLE IF EXISTS pepeunit_ingest_spill;
