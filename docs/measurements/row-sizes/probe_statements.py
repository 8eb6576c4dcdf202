"""Which SQL statements each MLflow store call issues (pg_stat_statements), per call.
Usage: ROWSIZE_DB_URI=... python probe_statements.py > statements_<driver>.txt"""
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import psycopg
from common import ARTIFACT_ROOT, DB_URI, METRIC_KEYS, make_metrics, make_params, make_system_tags, make_user_tags

from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

N = 20
rng = random.Random(11)
store = SqlAlchemyStore(DB_URI, ARTIFACT_ROOT)
exp = store.create_experiment(f"probe-{time.time()}")
mon = psycopg.connect("host=127.0.0.1 port=55432 user=postgres dbname=mlflow", autocommit=True)
print("driver:", store.engine.dialect.driver)
warm = store.create_run(exp, "alice", 0, make_system_tags(rng), None).info.run_id
store.log_batch(warm, make_metrics(0, METRIC_KEYS, [0], 0), make_params(rng), make_user_tags(rng, 0))


def probe(name, fn):
    mon.execute("SELECT pg_stat_statements_reset()")
    for i in range(N):
        fn(i)
    time.sleep(0.5)
    rows = mon.execute("""SELECT calls, rows, total_exec_time, left(regexp_replace(query, '\\s+', ' ', 'g'), 110)
        FROM pg_stat_statements WHERE query NOT ILIKE '%pg_stat_statements%' ORDER BY calls DESC""").fetchall()
    print(f"\n### {name}  (per call, averaged over {N} calls)")
    print(f"{'stmts':>7} {'rows':>7} {'exec_ms':>8}  query")
    for c, r, t, q in rows:
        print(f"{c / N:7.2f} {r / N:7.1f} {t / N:8.3f}  {q}")
    print(f"{sum(r[0] for r in rows) / N:7.2f} total statements per call")


runs = []
probe("create_run", lambda i: runs.append(store.create_run(exp, "alice", i, make_system_tags(rng), None).info.run_id))
probe("log_batch 30 params + 10 tags", lambda i: store.log_batch(runs[i], [], make_params(rng), make_user_tags(rng, i)))
for n in (1, 10, 1000):
    spc = max(1, n // 10)
    probe(f"log_batch {n} metrics", lambda i: store.log_batch(
        runs[i % 5], make_metrics(0, METRIC_KEYS[: min(n, 10)], range(1000 + i * spc, 1000 + (i + 1) * spc), 0), [], []))
