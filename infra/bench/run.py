"""The benchmark run: every variant up at once, measured in turn (ingest cells, ceiling, read isolation),
then search at scale on its own PostgreSQL; results.json after every section, results.md and plots at the end."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import psutil

from ..local.processes import wait_until
from . import ceiling, report, scale
from .chatty import chatty_cell
from .stacks import stack_servers
from .load import CLIENT_ENV, load_pool, merge
from .procs import cpu_seconds, server_pids
from .stats import latency_summary, split_clients, throughput
from .variants import BASELINE, LABELS, VARIANTS, Target, untuned_postgres

LOAD_PROCESSES = 2        # writer processes: one per core
READ_RUNS = 100           # one UI page of runs, each with params, tags and metrics
READ_PARAMS, READ_TAGS, READ_METRIC_KEYS = 10, 5, 5
STORM_BATCH = 100         # metrics per log_batch during the write storm
REPLICA_WAIT_S = 60


@dataclass
class Options:
    out: Path
    clients: list[int]
    batch_sizes: list[int]
    duration_s: float
    scale_runs: int
    scale_metrics: int
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))
    storm_clients: int = 8
    command: str = "mlflow-infra bench"
    stack_cells: list[tuple[int, int]] = field(default_factory=lambda: [(1, 1), (32, 10), (32, 100)])
    chatty_clients: int = 32
    scratch: Path | None = None   # where servers' scratch folders go (the run's temporary root)


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    return f"{os.cpu_count()} vCPU {model}, {psutil.virtual_memory().total / 1024**3:.0f} GiB, {platform.system()} {platform.release()}"


def postgres_version() -> str:
    from ..local.postgres import bin_dir

    return subprocess.run([str(bin_dir() / "postgres"), "--version"], capture_output=True, text=True).stdout.strip()


def meta(options: Options) -> dict:
    import mlflow

    return {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "command": options.command,
            "machine": machine(), "mlflow": mlflow.__version__, "postgres": postgres_version(),
            "python": platform.python_version(), "baseline": BASELINE, "labels": {}, "duration_s": options.duration_s,
            "clients": options.clients, "batch_sizes": options.batch_sizes, "load_processes": LOAD_PROCESSES,
            "storm": f"{options.storm_clients} clients x {STORM_BATCH} metrics per log_batch",
            "search_repeats": scale.SEARCH_REPEATS, "client_env": CLIENT_ENV}


def save(results: dict, out: Path) -> None:
    (out / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True, default=str) + "\n")


# ---------------------------------------------------------------------------------------------
# one variant

def ingest_cell(pool, target: Target, experiment_id: str, clients: int, batch: int, duration_s: float) -> dict:
    pids = server_pids(target.api_port)
    cpu = {}
    tasks = [{"kind": "ingest", "url": target.api_url, "experiment_id": experiment_id, "metrics_per_call": batch,
              "threads": n} for n in split_clients(clients, LOAD_PROCESSES)]
    merged = merge(pool.run(tasks, duration_s, on_start=lambda: cpu.setdefault("start", cpu_seconds(pids))))
    server_cpu = cpu_seconds(pids) - cpu["start"]
    requests = len(merged["latencies"])
    row = {"variant": target.name, "clients": clients, "metrics_per_call": batch, "requests": requests,
           "errors": merged["errors"], "error_samples": merged["error_samples"], "elapsed_s": merged["elapsed_s"],
           **throughput(requests, batch, merged["elapsed_s"]), **latency_summary(merged["latencies"]),
           "server_cpu_s": server_cpu, "server_processes": len(pids),
           "server_cpu_ms_per_request": server_cpu * 1000 / requests if requests else None}
    return row


def seed_read_experiment(target: Target) -> str:
    """An experiment with one page of runs, each with params, tags and metrics, as the UI lists them."""
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(target.api_url)
    experiment_id = client.create_experiment(f"bench-reads-{int(time.time())}")
    now = int(time.time() * 1000)
    for i in range(READ_RUNS):
        run_id = client.create_run(experiment_id).info.run_id
        client.log_batch(run_id, metrics=[Metric(f"m{k}", i * 0.01 + k, now, 0) for k in range(READ_METRIC_KEYS)],
                         params=[Param(f"p{k}", str(i * k)) for k in range(READ_PARAMS)],
                         tags=[RunTag(f"t{k}", f"v{i % 7}") for k in range(READ_TAGS)])
    return experiment_id


def wait_for_runs(url: str, experiment_id: str, count: int, timeout_s: float = REPLICA_WAIT_S) -> None:
    """The UI may read from a replica: wait until it sees the seeded runs."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(url)

    def seen() -> bool:
        try:
            return len(client.search_runs([experiment_id], max_results=count)) >= count
        except Exception:  # noqa: BLE001 (the replica may not have the experiment yet)
            return False

    wait_until(seen, timeout_s, 0.5, f"{url} to show the {count} seeded runs")


