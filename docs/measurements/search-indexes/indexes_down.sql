-- Rollback of indexes_up.sql (no transaction: DROP INDEX CONCURRENTLY cannot run inside one).
DROP INDEX CONCURRENTLY IF EXISTS idx_runs_exp_start_uuid;
DROP INDEX CONCURRENTLY IF EXISTS idx_tags_value_hash;
DROP INDEX CONCURRENTLY IF EXISTS idx_params_value_hash;
DROP STATISTICS IF EXISTS st_params_key_value;
DROP STATISTICS IF EXISTS st_tags_key_value;
