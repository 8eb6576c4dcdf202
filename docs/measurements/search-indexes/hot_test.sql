-- Does an index containing latest_metrics.value kill HOT updates (MLflow updates latest_metrics on every newer log_metric)?
DROP TABLE IF EXISTS lm_hot_a, lm_hot_b;
CREATE TABLE lm_hot_a (LIKE latest_metrics INCLUDING ALL) WITH (fillfactor = 90);
INSERT INTO lm_hot_a SELECT * FROM latest_metrics ORDER BY run_uuid LIMIT 100000;
CREATE TABLE lm_hot_b (LIKE latest_metrics INCLUDING ALL) WITH (fillfactor = 90);
INSERT INTO lm_hot_b SELECT * FROM lm_hot_a;
CREATE INDEX ON lm_hot_b (key, run_uuid) INCLUDE (value, is_nan);   -- candidate covering index
VACUUM ANALYZE lm_hot_a, lm_hot_b;
-- what _update_latest_metrics_if_necessary does: UPDATE value/timestamp/step of one (key, run_uuid)
UPDATE lm_hot_a SET value = value + 1, step = step + 1, "timestamp" = "timestamp" + 1000 WHERE key = 'acc';
UPDATE lm_hot_b SET value = value + 1, step = step + 1, "timestamp" = "timestamp" + 1000 WHERE key = 'acc';
SELECT pg_sleep(1.5);  -- let stats flush
SELECT relname, n_tup_upd, n_tup_hot_upd, round(100.0*n_tup_hot_upd/nullif(n_tup_upd,0),1) AS hot_pct
FROM pg_stat_user_tables WHERE relname IN ('lm_hot_a','lm_hot_b') ORDER BY 1;
DROP TABLE lm_hot_a, lm_hot_b;
