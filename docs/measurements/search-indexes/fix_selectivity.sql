-- The arithmetic value assignment in gen_data.sql correlated with experiment_id (i%10), giving 50%
-- selectivity inside one experiment. Re-draw lr / team uniformly at random (~5% each).
\timing on
SELECT setseed(0.7);
UPDATE params SET value = (ARRAY['0.01','0.001','0.1','0.0001','0.05','0.005','0.0005','0.2','0.02','0.002',
  '0.3','0.03','0.003','0.4','0.04','0.004','0.5','0.06','0.006','0.7'])[1 + floor(random()*20)::int] WHERE key = 'lr';
UPDATE tags SET value = (ARRAY['x','a','b','c','d','e','f','g','h','i','j','k','l','m','n','o','p','q','r','s'])[1 + floor(random()*20)::int] WHERE key = 'team';
VACUUM ANALYZE params; VACUUM ANALYZE tags;
SELECT r.experiment_id, count(*) FILTER (WHERE p.value='0.01') lr001, count(*) total FROM runs r JOIN params p ON p.run_uuid=r.run_uuid AND p.key='lr' WHERE r.experiment_id IN (1,2) GROUP BY 1;
SELECT r.experiment_id, count(*) FILTER (WHERE t.value='x') team_x FROM runs r JOIN tags t ON t.run_uuid=r.run_uuid AND t.key='team' WHERE r.experiment_id IN (1,2) GROUP BY 1;
SELECT count(*) FILTER (WHERE value > 0.9) acc_gt_09, count(*) FROM latest_metrics lm JOIN runs r USING (run_uuid) WHERE key='acc' AND r.experiment_id=1;
