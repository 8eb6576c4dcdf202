"""mlflow-infra: the one command line. Each command group is a module here with `register(subparsers)`.

  mlflow-infra plan ENV_OR_FILE [--json]   what will be built and why            (plan.py)
  mlflow-infra validate [FILE ...]         check every environment file in stacks/ (plan.py)
  mlflow-infra classes                     the database instance classes known    (plan.py)
  mlflow-infra policy check|config ENV     the policy pack, offline               (policy.py)
  mlflow-infra local up|status|down        the topology on this machine           (local.py)
  mlflow-infra bench                       the benchmark                          (bench.py)
  mlflow-infra doctor ENV [--local]        a running deployment against its plan  (doctor.py)
  mlflow-infra db apply-pending ENV        reboot what waits for a reboot          (db.py)

Exit codes: 0 fine, 2 bad input (one line per problem, no traceback); groups document their own.
"""

from __future__ import annotations

import argparse
import sys

from ..spec import STACKS_DIR, SpecInvalid
from . import bench, db, doctor, local, plan, policy
from .console import EXIT_INVALID, err

COMMAND_GROUPS = (plan, policy, bench, local, doctor, db)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlflow-infra", description="Scalable MLflow tracking on AWS: plan, validate, deploy.")
    parser.add_argument("--stacks-dir", default=str(STACKS_DIR), help="where environment files live (default: stacks)")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SpecInvalid as exc:
        for error in exc.errors:
            err(str(error))
        return EXIT_INVALID
    except BrokenPipeError:  # `mlflow-infra plan prod | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
