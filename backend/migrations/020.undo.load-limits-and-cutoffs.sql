DROP TABLE IF EXISTS load_decisions;
DROP TABLE IF EXISTS load_unit_cutoffs;
DROP TABLE IF EXISTS load_user_limits;
DROP TRIGGER IF EXISTS trg_units_nodes_load_owner_moved ON units_nodes;
DROP TRIGGER IF EXISTS trg_units_nodes_load_owner ON units_nodes;
DROP TRIGGER IF EXISTS trg_units_load_owner ON units;
DROP FUNCTION IF EXISTS pepeunit_load_owner_changed();
