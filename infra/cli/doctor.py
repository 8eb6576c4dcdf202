"""`mlflow-infra doctor ENV [--local]`: which of the known bottlenecks a running deployment hits.

Reads the environment's plan and the running deployment and prints findings as a table (or --json):
the bottleneck, how bad, the evidence with its numbers and the remedy. `doctor ENV` reads AWS (RDS,
ECS or the Auto Scaling groups, the load balancers, CloudWatch over --window-hours) in the plan's
region with boto3's usual credentials, and the primary database as the master user (or
--database-uri); `doctor --local` reads the topology of `mlflow-infra local up`.

Exit codes: 0 nothing to fix, 1 findings, 2 bad input, 3 a part of the deployment cannot be reached
(the sources table says which).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.table import Table

from ..doctor.findings import EXIT_BAD_INPUT, Report
from .console import console as make_console
from .console import err
from .local import DEFAULT_ROOT

# CloudWatch keeps 5-minute datapoints 63 days
MAX_WINDOW_HOURS = 63 * 24


def register(subparsers) -> None:
    doctor = subparsers.add_parser("doctor", help="diagnose a running deployment against its plan (AWS, or --local)")
    doctor.add_argument("environment", nargs="?", default="local",
                        help="the environment (prod -> stacks/prod.yaml) or a file path (default: local)")
    doctor.add_argument("--local", action="store_true", help="the topology of `mlflow-infra local up` under --root")
    doctor.add_argument("--root", default=DEFAULT_ROOT, help=f"the local topology's root (default: ./{DEFAULT_ROOT})")
    doctor.add_argument("--window-hours", type=float, default=24.0,
                        help="AWS: the CloudWatch window, ending now (default: 24)")
    doctor.add_argument("--database-uri", default=None,
                        help="AWS: reach the primary with this libpq URI (a tunnel) instead of the master secret and endpoint")
    doctor.add_argument("--json", action="store_true", help="print the report as JSON (findings, sources, facts)")
    doctor.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    if args.local:
        report = _local(args)
    else:
        report = _aws(args)
    if report is None:
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print_report(report)
    return report.exit_code


def _local(args: argparse.Namespace) -> Report | None:
    from ..doctor.local import diagnose

    report = diagnose(Path(args.root))
    if args.environment not in ("local", report.environment) and report.environment != "?":
        err(f"doctor {args.environment}: the topology under {args.root} runs environment {report.environment!r};"
            f" expected {args.environment!r} or none")
        return None
    return report


def _aws(args: argparse.Namespace) -> Report | None:
    if not 0 < args.window_hours <= MAX_WINDOW_HOURS:
        err(f"doctor {args.environment}: --window-hours {args.window_hours:g} is out of range; allowed: more than 0, at most"
            f" {MAX_WINDOW_HOURS:,} (CloudWatch keeps 5-minute datapoints 63 days)")
        return None
    from ..planning.plan import plan
    from ..spec import load_environment

    capacity = plan(load_environment(args.environment, Path(args.stacks_dir)))  # SpecInvalid: exit 2 in main
    try:
        import boto3
    except ImportError:
        err("doctor: the AWS sources need boto3: pip install -e '.[deploy]' (or doctor --local)")
        return None
    from ..doctor.cloud import diagnose

    return diagnose(capacity, boto3.session.Session(), args.window_hours, args.database_uri)


def print_report(report: Report) -> None:
    console = make_console()
    if report.findings:
        table = Table(title=f"Findings for {report.environment}")
        for column in ("bottleneck", "severity", "where", "evidence", "remedy"):
            table.add_column(column)
        for f in report.as_json()["findings"]:
            table.add_row(f["bottleneck"], f["severity"], f["source"], f["evidence"], f["remedy"])
        console.print(table)
    else:
        console.print(f"{report.environment}: no finding")
    sources = Table(title="Sources")
    for column in ("source", "reached", "detail"):
        sources.add_column(column)
    for s in report.sources:
        sources.add_row(s.name, "yes" if s.reached else "NO", s.detail)
    console.print(sources)
    statements = report.facts.get("top_statements")
    if isinstance(statements, list) and statements:
        top = Table(title="Top statements by total time (pg_stat_statements)")
        for column in ("operation", "calls", "total ms", "mean ms", "statement"):
            top.add_column(column)
        for s in statements:
            top.add_row(s["operation"], f"{s['calls']:,}", f"{s['total_ms']:,.1f}", f"{s['mean_ms']:,.2f}", s["query"])
        console.print(top)
    elif statements:
        console.print(str(statements))
