"""CPU cost of MLflow tracking writes on PostgreSQL, measured through SqlAlchemyStore in-process.

For each operation: N calls in one thread; measured over the whole loop:
  wall time (client), client process CPU (time.process_time: MLflow store + SQLAlchemy + psycopg2),
  PostgreSQL CPU (utime+stime from /proc of client backends; and background processes incl.
  reaped autovacuum workers via postmaster cutime/cstime), statements & transactions per call
  (pg_stat_statements, pg_stat_database).
Repeated REPS times with fresh runs; the median per-call values are reported.
"""
import json
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import psycopg
from common import ARTIFACT_ROOT, DB_URI, METRIC_KEYS, Meter, make_metrics, make_params, make_system_tags, make_user_tags

from mlflow.entities import Metric, RunStatus
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

REPS = int(os.environ.get("REPS", "3"))
METRIC_CFG = [(1, 2000), (10, 2000), (100, 500), (1000, 100)]  # (metrics per log_batch call, calls)
N_RUN_OPS = 500
RUNS_PER_CFG = 10
DSN = "host=127.0.0.1 port=55432 user=postgres dbname=mlflow"

rng = random.Random(7)
random.seed(7)
store = SqlAlchemyStore(DB_URI, ARTIFACT_ROOT)
exp_id = store.create_experiment(f"rowsize-bench-{int(time.time())}")
mon = psycopg.connect(DSN, autocommit=True)
print("SQLAlchemy driver:", store.engine.dialect.driver, flush=True)


def stmt_stats():
    with mon.cursor() as c:
        c.execute("SELECT coalesce(sum(calls),0) FROM pg_stat_statements WHERE dbid=(SELECT oid FROM pg_database WHERE datname='mlflow')")
        calls = int(c.fetchone()[0])
        c.execute("SELECT pg_stat_force_next_flush()")
        c.execute("SELECT xact_commit FROM pg_stat_database WHERE datname='mlflow'")
        return calls, int(c.fetchone()[0])


def measure(name, n_calls, fn, rows_per_call=0):
    with mon.cursor() as c:
        c.execute("SELECT pg_stat_statements_reset()")
    time.sleep(0.2)
    s0 = stmt_stats()
    with Meter() as m:
        for i in range(n_calls):
            fn(i)
    time.sleep(0.3)  # let the stats of the benchmark backends flush
    s1 = stmt_stats()
    r = {"op": name, "calls": n_calls, "rows_per_call": rows_per_call,
         "wall_ms_per_call": 1e3 * m.wall / n_calls, "py_cpu_ms_per_call": 1e3 * m.py_cpu / n_calls,
         "pg_backend_cpu_ms_per_call": 1e3 * m.pg_backend / n_calls,
         "pg_background_cpu_ms_per_call": 1e3 * m.pg_background / n_calls,
         "statements_per_call": (s1[0] - s0[0] - 1) / n_calls,  # -1: the monitor's own sum query
         "xacts_per_call": (s1[1] - s0[1]) / n_calls}  # includes monitor's few autocommit queries (negligible)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}), flush=True)
    return r


def new_runs(k):
    return [store.create_run(exp_id, "alice", int(time.time() * 1000), make_system_tags(rng), None).info.run_id
            for _ in range(k)]


# idle baseline of background CPU
with Meter() as idle:
    time.sleep(10)
baseline = {"idle_10s_pg_backend_cpu_s": idle.pg_backend, "idle_10s_pg_background_cpu_s": idle.pg_background}
print(baseline)

# warm-up (connection pool, SQLAlchemy compiled-statement cache, PG catalog caches)
wr = new_runs(2)
store.log_batch(wr[0], [], make_params(rng), make_user_tags(rng, 0))
for s in range(50):
    store.log_batch(wr[1], make_metrics(0, METRIC_KEYS, [s], 0)[: (s % 4) * 3 + 1], [], [])

results = []
for rep in range(REPS):
    created = []
    t_base = int(time.time() * 1000)

    def op_create(i):
        created.append(store.create_run(exp_id, "alice", t_base + i, make_system_tags(rng), None).info.run_id)
    results.append(dict(measure("create_run (4 sys tags + runName)", N_RUN_OPS, op_create), rep=rep))

    payload = [(make_params(rng), make_user_tags(rng, i)) for i in range(N_RUN_OPS)]
    results.append(dict(measure("log_batch 30 params + 10 tags", N_RUN_OPS,
                                lambda i: store.log_batch(created[i], [], payload[i][0], payload[i][1]), 40), rep=rep))

    for n, calls in METRIC_CFG:
        runs = new_runs(RUNS_PER_CFG)
        steps_per_call = max(1, n // len(METRIC_KEYS))
        # pre-build payloads so payload construction is not billed to the store
        batches = []
        for c in range(calls):
            r, j = c % RUNS_PER_CFG, c // RUNS_PER_CFG
            if n == 1:
                k = METRIC_KEYS[j % len(METRIC_KEYS)]
                batches.append((runs[r], [Metric(k, random.random(), t_base + j * 10, j // len(METRIC_KEYS))]))
            else:
                batches.append((runs[r], make_metrics(r, METRIC_KEYS, range(j * steps_per_call, (j + 1) * steps_per_call), t_base)))
        results.append(dict(measure(f"log_batch {n} metrics", calls,
                                    lambda i: store.log_batch(batches[i][0], batches[i][1], [], []), n), rep=rep))

    results.append(dict(measure("update_run_info (set FINISHED)", N_RUN_OPS,
                                lambda i: store.update_run_info(created[i], RunStatus.FINISHED, t_base + 10**6, None)), rep=rep))

# medians across reps
summary = {}
for r in results:
    summary.setdefault(r["op"], []).append(r)
med = {}
for op, rs in summary.items():
    med[op] = {k: statistics.median(x[k] for x in rs) for k in rs[0] if k not in ("op", "rep")}

# linear fit: per-call cost = fixed + per_row * n over the metric batch sizes
def fit(key):
    xs = [n for n, _ in METRIC_CFG]
    ys = [med[f"log_batch {n} metrics"][key] for n in xs]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    a = my - b * mx
    # robust two-point alternative: fixed from n=1, marginal from slope 100->1000
    b2 = (ys[3] - ys[2]) / (xs[3] - xs[2])
    a2 = ys[0] - b2 * xs[0]
    return {"ols_fixed_ms": a, "ols_per_metric_ms": b, "twopoint_fixed_ms": a2, "twopoint_per_metric_ms": b2}

fits = {k: fit(k) for k in ("pg_backend_cpu_ms_per_call", "pg_background_cpu_ms_per_call",
                            "py_cpu_ms_per_call", "wall_ms_per_call")}
out = {"baseline": baseline, "reps": REPS, "raw": results, "median": med, "fits": fits}
out["driver"] = store.engine.dialect.driver
out["db_uri"] = DB_URI
json.dump(out, open(os.path.join(os.path.dirname(__file__), f"results_bench_{store.engine.dialect.driver}.json"), "w"), indent=1)
print(json.dumps(fits, indent=1))
