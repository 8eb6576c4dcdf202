"""The ceiling: how fast the same metric rows go straight into the same PostgreSQL, without MLflow.

The rows are those a log_batch writes to `metrics` (same columns, same indexes, real run ids, one
transaction per batch, synchronous commit as configured); MLflow's latest_metrics upsert is not
repeated here, so the ceiling is an upper bound for the metric rows alone.
"""

from __future__ import annotations

import threading
import time

COPY_BATCH = 10_000       # rows per COPY transaction
INSERT_BATCH = 1_000      # rows per multi-row INSERT (the size of MLflow's largest log_batch)
INSERT_CONNECTIONS = 2    # one per core
MAX_BATCHES = 100_000     # the loops are bounded in count as well as in time


def metric_rows(run_uuid: str, step0: int, count: int, timestamp_ms: int) -> list[tuple]:
    """`count` rows of (key, value, timestamp, run_uuid, step, is_nan), 10 keys per step, as a training loop logs them."""
    keys = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "learning_rate",
            "grad_norm", "epoch_time_s", "val_f1", "train/throughput", "gpu_mem_gb")
    return [(keys[n % 10], 1.0 / (1 + step0 + n // 10), timestamp_ms, run_uuid, step0 + n // 10, False)
            for n in range(count)]


def insert_sql(rows: int) -> str:
    values = ", ".join(["(%s, %s, %s, %s, %s, %s)"] * rows)
    return f'INSERT INTO metrics (key, value, "timestamp", run_uuid, step, is_nan) VALUES {values}'


def _copy_loop(uri: str, run_uuid: str, duration_s: float) -> dict:
    import psycopg

    rows = 0
    with psycopg.connect(uri) as conn:
        t0 = time.perf_counter()
        for batch in range(MAX_BATCHES):
            if time.perf_counter() - t0 >= duration_s:
                break
            with conn.cursor() as cur, cur.copy('COPY metrics (key, value, "timestamp", run_uuid, step, is_nan) FROM STDIN') as copy:
                for row in metric_rows(run_uuid, batch * COPY_BATCH // 10, COPY_BATCH, int(time.time() * 1000)):
                    copy.write_row(row)
            conn.commit()
            rows += COPY_BATCH
        elapsed = time.perf_counter() - t0
    return {"rows": rows, "elapsed_s": elapsed}


def _insert_loop(uri: str, run_uuid: str, duration_s: float, out: list, lock: threading.Lock) -> None:
    import psycopg

    statement = insert_sql(INSERT_BATCH)
    rows = 0
    with psycopg.connect(uri) as conn:
        t0 = time.perf_counter()
        for batch in range(MAX_BATCHES):
            if time.perf_counter() - t0 >= duration_s:
                break
            flat = [v for row in metric_rows(run_uuid, batch * INSERT_BATCH // 10, INSERT_BATCH, int(time.time() * 1000))
                    for v in row]
            conn.execute(statement, flat)
            conn.commit()
            rows += INSERT_BATCH
        elapsed = time.perf_counter() - t0
    with lock:
        out.append({"rows": rows, "elapsed_s": elapsed})


def measure(uri: str, run_uuids: list[str], duration_s: float) -> dict:
    """rows/s by COPY on one connection and by 1,000-row INSERTs on two; every row is a new (run, key, step)."""
    copy = _copy_loop(uri, run_uuids[0], duration_s)
    results: list[dict] = []
    lock = threading.Lock()
    threads = [threading.Thread(target=_insert_loop, args=(uri, run_uuids[1 + i], duration_s, results, lock))
               for i in range(INSERT_CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    insert_rows = sum(r["rows"] for r in results)
    insert_elapsed = max(r["elapsed_s"] for r in results)
    return {"copy_rows_per_s": copy["rows"] / copy["elapsed_s"],
            "insert_rows_per_s": insert_rows / insert_elapsed if insert_elapsed else 0.0,
            "copy_batch": COPY_BATCH, "insert_batch": INSERT_BATCH, "insert_connections": INSERT_CONNECTIONS}
