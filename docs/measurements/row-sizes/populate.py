"""Populate MLflow's real schema through MLflow's own SqlAlchemyStore (no raw SQL inserts).

2,000 runs: each created with the 4 fluent-API system tags (+ mlflow.runName added by the store),
then one log_batch with 30 params + 10 user tags.
Metrics: 200 'long' runs x 10 keys x 500 steps = 1,000,000 rows, logged as log_batch calls of
1,000 metrics (10 keys x 100 steps), interleaved across runs in 5 rounds (as concurrent training
jobs would); the other 1,800 runs log 10 keys x 5 steps (one call of 50 metrics) = 90,000 rows.
Finally every run is set FINISHED (update_run_info), as a real run would be.
"""
import json
import random
import sys
import time

sys.path.insert(0, __import__("os").path.dirname(__file__))
from common import ARTIFACT_ROOT, DB_URI, METRIC_KEYS, make_metrics, make_params, make_system_tags, make_user_tags

from mlflow.entities import RunStatus
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

N_RUNS, N_LONG, LONG_STEPS, CHUNK, SHORT_STEPS = 2000, 200, 500, 100, 5

rng = random.Random(42)
random.seed(42)
store = SqlAlchemyStore(DB_URI, ARTIFACT_ROOT)
exp_id = store.create_experiment("rowsize-populate")
t0_ms = int(time.time() * 1000)
timing = {}

t = time.perf_counter()
run_ids = []
for i in range(N_RUNS):
    r = store.create_run(exp_id, user_id="alice", start_time=t0_ms + i, tags=make_system_tags(rng), run_name=None)
    run_ids.append(r.info.run_id)
timing["create_run_x2000_s"] = time.perf_counter() - t

t = time.perf_counter()
for i, rid in enumerate(run_ids):
    store.log_batch(rid, metrics=[], params=make_params(rng), tags=make_user_tags(rng, i))
timing["log_batch_params30_tags10_x2000_s"] = time.perf_counter() - t

t = time.perf_counter()
n_calls = n_rows = 0
for start in range(0, LONG_STEPS, CHUNK):
    for i in range(N_LONG):
        ms = make_metrics(i, METRIC_KEYS, range(start, start + CHUNK), t0_ms)
        store.log_batch(run_ids[i], metrics=ms, params=[], tags=[])
        n_calls += 1; n_rows += len(ms)
    print(f"round done: steps<{start + CHUNK} rows={n_rows} {time.perf_counter() - t:.1f}s", flush=True)
for i in range(N_LONG, N_RUNS):
    ms = make_metrics(i, METRIC_KEYS, range(SHORT_STEPS), t0_ms)
    store.log_batch(run_ids[i], metrics=ms, params=[], tags=[])
    n_calls += 1; n_rows += len(ms)
timing["metric_log_batch_calls"] = n_calls
timing["metric_rows_logged"] = n_rows
timing["metric_logging_s"] = time.perf_counter() - t

t = time.perf_counter()
for i, rid in enumerate(run_ids):
    store.update_run_info(rid, RunStatus.FINISHED, end_time=t0_ms + 3_600_000 + i, run_name=None)
timing["update_run_info_x2000_s"] = time.perf_counter() - t

print(json.dumps(timing, indent=1))
json.dump(timing, open(__import__("os").path.join(__import__("os").path.dirname(__file__), "results_populate.json"), "w"), indent=1)
