"""An independent load against the planned local topology and a stock `mlflow server`, in one run.

Written as a new user would try the product, without the bench's code (`infra.bench`): it starts the
planned topology with `mlflow-infra local up` and takes the tracking URI and the training jobs'
client environment from the `export` lines that command prints; beside it, a stock
`mlflow server --workers 4` on SQLite. Then, one cell after another and the two servers one after
the other within each cell, MlflowClient threads (each on its own run) call `log_batch` for a fixed
window. Last, 32 chatty clients call the fluent `mlflow.log_metric` once per metric: on the planned
topology with the printed client environment, and against the stock server without it; only rows
read back from the server count, after each process flushed its queue.

    python bench/independent_load.py --out bench/results/independent

prints a table, checks issue 10's bar (planned: 0 errors in every cell; at 32 x 10 and 32 x 100
metrics at least stock's metrics/s with at most half its p99; chatty with the environment at least
5x stock without, every metric stored) and writes `independent.json` and `independent.md` with the
date. Both servers and PostgreSQL listen on 127.0.0.1 and are stopped at the end, also on failure.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import multiprocessing
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# The same client settings against both servers: a slow request counts as an error after 30 s
# instead of being retried out of sight, and a thread keeps its connection (urllib3 pool per process)
LOAD_ENV = {"MLFLOW_HTTP_REQUEST_TIMEOUT": "30", "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
            "MLFLOW_HTTP_POOL_MAXSIZE": "64", "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
PROCESSES = 2          # load processes; the threads are split between them
SETUP_S = 12.0         # processes start, import MLflow and create their runs before the window opens
CELLS = ((8, 1), (32, 10), (32, 100))
CHATTY_CLIENTS = 32
BIN = Path(sys.executable).parent


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]


def _wait(until: float) -> None:
    while (left := until - time.time()) > 0:
        time.sleep(min(left, 0.5))


def _batch_load(url: str, experiment_id: str, threads: int, metrics_per_call: int, start_at: float, end_at: float,
                env: dict[str, str]) -> dict:
    """One load process: `threads` MlflowClient threads, each on its own run, calling log_batch."""
    os.environ.update(env)
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(url)
    out = {"latencies": [], "errors": 0, "samples": [], "late": 0}
    lock = threading.Lock()

    def worker() -> None:
        try:
            run_id = client.create_run(experiment_id).info.run_id
        except Exception as exc:  # refused before the window: the thread's whole share is an error
            with lock:
                out["errors"] += 1
                out["samples"].append(_one_line(exc))
            return
        if time.time() > start_at:
            with lock:
                out["late"] += 1
        _wait(start_at)
        step, mine = 0, []
        while time.time() < end_at:
            now = int(time.time() * 1000)
            metrics = [Metric(f"m{i}", float(step), now, step) for i in range(metrics_per_call)]
            t0 = time.perf_counter()
            try:
                client.log_batch(run_id, metrics=metrics)
                mine.append((time.perf_counter() - t0) * 1000)
            except Exception as exc:
                with lock:
                    out["errors"] += 1
                    out["samples"].append(_one_line(exc))
            step += 1
        with lock:
            out["latencies"].extend(mine)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out["samples"] = out["samples"][:3]
    return out


def _chatty_load(url: str, experiment_id: str, threads: int, start_at: float, end_at: float, env: dict[str, str]) -> dict:
    """One load process of training loops: `with mlflow.start_run():` and one `mlflow.log_metric` per
    step; the clock stops after `mlflow.flush_async_logging()` returned (a no-op without async logging)."""
    os.environ.update(env)
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # end_run's "View run at" line, 32 times a cell
    import mlflow

    mlflow.set_tracking_uri(url)
    out = {"calls": {}, "errors": 0, "samples": [], "finished_at": 0.0}
    lock = threading.Lock()

    def loop() -> None:
        try:
            with mlflow.start_run(experiment_id=experiment_id) as run:
                _wait(start_at)
                step = 0
                while time.time() < end_at:
                    mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
                    step += 1
                with lock:
                    out["calls"][run.info.run_id] = step
        except Exception as exc:
            with lock:
                out["errors"] += 1
                out["samples"].append(_one_line(exc))

    pool = [threading.Thread(target=loop) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    try:
        mlflow.flush_async_logging()
    except Exception as exc:
        out["errors"] += 1
        out["samples"].append(_one_line(exc))
    out["finished_at"] = time.time()
    out["samples"] = out["samples"][:3]
    return out


def _split(clients: int) -> list[int]:
    return [n for n in (clients // PROCESSES + (1 if i < clients % PROCESSES else 0) for i in range(PROCESSES)) if n]


def _experiment(url: str, name: str) -> str:
    from mlflow.tracking import MlflowClient
    return MlflowClient(url).create_experiment(name)


def batch_cell(url: str, name: str, clients: int, metrics_per_call: int, duration: float) -> dict:
    experiment_id = _experiment(url, f"{name}-{clients}x{metrics_per_call}-{time.time_ns()}")
    start_at = time.time() + SETUP_S
    end_at = start_at + duration
    with ProcessPoolExecutor(PROCESSES, mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = list(pool.map(_batch_load, *zip(*[(url, experiment_id, n, metrics_per_call, start_at, end_at, LOAD_ENV)
                                                   for n in _split(clients)])))
    latencies = [x for p in parts for x in p["latencies"]]
    return {"server": name, "clients": clients, "metrics_per_call": metrics_per_call, "requests": len(latencies),
            "metrics_per_s": len(latencies) * metrics_per_call / duration, "p50_ms": percentile(latencies, 50),
            "p99_ms": percentile(latencies, 99), "errors": sum(p["errors"] for p in parts),
            "late_threads": sum(p["late"] for p in parts), "error_samples": [s for p in parts for s in p["samples"]][:3]}


def chatty_cell(url: str, name: str, env_name: str, env: dict[str, str], duration: float) -> dict:
    from mlflow.tracking import MlflowClient

    experiment_id = _experiment(url, f"{name}-chatty-{env_name}-{time.time_ns()}")
    start_at = time.time() + SETUP_S
    end_at = start_at + duration
    with ProcessPoolExecutor(PROCESSES, mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = list(pool.map(_chatty_load, *zip(*[(url, experiment_id, n, start_at, end_at, env)
                                                   for n in _split(CHATTY_CLIENTS)])))
    calls = {run_id: n for p in parts for run_id, n in p["calls"].items()}
    client = MlflowClient(url)
    stored = {run_id: len(client.get_metric_history(run_id, "loss")) for run_id in calls}
    elapsed = max(p["finished_at"] for p in parts) - start_at
    made = sum(calls.values())
    return {"server": name, "client_environment": env_name, "clients": CHATTY_CLIENTS, "runs": len(calls),
            "calls": made, "stored": sum(stored.values()),
            "missing": sum(max(0, n - stored[r]) for r, n in calls.items()),
            "errors": sum(p["errors"] for p in parts), "seconds": elapsed,
            "acknowledged_metrics_per_s": sum(min(stored[r], n) for r, n in calls.items()) / elapsed,
            "error_samples": [s for p in parts for s in p["samples"]][:3]}


def _healthy(url: str, timeout_s: float) -> None:
    deadline = time.time() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.time() > deadline:
            raise SystemExit(f"{url}/health did not answer within {timeout_s:.0f} s")
        time.sleep(1)


def start_stock(root: Path, port: int) -> tuple[subprocess.Popen, str]:
    """`mlflow server` as its docs start it, on SQLite, with 4 workers; its output goes to a log file."""
    (root / "artifacts").mkdir(parents=True)
    with open(root / "server.log", "wb") as log:  # the server keeps its own descriptor
        server = subprocess.Popen([str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "4",
                                   "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                                   "--default-artifact-root", str(root / "artifacts")],
                                  stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                  env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"})
    url = f"http://127.0.0.1:{port}"
    try:
        _healthy(url, 120)
    except BaseException:
        stop_stock(server)
        raise
    return server, url


def start_planned(root: Path, base_port: int, api_port: int, ui_port: int) -> tuple[str, dict[str, str], str]:
    """`mlflow-infra local up`; the tracking URI and the client environment from its `export` lines."""
    done = subprocess.run([str(BIN / "mlflow-infra"), "local", "up", "--root", str(root), "--base-port", str(base_port),
                           "--api-port", str(api_port), "--ui-port", str(ui_port)],
                          check=False, capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise SystemExit(f"mlflow-infra local up exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    exports = exported(done.stdout)
    if "MLFLOW_TRACKING_URI" not in exports:
        raise SystemExit(f"mlflow-infra local up printed no `export MLFLOW_TRACKING_URI=` line:\n{done.stdout}")
    url = exports.pop("MLFLOW_TRACKING_URI")
    return url, exports, done.stdout


def exported(text: str) -> dict[str, str]:
    """The `export NAME=VALUE` lines of a command's output."""
    return dict(re.findall(r"^export (\w+)=(\S*)$", text, flags=re.MULTILINE))


