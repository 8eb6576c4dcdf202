"""`mlflow-infra policy check ENV` and `mlflow-infra policy config ENV [--write]`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers) -> None:
    policy = subparsers.add_parser("policy", help="run the policy pack offline, or write its config")
    sub = policy.add_subparsers(dest="policy_command", required=True)
    p_check = sub.add_parser("check", help="render the stack under Pulumi's mocks and run every rule; exit 1 on a mandatory violation")
    p_check.add_argument("environment", help="an environment name or file")
    p_check.add_argument("--stack-json", metavar="FILE",
                         help="check this `pulumi preview --json` or `pulumi stack export` document instead of rendering the stack;"
                              " a mandatory rule that needs a value unknown until apply reports it (fails closed)")
    p_check.set_defaults(func=cmd_check)
    p_config = sub.add_parser("config", help="print (or --write to policies/config/) the policy pack config of an environment")
    p_config.add_argument("environment")
    p_config.add_argument("--write", action="store_true")
    p_config.set_defaults(func=cmd_config)


def cmd_check(args: argparse.Namespace) -> int:
    from .console import console
    from ..spec import load_environment
    from ..policy.check import DocumentError, check, report, resources_from_document

    spec = load_environment(args.environment, Path(args.stacks_dir))
    try:
        resources = resources_from_document(Path(args.stack_json)) if args.stack_json else None
    except DocumentError as exc:
        print(exc, file=sys.stderr)
        return 2
    return report(spec, check(spec, resources), console())


def cmd_config(args: argparse.Namespace) -> int:
    from ..planning.plan import plan
    from ..spec import load_environment
    from ..policy.check import policy_config, policy_pack_config, write_config

    spec = load_environment(args.environment, Path(args.stacks_dir))
    capacity = plan(spec)
    if args.write:
        print(write_config(spec, capacity))
    else:
        print(json.dumps(policy_pack_config(policy_config(spec, capacity)), indent=2, sort_keys=True))
    return 0
