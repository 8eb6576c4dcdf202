"""`mlflow-infra local up|status|down`: an environment's topology on this machine.

Exit codes: 0 fine; 1 something failed to start (one line naming the log); 2 bad input, such as
a bad environment file or a port another process holds; `status` exits 3 when a component is down.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .console import console as make_console

from ..spec import resolve_environment_path
from ..local.topology import LocalTopology, LocalTopologyError, TopologyState

DEFAULT_ROOT = ".mlflow-local"
EXIT_DOWN = 3


def port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not allowed; expected an integer from 1 to 65535")
    return int(text)


def register(subparsers) -> None:
    """Add `local` and its subcommands to the `mlflow-infra` parser."""
    local = subparsers.add_parser("local", help="run an environment's topology on this machine (PostgreSQL primary,"
                                                " replica, MLflow API and UI servers on 127.0.0.1)")
    commands = local.add_subparsers(dest="local_command", required=True)

    up = commands.add_parser("up", help="start the topology, or whatever part of it is not running")
    up.add_argument("environment", nargs="?", default="local", help="an environment name or file (default: local)")
    up.add_argument("--base-port", type=port, default=15432, help="PostgreSQL primary port; replicas +1, +2, ... (default 15432)")
    up.add_argument("--api-port", type=port, default=5080, help="API server port (default 5080)")
    up.add_argument("--ui-port", type=port, default=5081, help="UI server port (default 5081)")
    up.set_defaults(func=cmd_up)

    status = commands.add_parser("status", help="each component and whether it is up")
    status.set_defaults(func=cmd_status)

    down = commands.add_parser("down", help="stop the servers, then PostgreSQL (data kept unless --purge)")
    down.add_argument("--purge", action="store_true", help="also delete the data, artifacts and logs under --root")
    down.set_defaults(func=cmd_down)

    for command in (up, status, down):
        command.add_argument("--root", default=DEFAULT_ROOT, help=f"where data, logs and state live (default: ./{DEFAULT_ROOT})")


def _failed(exc: LocalTopologyError) -> int:
    print(str(exc), file=sys.stderr)
    return exc.code


def cmd_up(args: argparse.Namespace) -> int:
    console = make_console()
    # `--stacks-dir` applies to the environment name, as in `plan` and `validate`
    environment = str(resolve_environment_path(args.environment, Path(args.stacks_dir)))
    try:
        topology = LocalTopology.from_environment(environment, Path(args.root), args.base_port, args.api_port, args.ui_port)
        state = topology.up(progress=lambda line: console.print(f"[dim]-[/dim] {line}"))
    except LocalTopologyError as exc:
        return _failed(exc)
    print_summary(state, console)
    plan = topology.plan
    console.print("training jobs that log one metric per call: batch them with the plan's client environment"
                  " (mlflow-infra plan ENV --json: client_environment)")
    for name, value in sorted(plan.client_environment.items()):
        console.print(f"export {name}={value}")
    return 0


def print_summary(state: TopologyState, console: Console) -> None:
    console.print(f"[bold]API[/bold] {state.api_url}   (training jobs log here; writes go to the primary)")
    console.print(f"[bold]UI[/bold]  {state.ui_url}   (reads from {'the replica' if state.replica_uris else 'the primary'})")
    console.print(f"export MLFLOW_TRACKING_URI={state.api_url}")
    if state.auth_file:
        console.print(f"basic auth: the admin's username and password are in {state.auth_file}"
                      " (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD for clients)")
    console.print(f"primary  {state.primary_uri}")
    for uri in state.replica_uris:
        console.print(f"replica  {uri}")
    if state.skipped_parameters:
        console.print(f"skipped (RDS only): {', '.join(state.skipped_parameters)}")
    for adapted in state.adapted_parameters:
        console.print(f"adapted: {adapted}")


def cmd_status(args: argparse.Namespace) -> int:
    try:
        status = LocalTopology.at(Path(args.root)).status()
    except LocalTopologyError as exc:
        return _failed(exc)
    if not status["components"]:
        print(f"no local topology under {status['root']}; start one with: mlflow-infra local up")
        return EXIT_DOWN
    table = Table(title=f"Local topology {status['environment']} under {status['root']}", title_justify="left")
    for column in ("component", "state", "pid", "address", "log"):
        table.add_column(column, overflow="fold")
    for name, component in status["components"].items():
        table.add_row(name, "[green]up[/green]" if component["up"] else "[red]down[/red]", str(component["pid"] or "-"),
                      component["address"], component["log"])
    make_console().print(table)
    return 0 if all(c["up"] for c in status["components"].values()) else EXIT_DOWN


def cmd_down(args: argparse.Namespace) -> int:
    topology = LocalTopology.at(Path(args.root))
    try:
        had_state = topology.read_state() is not None
        topology.down(purge=args.purge)
    except LocalTopologyError as exc:
        return _failed(exc)
    if not had_state:
        print(f"no local topology under {topology.root}; nothing to stop")
    elif args.purge:
        print(f"stopped and removed the local topology under {topology.root}")
    else:
        print(f"stopped the local topology under {topology.root}; data kept (`local up` resumes it, `local down --purge` removes it)")
    return 0