def read_phase(pool, target: Target, url: str, experiment_id: str, storm_experiment: str | None,
               storm_clients: int, duration_s: float) -> tuple[dict, dict | None]:
    """search_runs latencies from one reader, alone or next to a write storm on the API."""
    port = int(url.rsplit(":", 1)[1])
    pids = server_pids(port)
    cpu = {}
    tasks = []
    if storm_experiment is not None:
        tasks += [{"kind": "ingest", "url": target.api_url, "experiment_id": storm_experiment,
                   "metrics_per_call": STORM_BATCH, "threads": n} for n in split_clients(storm_clients, LOAD_PROCESSES)]
    tasks.append({"kind": "read", "url": url, "experiment_id": experiment_id, "threads": 1})
    results = pool.run(tasks, duration_s, on_start=lambda: cpu.setdefault("start", cpu_seconds(pids)))
    server_cpu = cpu_seconds(pids) - cpu["start"]
    reads = merge(results[-1:])
    n = len(reads["latencies"])
    summary = {**latency_summary(reads["latencies"]), "requests": n, "errors": reads["errors"],
               "error_samples": reads["error_samples"], "server_cpu_ms_per_request": server_cpu * 1000 / n if n else None}
    storm = merge(results[:-1]) if storm_experiment is not None else None
    return summary, storm


def read_isolation(pool, target: Target, options: Options, progress) -> list[dict]:
    from mlflow.tracking import MlflowClient

    experiment_id = seed_read_experiment(target)
    storm_experiment = MlflowClient(target.api_url).create_experiment(f"bench-storm-{int(time.time())}")
    # the UI URL (a replica when the topology splits reads), and the primary through the API server
    urls = [(target.ui_url, "UI server, replica" if target.replica_split else "the one server, primary")]
    if target.ui_url != target.api_url:
        urls.append((target.api_url, "API server, primary (no replica split)"))
    rows = []
    storm_clients = options.storm_clients
    for url, reads_from in urls:
        wait_for_runs(url, experiment_id, READ_RUNS)
        progress(f"  reads {target.name} via {reads_from}: idle, then during {storm_clients} writers")
        idle, _ = read_phase(pool, target, url, experiment_id, None, storm_clients, options.duration_s)
        storm, writes = read_phase(pool, target, url, experiment_id, storm_experiment, storm_clients, options.duration_s)
        rows.append({"variant": target.name, "reads_from": reads_from, "url": url, "idle": idle, "storm": storm,
                     "storm_metrics_per_s": throughput(len(writes["latencies"]), STORM_BATCH, writes["elapsed_s"])["metrics_per_s"],
                     "storm_errors": writes["errors"]})
    return rows


def ceiling_rows(target: Target, ingest: list[dict], duration_s: float) -> dict:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(target.api_url)
    experiment_id = client.create_experiment(f"bench-ceiling-{int(time.time())}")
    runs = [client.create_run(experiment_id).info.run_id for _ in range(1 + ceiling.INSERT_CONNECTIONS)]
    raw = ceiling.measure(target.primary_uri, runs, duration_s)
    best = report.best_api_rate(ingest, target.name)
    top = max(raw["copy_rows_per_s"], raw["insert_rows_per_s"])
    return {"variant": target.name, **raw, "best_api_metrics_per_s": best, "api_fraction": best / top if best and top else None}


