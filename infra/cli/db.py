"""`mlflow-infra db apply-pending ENV [--yes]`: reboot what waits for a reboot, replicas first.

Shows the reboots it will make (the instances whose parameter group is `pending-reboot`, found by
the stack's tags in the plan's region), asks for confirmation unless --yes, then reboots them one
at a time, each waited on: replicas first, or the primary first with --primary-first when the change
lowers a parameter a standby must run at least as high (see infra/doctor/pending.py).

Exit codes: 0 done or nothing pending, 1 declined (nothing changed), 2 bad input, 3 AWS could not
be reached or an instance cannot be rebooted now (nothing, or only the reboots listed, were made).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..doctor.findings import EXIT_BAD_INPUT, EXIT_UNREACHABLE
from ..endpoints import ENVIRONMENT_TAG, TARGET_TAG
from ..doctor.pending import STANDBY_AT_LEAST_PRIMARY
from .console import err

EXIT_DECLINED = 1


def register(subparsers) -> None:
    db = subparsers.add_parser("db", help="operate the deployed database")
    commands = db.add_subparsers(dest="db_command", required=True)
    pending = commands.add_parser("apply-pending", help="reboot the instances whose parameters wait for a reboot (replicas first)")
    pending.add_argument("environment", help="the environment (prod -> stacks/prod.yaml) or a file path")
    pending.add_argument("--yes", action="store_true", help="do not ask for confirmation (CI)")
    pending.add_argument("--primary-first", action="store_true",
                         help="reboot the primary before the replicas: for a change that lowers one of "
                              + ", ".join(STANDBY_AT_LEAST_PRIMARY))
    pending.set_defaults(func=cmd_apply_pending)


def cmd_apply_pending(args: argparse.Namespace, session=None, confirm=None) -> int:
    from ..planning.plan import plan
    from ..spec import load_environment

    capacity = plan(load_environment(args.environment, Path(args.stacks_dir)))  # SpecInvalid: exit 2 in main
    env, region = capacity.environment, capacity.region
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        err("db apply-pending: needs boto3: pip install -e '.[deploy]'")
        return EXIT_BAD_INPUT
    from ..doctor import aws, pending

    session = session or boto3.session.Session()
    rds = session.client("rds", region_name=region)
    try:
        databases = aws.read_databases(rds, env)
        cluster = aws.read_cluster(rds, env) if capacity.database.engine.engine == "aurora" else None
    except (BotoCoreError, ClientError) as exc:
        err(f"db apply-pending {env}: RDS in {region} could not be read: {str(exc).splitlines()[0]}")
        return EXIT_UNREACHABLE
    if "primary" not in databases:
        err(f"db apply-pending {env}: no RDS instance tagged {ENVIRONMENT_TAG}={env} and {TARGET_TAG}=primary"
            f" in {region}: is the stack deployed in this account and region?")
        return EXIT_UNREACHABLE
    steps = pending.reboot_plan(databases, args.primary_first, cluster)
    if not steps:
        print(f"{env}: nothing is pending a reboot ({len(databases)} instance(s) in {region}, every parameter group in sync)")
        return 0
    print(f"{env}: {len(steps)} reboot(s), in this order, each waited on until the instance is available:")
    for i, step in enumerate(steps, 1):
        print(f"  {i}. {step.describe()}")
    refused = pending.blocked(steps)
    if refused:
        for reason in refused:
            err(f"db apply-pending {env}: {reason}")
        return EXIT_UNREACHABLE
    if not args.yes:
        if confirm is None and not sys.stdin.isatty():
            err(f"db apply-pending {env}: not confirmed: stdin is not a terminal; pass --yes to reboot without asking")
            return EXIT_BAD_INPUT
        answer = (confirm or input)("Reboot them now? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("declined: nothing was rebooted")
            return EXIT_DECLINED
    try:
        pending.apply(rds, steps, print)
    except (BotoCoreError, ClientError, pending.RebootTimeout) as exc:
        err(f"db apply-pending {env}: {str(exc).splitlines()[0]}")
        return EXIT_UNREACHABLE
    print(f"{env}: done; mlflow-infra doctor {env} checks the parameters in effect")
    return 0
