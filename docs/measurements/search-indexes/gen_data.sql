-- Synthetic MLflow-shaped data: 10 experiments, 200k runs, 20 params/run, 5 tags/run,
-- 5 latest_metrics/run, 25 metrics rows/run (5 keys x 5 steps) = 5M metrics rows.
\timing on
SET session_replication_role = replica;  -- skip FK triggers during bulk load (superuser only)
SELECT setseed(0.42);
INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, creation_time, last_update_time, workspace)
SELECT i, 'exp_' || i, 'file:///tmp/mlruns/' || i, 'active',
       (extract(epoch from now())*1000)::bigint - 100*86400000::bigint, (extract(epoch from now())*1000)::bigint, 'default'
FROM generate_series(1,10) i;
SELECT setval('experiments_experiment_id_seq', 10);

CREATE TEMP TABLE gen_runs AS
SELECT i, replace(gen_random_uuid()::text, '-', '') AS run_uuid,
       1 + (i % 10) AS experiment_id,
       (extract(epoch from now())*1000)::bigint - (random() * 90 * 86400000)::bigint AS start_time
FROM generate_series(0, 199999) i;

INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, start_time, end_time,
                  source_version, lifecycle_stage, artifact_uri, experiment_id, deleted_time)
SELECT run_uuid, 'run-' || i, 'LOCAL', 'train.py', '', 'user' || (i % 50), 'FINISHED', start_time,
       start_time + 60000 + (i % 3600) * 1000, '', 'active',
       'file:///tmp/mlruns/' || experiment_id || '/' || run_uuid || '/artifacts', experiment_id, NULL
FROM gen_runs ORDER BY start_time;   -- heap roughly in arrival (time) order, like production

-- params: 'lr' (20 distinct values) + param_1..param_19
INSERT INTO params (key, value, run_uuid)
SELECT CASE WHEN k = 0 THEN 'lr' ELSE 'param_' || k END,
       CASE WHEN k = 0 THEN (ARRAY['0.01','0.001','0.1','0.0001','0.05','0.005','0.0005','0.2','0.02','0.002',
                                   '0.3','0.03','0.003','0.4','0.04','0.004','0.5','0.06','0.006','0.7'])[1 + (r.i*7 % 20)]
            ELSE 'v' || ((r.i * (k+3)) % (10 + k*50)) END,
       r.run_uuid
FROM gen_runs r CROSS JOIN generate_series(0, 19) k
ORDER BY r.start_time, k;

-- tags: team (20 distinct, 'x' among them) + 4 mlflow system tags
INSERT INTO tags (key, value, run_uuid)
SELECT t.key,
       CASE t.key WHEN 'team' THEN (ARRAY['x','a','b','c','d','e','f','g','h','i','j','k','l','m','n','o','p','q','r','s'])[1 + (r.i*13 % 20)]
                  WHEN 'mlflow.user' THEN 'user' || (r.i % 50)
                  WHEN 'mlflow.source.name' THEN 'train.py'
                  WHEN 'mlflow.source.type' THEN 'LOCAL'
                  ELSE 'run-' || r.i END,
       r.run_uuid
FROM gen_runs r CROSS JOIN (VALUES ('team'),('mlflow.user'),('mlflow.source.name'),('mlflow.source.type'),('mlflow.runName')) t(key)
ORDER BY r.start_time;

-- metrics: 5 keys x 5 steps; value ~ uniform(0,1); timestamp = start_time + step*60s
CREATE TEMP TABLE gen_metrics AS
SELECT m.key, random() AS value, r.start_time + s * 60000 AS ts, r.run_uuid, s::bigint AS step, r.start_time
FROM gen_runs r CROSS JOIN (VALUES ('acc'),('loss'),('f1'),('precision'),('recall')) m(key)
CROSS JOIN generate_series(0, 4) s;

INSERT INTO metrics (key, value, "timestamp", run_uuid, step, is_nan)
SELECT key, value, ts, run_uuid, step, false FROM gen_metrics ORDER BY ts;  -- interleaved across runs, time order

INSERT INTO latest_metrics (key, value, "timestamp", step, is_nan, run_uuid)
SELECT DISTINCT ON (run_uuid, key) key, value, ts, step, false, run_uuid
FROM gen_metrics ORDER BY run_uuid, key, step DESC;

SET session_replication_role = origin;
VACUUM ANALYZE experiments, runs, params, tags, metrics, latest_metrics;
SELECT relname, n_live_tup, pg_size_pretty(pg_total_relation_size(relid)) total, pg_size_pretty(pg_relation_size(relid)) heap
FROM pg_stat_user_tables WHERE relname IN ('experiments','runs','params','tags','metrics','latest_metrics') ORDER BY 1;