def cell_figures(row: dict, before: str = "", after: str = "") -> str:
    """A load cell's progress figures: metrics/s, `before`, the latency percentiles, `after`, errors."""
    return (f"{row['metrics_per_s']:>9,.0f} metrics/s, {before}p50 {report.fmt_ms(row['p50_ms'])} ms,"
            f" p99 {report.fmt_ms(row['p99_ms'])} ms, {after}errors {row['errors']}")


def run_cell(pool, target: Target, experiment_id: str, clients: int, batch: int, options: Options, rows: list,
             progress, line) -> None:
    """One log_batch load cell against `target`, its row added to `rows` and reported by `line(row)`."""
    row = ingest_cell(pool, target, experiment_id, clients, batch, options.duration_s)
    rows.append(row)
    progress(line(row))


def ingest_all(targets: list[Target], pool, options: Options, results: dict, progress) -> None:
    """Cell by cell, every variant in turn: noise on a shared machine hits all variants alike."""
    from mlflow.tracking import MlflowClient

    experiments = {t.name: MlflowClient(t.api_url).create_experiment(f"bench-ingest-{int(time.time())}") for t in targets}
    for clients in options.clients:
        for batch in options.batch_sizes:
            for target in targets:
                run_cell(pool, target, experiments[target.name], clients, batch, options, results["ingest"], progress,
                         lambda row, t=target: f"  ingest {t.name:>14} {clients:>3} clients x {batch:>4} metrics: "
                         + cell_figures(row, before=f"{row['requests_per_s']:>7,.1f} req/s, "))
                save(results, options.out)


def server_stacks(target: Target, pool, options: Options, results: dict, progress) -> None:
    """The planned API's environment under each server stack, cell by cell (stacks.py)."""
    from mlflow.tracking import MlflowClient

    with stack_servers(target.api_pid, target.jobs, Path(tempfile.mkdtemp(prefix="stacks-", dir=options.scratch)),
                       progress) as urls:
        stack_targets = [Target(name, url, url, None, False) for name, url in urls.items()]
        # the stacks share the planned primary: one experiment each, named apart
        experiments = {t.name: MlflowClient(t.api_url).create_experiment(f"bench-stack-{i}-{int(time.time())}")
                       for i, t in enumerate(stack_targets)}
        for clients, batch in options.stack_cells:
            for stack in stack_targets:
                run_cell(pool, stack, experiments[stack.name], clients, batch, options, results["stacks"], progress,
                         lambda row, t=stack: f"  stack {t.name:>30} {clients:>3} x {batch:>4}: "
                         + cell_figures(row, after=f"{report.fmt_ms(row['server_cpu_ms_per_request'])} ms CPU/request, "))
                save(results, options.out)


def chatty_clients(targets: list[Target], pool, options: Options, results: dict, progress) -> None:
    """One metric per `mlflow.log_metric` call: the planned topology with and without its
    client_environment, every other variant without (as users run them today)."""
    from mlflow.tracking import MlflowClient

    planned = next((t for t in targets if t.client_environment), None)
    cells = [(t, {}, "none") for t in targets]
    if planned is not None:
        cells.insert(0, (planned, planned.client_environment, "the plan's"))
    for target, env, env_name in cells:
        experiment_id = MlflowClient(target.api_url).create_experiment(f"bench-chatty-{int(time.time() * 1000)}")
        row = chatty_cell(pool, target, experiment_id, options.chatty_clients, env, env_name, options.duration_s, LOAD_PROCESSES)
        results["chatty"].append(row)
        progress(f"  chatty {target.name:>14} ({env_name:>10} client environment): {row['metrics_per_s']:>9,.0f} metrics/s"
                 f" acknowledged, {row['calls']:,} calls, {row['missing']} missing, errors {row['errors']}")
        save(results, options.out)


