"""Benchmark the captured MLflow SQL: EXPLAIN (ANALYZE, BUFFERS) + median of 5 timed runs.

Usage: python bench.py <label>   (writes results/<label>.json and plans/<label>/<query>.txt)
Timing = client-side wall time of execute()+fetchall() over TCP on 127.0.0.1, after 1 warm-up
run (warm cache). Also records the server-side 'Execution Time' of the EXPLAIN ANALYZE run.
"""
import json
import os
import re
import statistics
import sys
import time

import psycopg

HERE = os.path.dirname(os.path.abspath(__file__))
DSN = "host=127.0.0.1 port=55433 user=postgres dbname=mlflow"
label = sys.argv[1]
only = sys.argv[2].split(",") if len(sys.argv) > 2 else None


def stmts(fname):
    txt = open(os.path.join(HERE, "sql_captured", fname)).read()
    parts = re.split(r"^-- \[.*?\] statement \d+/\d+\n", txt, flags=re.M)
    return [p.strip().rstrip(";") for p in parts if p.strip()]


Q = {
    "a_newest_runs": stmts("a_search_runs_default.sql")[0],
    "b_filter_param_lr": stmts("b_filter_param.sql")[0],
    "c_filter_tag_team": stmts("c_filter_tag.sql")[0],
    "d_order_by_metric_acc": stmts("d_order_metric.sql")[0],
    "e_filter_metric_acc_gt": stmts("e_filter_metric.sql")[0],
    "f_metric_history": stmts("f_metric_history.sql")[0],
    # extra variants (derived from the captured statements by literal substitution)
    "a_multi_exp_1_2_3": stmts("a_search_runs_default.sql")[0].replace("IN (1)", "IN (1, 2, 3)"),
    "b_param_no_match": stmts("b_filter_param.sql")[0].replace("'0.01'", "'0.12345'"),
    "c_tag_no_match": stmts("c_filter_tag.sql")[0].replace("= 'x'", "= 'zzz'"),
    "g_search_experiments": stmts("g_search_experiments.sql")[0],
    "h_latest_metrics_page": stmts("a_search_runs_default.sql")[3],
    "h_params_page": stmts("a_search_runs_default.sql")[1],
    "h_tags_page": stmts("a_search_runs_default.sql")[2],
}

os.makedirs(os.path.join(HERE, "plans", label), exist_ok=True)
os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
out = {}
with psycopg.connect(DSN, autocommit=True) as conn:
    # optional session settings, e.g. BENCH_SET="max_parallel_workers_per_gather=0"
    for kv in filter(None, os.environ.get("BENCH_SET", "").split(";")):
        conn.execute("SET " + kv)
    for name, sql in Q.items():
        if only and name not in only:
            continue
        cur = conn.cursor()
        cur.execute(sql); nrows = len(cur.fetchall())  # warm-up
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
        plan = "\n".join(r[0] for r in cur.fetchall())
        open(os.path.join(HERE, "plans", label, name + ".txt"), "w").write(sql + "\n\n" + plan + "\n")
        exec_ms = float(re.search(r"Execution Time: ([\d.]+) ms", plan).group(1))
        times = []
        for _ in range(5):
            t0 = time.perf_counter(); cur.execute(sql); cur.fetchall(); times.append((time.perf_counter() - t0) * 1000)
        # top plan node types, for the before/after summary
        nodes = re.findall(r"(?:->  |^)((?:Parallel )?(?:Seq Scan|Index Only Scan|Index Scan|Bitmap Heap Scan|Bitmap Index Scan)(?: Backward)?(?: using \S+)? on \S+)", plan, flags=re.M)
        out[name] = {"rows": nrows, "median_ms": round(statistics.median(times), 2),
                     "min_ms": round(min(times), 2), "explain_exec_ms": exec_ms, "scans": nodes}
        print(f"{name:26s} rows={nrows:5d} median={out[name]['median_ms']:9.2f} ms  explain={exec_ms:9.2f} ms  {nodes}")
json.dump(out, open(os.path.join(HERE, "results", label + ".json"), "w"), indent=1)
