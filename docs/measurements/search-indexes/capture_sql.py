"""Capture the exact SQL SqlAlchemyStore (mlflow) sends to PostgreSQL for queries (a)-(h).

Hooks SQLAlchemy's after_cursor_execute and records psycopg2's cursor.query (the literal
statement sent to the server, parameters already interpolated).
Usage: python capture_sql.py <db_uri> <outdir>
"""
import json
import os
import sys

from sqlalchemy import event

from mlflow.entities import ViewType
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

db_uri, outdir = sys.argv[1], sys.argv[2]
os.makedirs(outdir, exist_ok=True)
store = SqlAlchemyStore(db_uri, "/tmp/idx-artifacts")

captured = []


@event.listens_for(store.engine, "after_cursor_execute")
def _capture(conn, cursor, statement, parameters, context, executemany):
    q = cursor.query
    captured.append(q.decode() if isinstance(q, bytes) else str(q))


with store.ManagedSessionMaker() as s:
    exp_id = str(s.execute(__import__("sqlalchemy").text(
        "select experiment_id from experiments where name='exp_1'")).scalar())
    run_id = s.execute(__import__("sqlalchemy").text(
        "select run_uuid from runs where experiment_id=:e order by start_time desc limit 1"),
        {"e": int(exp_id)}).scalar()

cases = {
    "a_search_runs_default": lambda: store.search_runs([exp_id], "", ViewType.ACTIVE_ONLY, 100),
    "b_filter_param": lambda: store.search_runs([exp_id], "params.lr = '0.01'", ViewType.ACTIVE_ONLY, 100),
    "c_filter_tag": lambda: store.search_runs([exp_id], "tags.team = 'x'", ViewType.ACTIVE_ONLY, 100),
    "d_order_metric": lambda: store.search_runs([exp_id], "", ViewType.ACTIVE_ONLY, 100, ["metrics.acc DESC"]),
    "e_filter_metric": lambda: store.search_runs([exp_id], "metrics.acc > 0.9", ViewType.ACTIVE_ONLY, 100),
    "f_metric_history": lambda: store.get_metric_history(run_id, "acc"),
    "g_search_experiments": lambda: store.search_experiments(ViewType.ACTIVE_ONLY, 100),
}
summary = {"experiment_id": exp_id, "run_id": run_id, "cases": {}}
for name, fn in cases.items():
    captured.clear()
    res = fn()
    n = len(res) if not hasattr(res, "token") else len(res)
    with open(os.path.join(outdir, f"{name}.sql"), "w") as f:
        for i, q in enumerate(captured):
            f.write(f"-- [{name}] statement {i + 1}/{len(captured)}\n{q};\n\n")
    summary["cases"][name] = {"n_results": n, "n_statements": len(captured)}
    print(name, "results:", n, "statements:", len(captured))
json.dump(summary, open(os.path.join(outdir, "summary.json"), "w"), indent=1)