def stop_planned(root: Path) -> None:
    subprocess.run([str(BIN / "mlflow-infra"), "local", "down", "--purge", "--root", str(root)], timeout=300, check=False)


def stop_stock(server: subprocess.Popen) -> None:
    os.killpg(server.pid, 15)
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, 9)
        server.wait(10)


def verdict(rounds: list[dict]) -> list[tuple[str, bool]]:
    """Issue 10's bar over every round."""
    checks = []
    for i, r in enumerate(rounds, 1):
        by = {(c["server"], c["clients"], c["metrics_per_call"]): c for c in r["cells"]}
        planned = [c for c in r["cells"] if c["server"] == "planned"]
        checks.append((f"round {i}: planned 0 errors in every cell", all(c["errors"] == 0 for c in planned)))
        for clients, per_call in ((32, 10), (32, 100)):
            p, s = by[("planned", clients, per_call)], by[("stock", clients, per_call)]
            checks.append((f"round {i}: {clients}x{per_call} planned {p['metrics_per_s']:,.0f} >= stock "
                           f"{s['metrics_per_s']:,.0f} metrics/s", p["metrics_per_s"] >= s["metrics_per_s"]))
            checks.append((f"round {i}: {clients}x{per_call} planned p99 {p['p99_ms']:,.0f} <= half stock's "
                           f"{s['p99_ms']:,.0f} ms", p["p99_ms"] <= s["p99_ms"] / 2))
        with_env = next(c for c in r["chatty"] if c["server"] == "planned" and c["client_environment"] == "planned")
        without = next(c for c in r["chatty"] if c["server"] == "stock")
        ratio = with_env["acknowledged_metrics_per_s"] / without["acknowledged_metrics_per_s"]
        checks.append((f"round {i}: chatty with the environment {ratio:.2f}x stock without (>= 5x)", ratio >= 5))
        checks.append((f"round {i}: chatty every call stored ({with_env['stored']:,} of {with_env['calls']:,} with the "
                       f"environment, {without['stored']:,} of {without['calls']:,} on stock), no errors",
                       all(c["missing"] == 0 and c["errors"] == 0 for c in r["chatty"])))
    return checks


