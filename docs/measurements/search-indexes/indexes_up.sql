-- Extra indexes/statistics for MLflow 3.17.2 tracking on PostgreSQL (schema head dc11669786a5).
-- Run with psql OUTSIDE a transaction (CONCURRENTLY). Idempotent. Not managed by MLflow's alembic:
-- drop them (indexes_down.sql) before a future `mlflow db upgrade` if a migration touches these
-- columns, then re-apply. If a CONCURRENTLY build fails it leaves an INVALID index: DROP it and rerun.
\set ON_ERROR_STOP on
\timing on
SET maintenance_work_mem = '512MB';

-- 1) search_runs default order (start_time DESC, run_uuid) within an experiment; also gives the
--    ordered outer side for param/tag/metric-filtered searches (early stop at LIMIT).
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_runs_exp_start_uuid
    ON runs (experiment_id, start_time DESC, run_uuid);

-- 2) selective tag / param equality filters (tags.k = 'v', params.k = 'v').
--    HASH, not btree: tags.value is varchar(8000) / params.value varchar(8000) (MLflow allows
--    6000/8000 chars); a btree on value fails inserts > 2704 bytes ("index row size exceeds
--    btree version 4 maximum"), i.e. it would break log_param/set_tag for long values.
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_tags_value_hash   ON tags   USING hash (value);
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_params_value_hash ON params USING hash (value);

-- 3) multi-column statistics so the planner knows key/value are correlated
--    (otherwise key='lr' AND value='0.01' is underestimated ~20x and it picks unordered plans).
CREATE STATISTICS IF NOT EXISTS st_params_key_value (mcv, dependencies) ON key, value FROM params;
CREATE STATISTICS IF NOT EXISTS st_tags_key_value   (mcv, dependencies) ON key, value FROM tags;

ANALYZE runs; ANALYZE params; ANALYZE tags;
