"""What the workload asks of the platform: requests/s, rows/s and bytes, before any sizing.

The planner sizes from requests/s and rows/s separately (README bottleneck 4): a log_batch
of 1000 metrics is one request but a thousand rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from . import catalogue
from ..spec.model import Workload

GIB = 1024**3
# create_run, one log_batch of params and tags, update_run(FINISHED): what the client sends per run.
REQUESTS_PER_RUN = 3
# A UI user triggers a page about every 5 s, and a page (runs table, charts) makes ~2 API calls.
UI_REQUESTS_PER_USER_PER_S = 0.4
# The hot set: runs of the last 30 days (what the UI lists and compares) and the last day's metric
# history (the charts of runs still training), with their indexes, should stay in cache.
HOT_RUN_DAYS = 30
HOT_METRIC_DAYS = 1


@dataclass(frozen=True)
class Coefficients:
    """Measured costs (infra/data/measurements.yaml); the benchmark refines them."""

    metric_row_bytes: float
    latest_metric_row_bytes: float
    param_row_bytes: float
    tag_row_bytes: float
    run_row_bytes: float
    wal_bytes_per_metric_row: float
    wal_bytes_per_run: float
    db_cpu_s_per_write_request: float
    db_cpu_s_per_metric_row: float
    db_cpu_s_per_param_or_tag_row: float
    db_cpu_s_per_ui_read: float
    server_cpu_s_per_logging_request: float
    server_cpu_s_per_metric: float
    server_cpu_s_per_ui_request: float
    source: str
    recorded: str


@lru_cache(maxsize=None)
def coefficients() -> Coefficients:
    data = catalogue.measurements()
    rows, wal, db, server = data["bytes_per_row"], data["wal_bytes"], data["db_cpu_seconds"], data["server_cpu_seconds"]
    return Coefficients(
        metric_row_bytes=rows["metrics"],
        latest_metric_row_bytes=rows["latest_metrics"],
        param_row_bytes=rows["params"],
        tag_row_bytes=rows["tags"],
        run_row_bytes=rows["runs"],
        wal_bytes_per_metric_row=wal["per_metric_row"],
        wal_bytes_per_run=wal["per_run"],
        db_cpu_s_per_write_request=db["per_write_request"],
        db_cpu_s_per_metric_row=db["per_metric_row"],
        db_cpu_s_per_param_or_tag_row=db["per_param_or_tag_row"],
        db_cpu_s_per_ui_read=db["per_ui_read_request"],
        server_cpu_s_per_logging_request=server["per_logging_request"],
        server_cpu_s_per_metric=server["per_metric"],
        server_cpu_s_per_ui_request=server["per_ui_request"],
        source=str(data["source"]),
        recorded=str(data["recorded"]),
    )


@dataclass(frozen=True)
class Demand:
    logging_requests_per_s: float
    run_requests_per_s: float
    write_requests_per_s: float
    metric_rows_per_s: float
    param_tag_rows_per_s: float
    ui_read_requests_per_s: float
    metric_rows_per_day: float
    bytes_per_run: float
    storage_growth_gib_per_day: float
    storage_at_retention_gib: float
    write_bytes_per_s: float
    wal_bytes_per_s: float
    hot_set_gib: float
    reason: str


def run_bytes(workload: Workload, k: Coefficients) -> float:
    """Bytes one run leaves behind besides its metric history: its row, params, tags and latest metrics."""
    return (k.run_row_bytes
            + workload.params_per_run * k.param_row_bytes
            + workload.tags_per_run * k.tag_row_bytes
            # each logging call logs the same keys at a new step, so a run has metrics_per_call keys
            + workload.metrics_per_call * k.latest_metric_row_bytes)


def demand(workload: Workload, k: Coefficients | None = None) -> Demand:
    k = k or coefficients()
    busy_seconds = workload.logging_hours_per_day * 3600
    logging = workload.concurrent_training_jobs * workload.logging_calls_per_job_per_minute / 60
    runs_per_s = workload.runs_per_day / busy_seconds
    run_requests = runs_per_s * REQUESTS_PER_RUN
    metric_rows = logging * workload.metrics_per_call
    param_tag_rows = runs_per_s * (workload.params_per_run + workload.tags_per_run)
    per_run = run_bytes(workload, k)
    metric_rows_per_day = metric_rows * busy_seconds
    growth = (metric_rows_per_day * k.metric_row_bytes + workload.runs_per_day * per_run) / GIB
    hot_runs = workload.runs_per_day * min(HOT_RUN_DAYS, workload.retention_days)
    hot_metric_rows = metric_rows_per_day * min(HOT_METRIC_DAYS, workload.retention_days)
    hot_set = (hot_runs * per_run + hot_metric_rows * k.metric_row_bytes) / GIB
    # each metric row also rewrites its latest_metrics row (an upsert per key and step)
    write_bytes = (metric_rows * (k.metric_row_bytes + k.latest_metric_row_bytes)
                   + runs_per_s * per_run)
    return Demand(
        logging_requests_per_s=logging,
        run_requests_per_s=run_requests,
        write_requests_per_s=logging + run_requests,
        metric_rows_per_s=metric_rows,
        param_tag_rows_per_s=param_tag_rows,
        ui_read_requests_per_s=workload.concurrent_ui_users * UI_REQUESTS_PER_USER_PER_S,
        metric_rows_per_day=metric_rows_per_day,
        bytes_per_run=per_run,
        storage_growth_gib_per_day=growth,
        storage_at_retention_gib=growth * workload.retention_days,
        write_bytes_per_s=write_bytes,
        wal_bytes_per_s=metric_rows * k.wal_bytes_per_metric_row + runs_per_s * k.wal_bytes_per_run,
        hot_set_gib=hot_set,
        reason=(f"{workload.concurrent_training_jobs} jobs x {workload.logging_calls_per_job_per_minute:g} calls/min"
                f" x {workload.metrics_per_call} metrics, {workload.runs_per_day} runs/day over"
                f" {workload.logging_hours_per_day:g} h; hot set = {HOT_RUN_DAYS} days of runs + {HOT_METRIC_DAYS} day of metric history"),
    )