def markdown(result: dict) -> str:
    lines = [f"# Independent load: {result['date']}", "",
             f"`{result['command']}` on {result['machine']}; MLflow {result['mlflow']}"
             + (" (uvloop and httptools installed: the stock server's uvicorn takes them)." if result["uvloop_installed"] else "."),
             "Written without the bench's code: the planned topology from `mlflow-infra local up` (its printed "
             "tracking URI and client environment) against a stock `mlflow server --workers 4` on SQLite, "
             f"both up together, the two servers one after the other in each cell; {result['duration_s']:.0f} s a cell, "
             f"MlflowClient threads each on its own run in {PROCESSES} load processes; client settings for both: "
             + ", ".join(f"`{k}={v}`" for k, v in LOAD_ENV.items()) + ".", ""]
    for i, r in enumerate(result["rounds"], 1):
        lines += [f"## Round {i}", "", "| clients | metrics/call | server | metrics/s | p50 ms | p99 ms | errors | "
                  "planned/stock metrics/s | planned/stock p99 |", "|---|---|---|---|---|---|---|---|---|"]
        by = {(c["server"], c["clients"], c["metrics_per_call"]): c for c in r["cells"]}
        for c in r["cells"]:
            other = by[("stock", c["clients"], c["metrics_per_call"])]
            ratio = (f"{c['metrics_per_s'] / other['metrics_per_s']:.2f}x | {c['p99_ms'] / other['p99_ms']:.2f}x"
                     if c["server"] == "planned" else "|")
            lines.append(f"| {c['clients']} | {c['metrics_per_call']} | {c['server']} | {c['metrics_per_s']:,.0f} | "
                         f"{c['p50_ms']:,.1f} | {c['p99_ms']:,.0f} | {c['errors']} | {ratio} |")
        lines += ["", f"{CHATTY_CLIENTS} chatty clients (`mlflow.log_metric` once per step):", "",
                  "| server | client environment | calls | stored | missing | errors | seconds (to flush) | "
                  "acknowledged metrics/s |", "|---|---|---|---|---|---|---|---|"]
        for c in r["chatty"]:
            lines.append(f"| {c['server']} | {c['client_environment']} | {c['calls']:,} | {c['stored']:,} | {c['missing']} | "
                         f"{c['errors']} | {c['seconds']:.1f} | {c['acknowledged_metrics_per_s']:,.0f} |")
        lines.append("")
    lines += ["## The bar (issue 10)", ""] + [f"- {'PASS' if ok else 'FAIL'}: {text}" for text, ok in result["checks"]]
    samples = [f"- {c['server']} {c['clients']}x{c.get('metrics_per_call', 'chatty')}: {c['errors']} errors, e.g. "
               f"{c['error_samples'][0]}" for r in result["rounds"] for c in r["cells"] + r["chatty"] if c["error_samples"]]
    if samples:
        lines += ["", "Errors:", ""] + samples
    lines += ["", "Client environment printed by `local up`: " + ", ".join(f"`{k}={v}`" for k, v in result["client_environment"].items())]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/independent"))
    parser.add_argument("--duration", type=float, default=15.0, help="seconds a cell (default 15)")
    parser.add_argument("--rounds", type=int, default=2, help="times the whole set runs (default 2)")
    parser.add_argument("--port", type=int, default=5180, help="the stock server's port; the planned API takes +100")
    args = parser.parse_args()
    import mlflow

    scratch = Path(tempfile.mkdtemp(prefix="independent-load-"))
    os.chmod(scratch, 0o755)  # PostgreSQL's unprivileged user walks through it when we are root
    stock = None
    try:
        stock, stock_url = start_stock(scratch / "stock", args.port)
        planned_url, client_env, _ = start_planned(scratch / "planned", args.port + 10_000, args.port + 100, args.port + 101)
        print(f"stock {stock_url}, planned {planned_url}; client environment {client_env}", flush=True)
        rounds = []
        for i in range(args.rounds):
            cells, chatty = [], []
            for clients, per_call in CELLS:
                order = [("stock", stock_url), ("planned", planned_url)][:: 1 if i % 2 == 0 else -1]
                for name, url in order:
                    cell = batch_cell(url, name, clients, per_call, args.duration)
                    print(f"round {i + 1} {name:8} {clients:3}x{per_call:<4} {cell['metrics_per_s']:9,.0f} metrics/s "
                          f"p50 {cell['p50_ms']:8,.1f} p99 {cell['p99_ms']:8,.0f} ms errors {cell['errors']}", flush=True)
                    cells.append(cell)
            for name, url, env_name, env in (("planned", planned_url, "planned", client_env), ("stock", stock_url, "none", {}),
                                             ("planned", planned_url, "none", {})):
                cell = chatty_cell(url, name, env_name, env, args.duration)
                print(f"round {i + 1} chatty {name:8} env {env_name:8} {cell['acknowledged_metrics_per_s']:9,.0f} metrics/s "
                      f"stored {cell['stored']:,}/{cell['calls']:,} errors {cell['errors']}", flush=True)
                chatty.append(cell)
            rounds.append({"cells": cells, "chatty": chatty})
    finally:
        if stock is not None:
            stop_stock(stock)
        stop_planned(scratch / "planned")
        shutil.rmtree(scratch, ignore_errors=True)
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    result = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "command": "python bench/independent_load.py " + " ".join(sys.argv[1:]),
              "machine": f"{os.cpu_count()} vCPU {cpu}, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB",
              "mlflow": mlflow.__version__, "uvloop_installed": importlib.util.find_spec("uvloop") is not None,
              "duration_s": args.duration, "client_environment": client_env, "rounds": rounds}
    result["checks"] = verdict(rounds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "independent.json").write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    text = markdown(result)
    (args.out / "independent.md").write_text(text)
    print(text)
    return 0 if all(ok for _, ok in result["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
