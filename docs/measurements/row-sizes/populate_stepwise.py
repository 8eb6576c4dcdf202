"""Alternative ingestion pattern for the metrics size check (database mlflow_step):
100 concurrently 'training' runs, each logging its 10 metric keys once per step (log_batch of 10),
round-robin across runs so timestamps increase globally, 200 steps -> 200,000 metric rows.
This is the per-step / autolog pattern; populate.py uses 1,000-metric chunks."""
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from common import ARTIFACT_ROOT, METRIC_KEYS, make_metrics, make_params, make_system_tags, make_user_tags

from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

URI = "postgresql://postgres@127.0.0.1:55432/mlflow_step"
rng = random.Random(3)
store = SqlAlchemyStore(URI, ARTIFACT_ROOT)
exp = store.create_experiment("stepwise")
t0 = int(time.time() * 1000)
runs = []
for i in range(100):
    rid = store.create_run(exp, "alice", t0, make_system_tags(rng), None).info.run_id
    store.log_batch(rid, [], make_params(rng), make_user_tags(rng, i))
    runs.append(rid)
t = time.perf_counter()
for step in range(200):
    for i, rid in enumerate(runs):
        store.log_batch(rid, make_metrics(i, METRIC_KEYS, [step], t0), [], [])
print(f"200,000 metric rows in 20,000 log_batch(10) calls: {time.perf_counter() - t:.1f}s")
