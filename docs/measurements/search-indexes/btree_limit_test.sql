-- Does a btree index on params(key, value) break log_param for long values (MLflow allows 6000 chars)?
CREATE TEMP TABLE p_test (LIKE params INCLUDING ALL);
CREATE INDEX ON p_test (key, value);
CREATE INDEX ON p_test USING hash (value);
-- random (incompressible) 6000-char value
INSERT INTO p_test (key, value, run_uuid)
SELECT 'long', string_agg(md5(random()::text), '') , 'r1' FROM generate_series(1, 188);  -- 188*32 = 6016 chars
-- same with only a hash index (stores 4-byte hash codes: no size limit)
DROP TABLE p_test; CREATE TEMP TABLE p_test (LIKE params INCLUDING ALL);
CREATE INDEX ON p_test USING hash (value);
INSERT INTO p_test (key, value, run_uuid) SELECT 'long', left(string_agg(md5(random()::text), ''), 6000), 'r1' FROM generate_series(1, 188);
SELECT 'hash-only insert ok', length(value) FROM p_test;
