"""Bytes per row (heap, TOAST, indexes) for MLflow tracking tables.

Phase 'as_written': after VACUUM ANALYZE (space left as MLflow's insert/update pattern left it).
Phase 'compacted': after VACUUM FULL (heap rewritten, indexes rebuilt = lower bound).
"""
import json
import os
import sys

import psycopg

TABLES = ["metrics", "latest_metrics", "params", "tags", "runs"]
DB = os.environ.get("ROWSIZE_DB", "mlflow")
DSN = f"host=127.0.0.1 port=55432 user=postgres dbname={DB}"
OUT = os.path.join(os.path.dirname(__file__), "results_sizes.json" if DB == "mlflow" else f"results_sizes_{DB}.json")


def measure(cur):
    res = {}
    for t in TABLES:
        cur.execute(f"""
            SELECT count(*),
                   pg_relation_size('{t}'),                         -- heap main fork
                   pg_table_size('{t}'),                            -- heap + toast + fsm + vm
                   COALESCE(pg_total_relation_size(c.reltoastrelid), 0),  -- toast heap + toast index
                   pg_indexes_size('{t}'),
                   pg_total_relation_size('{t}')
            FROM pg_class c LEFT JOIN {t} ON true WHERE c.oid = '{t}'::regclass GROUP BY c.reltoastrelid""")
        n, heap, table, toast, idx, total = cur.fetchone()
        cur.execute(f"SELECT avg(pg_column_size(x.*)) FROM {t} x")
        avg_tuple = float(cur.fetchone()[0])
        cur.execute(f"""SELECT i.relname, pg_relation_size(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                        WHERE x.indrelid = '{t}'::regclass ORDER BY 1""")
        per_index = {name: {"bytes": b, "bytes_per_row": b / n} for name, b in cur.fetchall()}
        cur.execute(f"SELECT tuple_percent, dead_tuple_percent, free_percent FROM pgstattuple('{t}')")
        tp, dp, fp = cur.fetchone()
        extra = {}
        if t in ("metrics", "latest_metrics", "params", "tags"):
            cur.execute(f"SELECT avg(octet_length(key)), avg(octet_length(coalesce(value::text,''))) FROM {t}")
            k, v = cur.fetchone()
            extra = {"avg_key_bytes": float(k), "avg_value_text_bytes": float(v)}
        res[t] = {
            "rows": n, "heap_main_bytes": heap, "table_bytes_incl_toast_fsm_vm": table, "toast_bytes": toast,
            "index_bytes": idx, "total_bytes": total,
            "bytes_per_row_total": total / n, "bytes_per_row_heap": table / n, "bytes_per_row_indexes": idx / n,
            "avg_tuple_data_bytes": avg_tuple, "heap_tuple_pct": tp, "heap_dead_pct": dp, "heap_free_pct": fp,
            "indexes": per_index, **extra,
        }
    return res


with psycopg.connect(DSN, autocommit=True) as conn, conn.cursor() as cur:
    out = {}
    for t in TABLES:
        cur.execute(f"VACUUM ANALYZE {t}")
    out["as_written"] = measure(cur)
    for t in TABLES:
        cur.execute(f"VACUUM FULL ANALYZE {t}")
    out["compacted"] = measure(cur)
    cur.execute("SELECT version()")
    out["version"] = cur.fetchone()[0]

json.dump(out, open(OUT, "w"), indent=1)
for phase in ("as_written", "compacted"):
    print(f"--- {phase}")
    print(f"{'table':16}{'rows':>10}{'total B/row':>12}{'heap B/row':>11}{'idx B/row':>10}{'tuple B':>8}")
    for t, r in out[phase].items():
        print(f"{t:16}{r['rows']:>10}{r['bytes_per_row_total']:>12.1f}{r['bytes_per_row_heap']:>11.1f}"
              f"{r['bytes_per_row_indexes']:>10.1f}{r['avg_tuple_data_bytes']:>8.1f}")
        for i, v in r["indexes"].items():
            print(f"    {i:34}{v['bytes_per_row']:>8.1f} B/row")
