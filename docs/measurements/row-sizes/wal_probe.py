"""Extra: WAL bytes generated per call / per metric row (pg_current_wal_insert_lsn delta), default driver.
Run right after a CHECKPOINT (first-touch full-page images inflate WAL) and also in steady state."""
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import psycopg
from common import ARTIFACT_ROOT, DB_URI, METRIC_KEYS, make_metrics, make_params, make_system_tags, make_user_tags

from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

rng = random.Random(5)
store = SqlAlchemyStore(DB_URI, ARTIFACT_ROOT)
exp = store.create_experiment(f"wal-{time.time()}")
mon = psycopg.connect("host=127.0.0.1 port=55432 user=postgres dbname=mlflow", autocommit=True)


def lsn():
    return mon.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]


def wal(name, calls, fn, rows):
    mon.execute("CHECKPOINT")
    out = {}
    for phase in ("after_checkpoint", "steady"):
        a = lsn()
        for i in range(calls):
            fn(i)
        b = lsn()
        d = int(mon.execute("SELECT pg_wal_lsn_diff(%s, %s)", (b, a)).fetchone()[0])
        out[phase] = {"wal_bytes_per_call": d / calls, "wal_bytes_per_row": d / (calls * rows) if rows else None}
    print(name, json.dumps(out), flush=True)
    return out


res = {}
runs = [store.create_run(exp, "alice", 0, make_system_tags(rng), None).info.run_id for _ in range(10)]
res["create_run"] = wal("create_run", 200, lambda i: store.create_run(exp, "alice", i, make_system_tags(rng), None), 6)
pr = [store.create_run(exp, "alice", 0, make_system_tags(rng), None).info.run_id for _ in range(400)]
ctr = iter(range(400))
res["log_batch 30 params + 10 tags"] = wal("params+tags", 200, lambda i: store.log_batch(pr[next(ctr)], [], make_params(rng), make_user_tags(rng, i)), 40)
for n, calls in ((10, 500), (1000, 50)):
    spc = n // 10
    base = {10: 0, 1000: 100000}[n]
    c2 = iter(range(10**6))
    def f(i, n=n, spc=spc, base=base):
        j = next(c2)
        store.log_batch(runs[j % 10], make_metrics(j % 10, METRIC_KEYS, range(base + (j // 10) * spc, base + (j // 10 + 1) * spc), 0), [], [])
    res[f"log_batch {n} metrics"] = wal(f"metrics{n}", calls, f, n)
json.dump(res, open(os.path.join(os.path.dirname(__file__), "results_wal.json"), "w"), indent=1)