def run_variants(names: list[str], root: Path, pool, options: Options, results: dict, progress) -> None:
    """All variants up at once (idle ones cost next to nothing), then ingest, ceiling and reads."""
    with ExitStack() as stack:
        targets = []
        for name in names:
            progress(f"starting {LABELS[name]}")
            target = stack.enter_context(VARIANTS[name](root, progress=progress))
            results["meta"]["labels"][name] = target.label
            progress(f"  API {target.api_url}, UI {target.ui_url}")
            targets.append(target)
        ingest_all(targets, pool, options, results, progress)
        planned = next((t for t in targets if t.api_pid), None)
        if planned is not None and options.stack_cells:
            progress("server stacks on the planned topology")
            server_stacks(planned, pool, options, results, progress)
        if options.chatty_clients:
            progress(f"chatty clients: {options.chatty_clients} x mlflow.log_metric, one metric per call")
            chatty_clients(targets, pool, options, results, progress)
        for target in targets:
            if target.primary_uri:
                results["ceiling"].append(ceiling_rows(target, results["ingest"], options.duration_s))
                progress(f"  ceiling {target.name}: COPY {results['ceiling'][-1]['copy_rows_per_s']:,.0f} rows/s,"
                         f" INSERT {results['ceiling'][-1]['insert_rows_per_s']:,.0f} rows/s")
        for target in targets:
            results["reads"] += read_isolation(pool, target, options, progress)
            save(results, options.out)


def search_at_scale(root: Path, options: Options, progress) -> dict:
    shape = scale.Shape(options.scale_runs, options.scale_metrics)
    with untuned_postgres(root / "pg-scale" / "data") as uri:
        progress(f"search at scale: {shape.runs:,} runs, {shape.metric_rows:,} metric rows")
        scale.schema_upgrade(uri)
        generated = scale.generate(uri, shape, progress)
        return {**generated, **scale.before_after(uri, shape, progress)}


def earlier_search(out: Path) -> dict | None:
    """The search section of an earlier results.json in `out`, tagged with the run it came from."""
    try:
        earlier = json.loads((out / "results.json").read_text())
    except (OSError, ValueError):
        return None
    search = earlier.get("search")
    if not search:
        return None
    return {**search, "from_run": search.get("from_run") or f"{earlier['meta']['command']} ({earlier['meta']['date']})"}


def run(options: Options, progress=print) -> dict:
    options.out.mkdir(parents=True, exist_ok=True)
    results = {"meta": meta(options), "ingest": [], "reads": [], "ceiling": [], "search": None, "stacks": [], "chatty": [],
               "calibration": None, "notes": []}
    # --scale-runs 0 skips the slow search-at-scale section but keeps what an earlier run measured there
    previous = earlier_search(options.out) if options.scale_runs == 0 else None
    root = Path(tempfile.mkdtemp(prefix="mlflow-infra-bench-"))
    options.scratch = root
    try:
        with load_pool(LOAD_PROCESSES + 1) as pool:
            run_variants(options.variants, root, pool, options, results, progress)
        if options.scale_runs > 0:
            results["search"] = search_at_scale(root, options, progress)
            save(results, options.out)
        elif previous:
            results["search"] = previous
            results["notes"].append(f"search at scale was not rerun; its figures are from {previous['from_run']}")
    finally:
        shutil.rmtree(root, ignore_errors=True)  # database files never land in --out
    finalize(results, options)
    return results


def finalize(results: dict, options: Options) -> None:
    target = "planned-local" if any(r["variant"] == "planned-local" for r in results["ingest"]) else None
    fit = report.calibration(results["ingest"], target) if target else None
    if fit:
        ui = next((r["idle"]["server_cpu_ms_per_request"] for r in results["reads"]
                   if r["variant"] == target and "replica" in r["reads_from"]), None)
        provenance = f"{results['meta']['command']}, {results['meta']['date']}, {results['meta']['machine']}"
        results["calibration"] = {**fit, "ui_ms_per_request": ui, "yaml": report.yaml_block(fit, ui, provenance)}
    for row in results["ingest"] + results["stacks"]:
        if row["errors"]:
            results["notes"].append(f"{row['variant']} {row['clients']} clients x {row['metrics_per_call']} metrics:"
                                    f" {row['errors']} errors, e.g. {report.short_error((row['error_samples'] or ['?'])[0])}")
    save(results, options.out)
    (options.out / "results.md").write_text(report.markdown(results))
    report.plots(results, options.out)
