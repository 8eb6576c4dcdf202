"""`mlflow-infra doctor ENV --local`: which of the known bottlenecks a running deployment hits.

Reads the environment's plan and the running databases and prints findings as a table (or --json):
the bottleneck, how bad, the evidence with its numbers and the remedy. This version diagnoses the
local topology (`mlflow-infra local up`); the AWS sources (RDS, CloudWatch, ECS) are not built yet.

Exit codes: 0 nothing to fix, 1 findings, 2 bad input, 3 a part of the deployment cannot be reached
(the table says which).
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


def register(subparsers) -> None:
    doctor = subparsers.add_parser("doctor", help="diagnose a running deployment against its plan (the local topology: --local)")
    doctor.add_argument("environment", nargs="?", default="local", help="the environment the deployment runs (default: local)")
    doctor.add_argument("--local", action="store_true", help="the topology of `mlflow-infra local up` under --root")
    doctor.add_argument("--root", default=DEFAULT_ROOT, help=f"the local topology's root (default: ./{DEFAULT_ROOT})")
    doctor.add_argument("--json", action="store_true", help="print the report as JSON (findings, sources, facts)")
    doctor.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    if not args.local:
        err(f"doctor {args.environment}: only --local is allowed in this version; the AWS sources (RDS, CloudWatch, ECS)"
            " are not built yet. Expected: mlflow-infra doctor --local [--root DIR]")
        return EXIT_BAD_INPUT
    from ..doctor.local import diagnose

    report = diagnose(Path(args.root))
    if args.environment not in ("local", report.environment) and report.environment != "?":
        err(f"doctor {args.environment}: the topology under {args.root} runs environment {report.environment!r};"
            f" expected {args.environment!r} or none")
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print_report(report)
    return report.exit_code


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
