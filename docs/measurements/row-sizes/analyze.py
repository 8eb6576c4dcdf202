"""Summarise results_*.json into the markdown tables used in REPORT.md."""
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
KEYS = {1: 1, 10: 10, 100: 10, 1000: 10}  # distinct metric keys per call in bench.py
COLS = [("wall_ms_per_call", "wall ms"), ("py_cpu_ms_per_call", "client py CPU ms"),
        ("pg_backend_cpu_ms_per_call", "PG backend CPU ms"), ("pg_background_cpu_ms_per_call", "PG background CPU ms"),
        ("statements_per_call", "SQL stmts"), ("xacts_per_call", "xacts")]

s = json.load(open(os.path.join(HERE, "results_sizes.json")))
print("### Sizes (database `mlflow`)\n")
print("| table | rows | total B/row | heap B/row (incl. TOAST/FSM/VM) | indexes B/row | total B/row after VACUUM FULL (heap / idx) | avg tuple data B | avg key / value chars |")
print("|---|---|---|---|---|---|---|---|")
for t, a in s["as_written"].items():
    c = s["compacted"][t]
    kv = f"{a['avg_key_bytes']:.1f} / {a['avg_value_text_bytes']:.1f}" if t in ("params", "tags", "latest_metrics") else (
        f"{a['avg_key_bytes']:.1f} / (float8)" if t == "metrics" else "-")
    print(f"| {t} | {a['rows']:,} | **{a['bytes_per_row_total']:.0f}** | {a['bytes_per_row_heap']:.0f} | {a['bytes_per_row_indexes']:.0f} | "
          f"{c['bytes_per_row_total']:.0f} ({c['bytes_per_row_heap']:.0f} / {c['bytes_per_row_indexes']:.0f}) | {a['avg_tuple_data_bytes']:.0f} | {kv} |")
print("\nPer index (B/row, as written -> after VACUUM FULL):\n")
for t, a in s["as_written"].items():
    print(f"- {t}: " + "; ".join(f"`{i}` {v['bytes_per_row']:.1f} -> {s['compacted'][t]['indexes'][i]['bytes_per_row']:.1f}"
                                  for i, v in a["indexes"].items()))
p = os.path.join(HERE, "results_sizes_mlflow_step.json")
if os.path.exists(p):
    m = json.load(open(p))
    a, c = m["as_written"]["metrics"], m["compacted"]["metrics"]
    print(f"\nStep-wise pattern check (db mlflow_step, {a['rows']:,} metric rows via log_batch of 10): metrics total "
          f"{a['bytes_per_row_total']:.0f} B/row (heap {a['bytes_per_row_heap']:.0f}, idx {a['bytes_per_row_indexes']:.0f}); "
          f"after VACUUM FULL {c['bytes_per_row_total']:.0f}. Per index: " +
          "; ".join(f"`{i}` {v['bytes_per_row']:.1f}" for i, v in a["indexes"].items()))

for drv in ("psycopg", "psycopg2"):
    p = os.path.join(HERE, f"results_bench_{drv}.json")
    if not os.path.exists(p):
        continue
    r = json.load(open(p))
    print(f"\n### CPU per call, driver `{drv}` ({r['db_uri'].split('://')[0]}://), median of {r['reps']} reps\n")
    print("| operation | calls/rep | " + " | ".join(h for _, h in COLS) + " |")
    print("|---|---|" + "---|" * len(COLS))
    for op, m in r["median"].items():
        print(f"| {op} | {int(m['calls'])} | " + " | ".join(f"{m[k]:.2f}" if "stmt" not in h and "xact" not in h else f"{m[k]:.1f}" for k, h in COLS) + " |")
    print("\nFits over the 4 metric batch sizes (ms):\n")
    print("| quantity | OLS fixed/call | OLS per metric | 2-point fixed (n=1) | 2-point per metric (100->1000) | 3-term: fixed + per distinct key + per metric |")
    print("|---|---|---|---|---|---|")
    for k, h in COLS[:4]:
        f = r["fits"][k]
        ns = [1, 10, 100, 1000]
        X = np.array([[1, KEYS[n], n] for n in ns], float)
        y = np.array([r["median"][f"log_batch {n} metrics"][k] for n in ns])
        (a, kk, b), *_ = np.linalg.lstsq(X, y, rcond=None)
        print(f"| {h} | {f['ols_fixed_ms']:.3f} | {f['ols_per_metric_ms']:.4f} | {f['twopoint_fixed_ms']:.3f} | "
              f"{f['twopoint_per_metric_ms']:.4f} | {a:.3f} + {kk:.3f}/key + {b:.4f}/metric |")
    print(f"\nIdle baseline (10 s, no load): PG backend {r['baseline']['idle_10s_pg_backend_cpu_s']:.2f} s, "
          f"background {r['baseline']['idle_10s_pg_background_cpu_s']:.2f} s")
