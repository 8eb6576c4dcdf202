"""Load generators: a few long-lived processes, each running threads that call the real MlflowClient.

With 2 cores a process per client would spend the machine on interpreters; a handful of processes
with threads keeps the client side small. Every loop stops by itself after its duration or its
request cap, and each request has its own timeout, so a cell always ends.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from contextlib import contextmanager

from .procs import QUIET_ENV

# Client settings for every load process: no retries (an error is counted, not hidden behind
# minutes of backoff), a bounded wait per request, and a pool as large as the threads.
CLIENT_ENV = {**QUIET_ENV, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
              "MLFLOW_HTTP_POOL_MAXSIZE": "64"}
METRIC_KEYS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "learning_rate",
               "grad_norm", "epoch_time_s", "val_f1", "train/throughput", "gpu_mem_gb")
# Requests one thread may send in a cell, whatever the duration: the loop is bounded in count too.
MAX_REQUESTS_PER_THREAD = 50_000
START_DELAY_S = 3.0       # time for every thread to create its run and warm up before the window opens
RESULT_GRACE_S = 120      # a cell's result must arrive within duration + request timeout + this


def batch_shape(metrics_per_call: int) -> tuple[int, int]:
    """(keys, steps) of one log_batch: up to 10 keys, the rest as steps, as a training loop logs them."""
    keys = min(metrics_per_call, len(METRIC_KEYS))
    return keys, max(1, metrics_per_call // keys)


def make_batch(metrics_per_call: int, step0: int, timestamp_ms: int) -> list:
    from mlflow.entities import Metric

    keys, steps = batch_shape(metrics_per_call)
    batch = [Metric(METRIC_KEYS[k], 1.0 / (1 + step0 + s) + k * 0.01, timestamp_ms, step0 + s)
             for s in range(steps) for k in range(keys)]
    return batch[:metrics_per_call]


# ---------------------------------------------------------------------------------------------
# inside a load process

def _measure(next_call, start_at: float, end_at: float, samples: list, out: dict, lock: threading.Lock) -> None:
    """Time `next_call()()` from start_at until end_at (or the request cap) and add the figures to `out`;
    `next_call` prepares one request outside the timed part."""
    latencies, errors = [], 0
    time.sleep(max(0.0, start_at - time.time()))
    while time.time() < end_at and len(latencies) + errors < MAX_REQUESTS_PER_THREAD:
        call = next_call()
        t0 = time.perf_counter()
        try:
            call()
            latencies.append(time.perf_counter() - t0)
        except Exception as exc:
            errors += 1
            if len(samples) < 3:
                samples.append(_one_line(exc))
    with lock:
        out["latencies"].extend(latencies)
        out["errors"] += errors
        out["samples"].extend(samples)
        out["finished_at"] = max(out["finished_at"], time.time())


def _ingest_thread(url: str, experiment_id: str, metrics_per_call: int, start_at: float, end_at: float,
                   out: dict, lock: threading.Lock) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(url)
    try:
        run_id = client.create_run(experiment_id).info.run_id
        client.log_batch(run_id, metrics=make_batch(metrics_per_call, 0, int(time.time() * 1000)))  # warm-up
    except Exception as exc:  # the server refused before the window: every request of this thread failed
        with lock:
            out["errors"] += 1
            out["samples"].append(_one_line(exc))
        return
    steps = batch_shape(metrics_per_call)[1]
    step = [steps]

    def next_call():
        batch = make_batch(metrics_per_call, step[0], int(time.time() * 1000))
        step[0] += steps
        return lambda: client.log_batch(run_id, metrics=batch)

    _measure(next_call, start_at, end_at, [], out, lock)


def _read_thread(url: str, experiment_id: str, start_at: float, end_at: float, out: dict, lock: threading.Lock) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(url)
    samples = []
    try:
        client.search_runs([experiment_id], max_results=100)  # warm-up
    except Exception as exc:
        samples.append(_one_line(exc))

    def search():
        client.search_runs([experiment_id], max_results=100)

    _measure(lambda: search, start_at, end_at, samples, out, lock)


def _chatty_thread(url: str, experiment_id: str, start_at: float, end_at: float, out: dict, lock: threading.Lock) -> None:
    """A training loop that logs one metric per call through the fluent API (`mlflow.log_metric`),
    which MLflow queues and batches when the task's environment turns on asynchronous logging."""
    import mlflow
    from mlflow.tracking import MlflowClient

    try:
        run_id = MlflowClient(url).create_run(experiment_id).info.run_id
    except Exception as exc:  # the server refused before the window
        with lock:
            out["errors"] += 1
            out["samples"].append(_one_line(exc))
        return
    # the run active in this thread, as a training job's `with mlflow.start_run():` makes it (passing
    # run_id to every log_metric instead would cost a get_run request per call)
    mlflow.start_run(run_id=run_id)
    made = [0]   # calls that returned: sent, or queued when logging is asynchronous

    def next_call():
        def call():
            mlflow.log_metric("loss", 1.0 / (made[0] + 1), step=made[0])
            made[0] += 1
        return call

    _measure(next_call, start_at, end_at, [], out, lock)
    with lock:
        out["calls"][run_id] = made[0]


