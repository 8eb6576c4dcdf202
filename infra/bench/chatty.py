"""Chatty clients: training jobs that call `mlflow.log_metric` one metric at a time (the reference
text's fix 4 is to batch them). The same clients run with and without the plan's
client_environment (MLflow's asynchronous, buffered logging); only metrics the server has
acknowledged count: each process flushes its queue before its clock stops, and every run's
metric history is read back and compared with the calls its client made."""

from __future__ import annotations

from .stats import latency_summary, split_clients
from .variants import Target

METRIC_KEY = "loss"


def chatty_cell(pool, target: Target, experiment_id: str, clients: int, env: dict[str, str], env_name: str,
                duration_s: float, processes: int) -> dict:
    from mlflow.tracking import MlflowClient

    tasks = [{"kind": "chatty", "url": target.api_url, "experiment_id": experiment_id, "env": env, "threads": n}
             for n in split_clients(clients, processes)]
    results = pool.run(tasks, duration_s)
    calls = {run_id: n for r in results for run_id, n in r["calls"].items()}
    client = MlflowClient(target.api_url)
    stored = {run_id: len(client.get_metric_history(run_id, METRIC_KEY)) for run_id in calls}
    start_at = min(r["start_at"] for r in results)
    elapsed = max(r["finished_at"] for r in results) - start_at
    made, kept = sum(calls.values()), sum(min(stored[r], n) for r, n in calls.items())
    latencies = latency_summary([x for r in results for x in r["latencies"]])
    return {"variant": target.name, "client_environment": env_name, "clients": clients, "calls": made,
            "stored": sum(stored.values()), "missing": made - kept, "errors": sum(r["errors"] for r in results),
            "error_samples": [s for r in results for s in r["samples"]][:3], "elapsed_s": elapsed,
            "metrics_per_s": kept / elapsed if elapsed > 0 else 0.0,
            "call_p50_ms": latencies["p50_ms"], "call_p99_ms": latencies["p99_ms"]}
