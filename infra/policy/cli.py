"""`mlflow-infra policy check ENV` and `mlflow-infra policy config ENV [--write]`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

EXIT_VIOLATION = 1


def register(subparsers) -> None:
    policy = subparsers.add_parser("policy", help="run the policy pack offline, or write its config")
    sub = policy.add_subparsers(dest="policy_command", required=True)
    p_check = sub.add_parser("check", help="render the stack under Pulumi's mocks and run every rule; exit 1 on a mandatory violation")
    p_check.add_argument("environment", help="an environment name or file")
    p_check.set_defaults(func=cmd_check)
    p_config = sub.add_parser("config", help="print (or --write to policies/config/) the policy pack config of an environment")
    p_config.add_argument("environment")
    p_config.add_argument("--write", action="store_true")
    p_config.set_defaults(func=cmd_config)


def cmd_check(args: argparse.Namespace) -> int:
    from ..cli import _console
    from ..spec import load_environment
    from .check import check, report

    spec = load_environment(args.environment, Path(args.stacks_dir))
    return report(spec, check(spec), _console())


def cmd_config(args: argparse.Namespace) -> int:
    from ..plan import plan
    from ..spec import load_environment
    from .check import policy_config, policy_pack_config, write_config

    spec = load_environment(args.environment, Path(args.stacks_dir))
    capacity = plan(spec)
    if args.write:
        print(write_config(spec, capacity))
    else:
        print(json.dumps(policy_pack_config(policy_config(spec, capacity)), indent=2, sort_keys=True))
    return 0
