"""`mlflow-infra bench`: registered on the main command line by `register(subparsers)`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .console import EXIT_INVALID

# --quick: a smoke run of a few minutes; the full defaults take 20-40 minutes on 2 vCPU
QUICK = {"clients": "1,8", "batch_sizes": "1,100", "duration": 2.0, "scale_runs": 20_000, "scale_metrics": 200_000,
         "stack_cells": [(8, 10)], "chatty_clients": 8}
FULL = {"clients": "1,8,32,64", "batch_sizes": "1,10,100,1000", "duration": 10.0, "scale_runs": 1_000_000,
        "scale_metrics": 10_000_000, "stack_cells": [(1, 1), (32, 10), (32, 100)], "chatty_clients": 32}


def register(subparsers) -> None:
    p = subparsers.add_parser("bench", help="measure ingest, read isolation and search at scale on this machine",
                              description="Start stock and planned MLflow setups on 127.0.0.1, measure them side by side,"
                                          " and write results.json, results.md and PNG plots.")
    p.add_argument("--quick", action="store_true", help="small sizes for a smoke run (3-5 minutes on 2 vCPU)")
    p.add_argument("--out", default="bench/results", help="where results go (default: bench/results)")
    p.add_argument("--clients", help=f"concurrent clients per ingest cell (default {FULL['clients']})")
    p.add_argument("--batch-sizes", help=f"metrics per log_batch (default {FULL['batch_sizes']})")
    p.add_argument("--duration", type=float, help=f"seconds per ingest cell (default {FULL['duration']:g})")
    p.add_argument("--scale-runs", type=int, help=f"runs for search at scale, 0 to skip (default {FULL['scale_runs']:,})")
    p.add_argument("--scale-metrics", type=int, help=f"metric rows for search at scale (default {FULL['scale_metrics']:,})")
    # 8: a storm every variant survives; the planned API's pool is 2 + an overflow sized for the plan's burst
    # (planning/connections.py pool_for) and log_batch takes two connections, so a bigger storm waits on pool_timeout
    p.add_argument("--storm-clients", type=int, default=8, help="writers during the read-isolation storm (default 8)")
    p.add_argument("--variants", default="stock-sqlite,stock-postgres,planned-local",
                   help="which setups to run, comma separated (default: all three)")
    p.set_defaults(func=cmd_bench)


def options_from(args: argparse.Namespace):
    """Options from the command line; raises ValueError with one sentence for a bad value."""
    from ..bench.run import Options
    from ..bench.stats import parse_int_list
    from ..bench.variants import VARIANTS

    base = QUICK if args.quick else FULL

    def pick(name):
        value = getattr(args, name)
        return base[name] if value is None else value

    clients, batches = parse_int_list(pick("clients")), parse_int_list(pick("batch_sizes"))
    if max(batches) > 1000:
        raise ValueError(f"--batch-sizes {max(batches)} is not allowed; MLflow's log_batch takes at most 1,000 metrics")
    duration = pick("duration")
    if not 1 <= duration <= 600:
        raise ValueError(f"--duration {duration:g} is not allowed; expected 1 to 600 seconds")
    runs, metrics = pick("scale_runs"), pick("scale_metrics")
    if runs < 0 or metrics < 0 or (runs and runs < 100):
        raise ValueError("--scale-runs must be 0 (skip) or at least 100, and --scale-metrics at least 0")
    if args.storm_clients < 1:
        raise ValueError(f"--storm-clients {args.storm_clients} is not allowed; expected at least 1")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ValueError(f"--variants {args.variants!r} is not allowed; expected some of {', '.join(VARIANTS)}")
    command = "mlflow-infra bench " + " ".join(sys.argv[2:]) if sys.argv[1:2] == ["bench"] else "mlflow-infra bench"
    return Options(out=Path(args.out), clients=clients, batch_sizes=batches, duration_s=duration, scale_runs=runs,
                   scale_metrics=metrics, variants=variants, command=command.strip(),
                   storm_clients=args.storm_clients, stack_cells=list(base["stack_cells"]),
                   chatty_clients=base["chatty_clients"])


def cmd_bench(args: argparse.Namespace) -> int:
    try:
        options = options_from(args)
    except ValueError as exc:
        print(f"mlflow-infra bench: {exc}", file=sys.stderr)
        return EXIT_INVALID
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("mlflow-infra bench: matplotlib is not installed; run: pip install -e '.[bench]'", file=sys.stderr)
        return EXIT_INVALID
    from ..bench.report import markdown
    from ..bench.run import run

    started = time.monotonic()
    # elapsed minutes on every line: a full run takes half an hour and is watched through a log
    results = run(options, progress=lambda line: print(f"[{(time.monotonic() - started) / 60:5.1f} min] {line}", flush=True))
    print()
    print(markdown(results))
    return 0