def _run_chatty(task: dict) -> dict:
    """Every thread's loop in this process under the task's environment, then one flush: the clock
    stops when every queued metric is acknowledged (mlflow.flush_async_logging waits for them)."""
    import mlflow

    out = {"latencies": [], "errors": 0, "samples": [], "finished_at": 0.0, "calls": {}}
    lock = threading.Lock()
    saved = {name: os.environ.get(name) for name in task["env"]}
    os.environ.update(task["env"])
    try:
        mlflow.set_tracking_uri(task["url"])
        threads = [threading.Thread(target=_chatty_thread, daemon=True,
                                    args=(task["url"], task["experiment_id"], task["start_at"], task["end_at"], out, lock))
                   for _ in range(task["threads"])]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=task["end_at"] - time.time() + RESULT_GRACE_S)
        try:
            mlflow.flush_async_logging()
        except Exception as exc:  # a batch the server refused: its metrics are missing from the count
            out["errors"] += 1
            out["samples"].append(_one_line(exc))
        out["finished_at"] = time.time()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    out["samples"] = out["samples"][:5]
    return out


def _run_task(task: dict) -> dict:
    if task["kind"] == "chatty":
        return _run_chatty(task)
    out = {"latencies": [], "errors": 0, "samples": [], "finished_at": 0.0}
    lock = threading.Lock()
    threads = []
    for _ in range(task["threads"]):
        if task["kind"] == "ingest":
            args = (task["url"], task["experiment_id"], task["metrics_per_call"], task["start_at"], task["end_at"], out, lock)
            target = _ingest_thread
        else:
            args = (task["url"], task["experiment_id"], task["start_at"], task["end_at"], out, lock)
            target = _read_thread
        threads.append(threading.Thread(target=target, args=args, daemon=True))
    for thread in threads:
        thread.start()
    for thread in threads:  # each thread ends by itself; the join is bounded as well
        thread.join(timeout=task["end_at"] - time.time() + RESULT_GRACE_S)
    out["samples"] = out["samples"][:5]
    return out


def _worker(conn) -> None:
    os.environ.update(CLIENT_ENV)
    import mlflow.tracking  # noqa: F401  (import once, before the first cell)

    while True:
        task = conn.recv()
        if task is None:
            return
        try:
            conn.send(_run_task(task))
        except Exception as exc:
            conn.send({"latencies": [], "errors": 1, "samples": [_one_line(exc)], "finished_at": time.time()})


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (type(exc).__name__ + ": " + text.splitlines()[0] if text else type(exc).__name__)[:300]


# ---------------------------------------------------------------------------------------------
# in the benchmark process

class LoadPool:
    """`size` load processes that take tasks (a kind, a URL, a thread count, a window) and return latencies."""

    def __init__(self, size: int):
        ctx = multiprocessing.get_context("spawn")
        self.workers = []
        for _ in range(size):
            parent, child = ctx.Pipe()
            process = ctx.Process(target=_worker, args=(child,), daemon=True)
            process.start()
            self.workers.append((process, parent))

    def run(self, tasks: list[dict], duration_s: float, on_start=None) -> list[dict]:
        """Send task i to process i, wait for all; `start_at`/`end_at` are filled in for one common window.
        `on_start` is called when the window opens (to sample the servers' CPU time there)."""
        if len(tasks) > len(self.workers):
            raise ValueError(f"{len(tasks)} tasks need {len(tasks)} load processes; the pool has {len(self.workers)}")
        start_at = time.time() + START_DELAY_S
        for (_, conn), task in zip(self.workers, tasks):
            conn.send({**task, "start_at": start_at, "end_at": start_at + duration_s})
        if on_start is not None:
            time.sleep(max(0.0, start_at - time.time()))
            on_start()
        results = []
        for _, conn in self.workers[:len(tasks)]:
            if not conn.poll(START_DELAY_S + duration_s + RESULT_GRACE_S):
                raise RuntimeError(f"a load process did not report within {duration_s + RESULT_GRACE_S:.0f} s")
            results.append(conn.recv())
        for result in results:
            result["start_at"] = start_at
        return results

    def close(self) -> None:
        for process, conn in self.workers:
            try:
                conn.send(None)
            except OSError:
                pass
        for process, _ in self.workers:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)


@contextmanager
def load_pool(size: int):
    pool = LoadPool(size)
    try:
        yield pool
    finally:
        pool.close()


def merge(results: list[dict]) -> dict:
    """One result from the processes of a cell: all latencies, all errors, the window's real length."""
    latencies = [x for r in results for x in r["latencies"]]
    start_at = min(r["start_at"] for r in results)
    finished = max(r["finished_at"] for r in results) or start_at
    samples = [s for r in results for s in r["samples"]][:5]
    return {"latencies": latencies, "errors": sum(r["errors"] for r in results), "error_samples": samples,
            "elapsed_s": max(0.0, finished - start_at)}
