"""The Pulumi program: `pulumi up` on stack <env> loads stacks/<env>.yaml, validates it, plans it.

Validation runs before any resource is declared: a bad environment file stops the update with the
same one-line messages as `mlflow-infra validate`. The resources themselves come with the
MlflowTracking component (next issue); until then the program exports the plan it would build.
"""

from __future__ import annotations

from pathlib import Path

import pulumi

from infra import SpecInvalid, load_environment, plan

STACKS_DIR = Path(__file__).resolve().parent


def main() -> None:
    stack = pulumi.get_stack()
    try:
        spec = load_environment(STACKS_DIR / f"{stack}.yaml", STACKS_DIR)
    except SpecInvalid as exc:
        # RunError: Pulumi prints the message without a Python traceback
        raise pulumi.RunError(str(exc)) from None
    capacity = plan(spec)
    pulumi.export("plan", capacity.to_dict())
    pulumi.export("monthly_cost_usd", capacity.cost.total_monthly_usd)


main()
