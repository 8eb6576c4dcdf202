"""`mlflow-infra policy check ENV`: render the stack under Pulumi's mocks, run every rule, report.

The same rules run in CI through the CrossGuard pack (`pulumi preview --policy-pack policies`);
this path needs no Pulumi CLI and no cloud account.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..planning.plan import CapacityPlan, plan as make_plan
from ..planning.server_command import MIN_NOFILE
from ..spec.model import EnvironmentSpec
from .rules import RULES, UNKNOWN, UNVERIFIABLE, PolicyConfig, Res, Violation, evaluate

# What a value unknown until apply serializes as in `pulumi preview --json` and `pulumi stack export`:
# the engine's computedValuePlaceholder (pkg/resource/stack/deployment.go), the same string as the
# SDK's `pulumi.runtime.rpc.UNKNOWN` and pulumi_policy's `UNKNOWN_STRING_VALUE`.
DOCUMENT_UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"

CONFIG_DIR = Path("policies") / "config"


def policy_config(spec: EnvironmentSpec, capacity: CapacityPlan) -> dict[str, Any]:
    """The policy pack's configuration for an environment, from its plan (policies/config/<env>.json)."""
    training = spec.placement.training_vpc
    return {
        "environment": spec.name,
        "production": spec.production,
        "durability": spec.database.durability,
        "min_backup_retention_days": 1,
        "min_backup_retention_days_production": 7,
        "min_nofile": MIN_NOFILE,
        "connection_reserve": capacity.connection_budget.reserve,
        "fleet_connections": capacity.connection_budget.fleet_connections,
        "training_availability_zones": list(capacity.placement.training_availability_zones),
        "training_subnet_ids": [s.id for s in training.subnets] if training and spec.placement.tracking_vpc == "training" else [],
        "required_tags": ["environment", "owner"],
    }


def policy_pack_config(config: dict[str, Any]) -> dict[str, Any]:
    """The file `pulumi preview --policy-pack-config` reads: every policy gets the same settings."""
    return {rule.name: {**config} for rule in RULES}


def stack_resources(spec: EnvironmentSpec, capacity: CapacityPlan | None = None) -> list[Res]:
    from ..aws.mocks import render_stack

    mocks, _, _, _ = render_stack(spec, capacity=capacity)
    return [Res(r.typ, r.name, dict(r.inputs)) for r in mocks.resources if r.custom]


def check(spec: EnvironmentSpec, resources: list[Res] | None = None) -> list[Violation]:
    """Every rule over the stack the environment renders to, or over `resources` read from a
    `pulumi preview --json` / `pulumi stack export` document of that environment."""
    capacity = make_plan(spec)
    return evaluate(stack_resources(spec, capacity) if resources is None else resources,
                    PolicyConfig.from_dict(policy_config(spec, capacity)))


class DocumentError(ValueError):
    """A stack document that is neither `pulumi preview --json` nor `pulumi stack export` output."""


def resources_from_document(path: Path) -> list[Res]:
    """Resources of a `pulumi preview --json` (steps[].newState) or `pulumi stack export`
    (deployment.resources[]) document: the stack as Pulumi would build it, checked offline. Values
    unknown until apply (in a preview: outputs of resources not created yet) become `UNKNOWN`, which
    the rules report or work around exactly as in CrossGuard."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DocumentError(f"{path}: cannot be read as JSON ({exc.__class__.__name__}); expected pulumi preview --json or pulumi stack export output") from None
    if isinstance(data, dict) and isinstance(data.get("steps"), list):
        states = [step.get("newState") for step in data["steps"] if step.get("newState")]
    elif isinstance(data, dict) and isinstance(data.get("deployment"), dict):
        states = data["deployment"].get("resources") or []
    else:
        raise DocumentError(f"{path}: has neither steps (pulumi preview --json) nor deployment.resources (pulumi stack export)")
    return [_resource(state) for state in states if state.get("custom", True) and "urn" in state and "type" in state]


def _known(value: Any) -> Any:
    """A document value with `UNKNOWN` for each computed-value placeholder."""
    if value == DOCUMENT_UNKNOWN:
        return UNKNOWN
    if isinstance(value, dict):
        return {key: _known(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_known(item) for item in value]
    return value


def _resource(state: dict[str, Any]) -> Res:
    """One resource state: its inputs (plus its id once it has one, which other resources refer to
    it by) and its property dependencies, which rules use to link resources while ids are unknown."""
    props = _known(dict(state.get("inputs") or {}))
    if state.get("id") and "id" not in props:
        props["id"] = _known(state["id"])
    deps = {key: tuple(urns or ()) for key, urns in (state.get("propertyDependencies") or {}).items()}
    return Res(state["type"], state["urn"].rsplit("::", 1)[-1], props, state["urn"], deps)


def report(spec: EnvironmentSpec, violations: list[Violation], console: Console) -> int:
    """Print the violations; 1 if any is mandatory, else 0."""
    mandatory = [v for v in violations if v.rule.mandatory]
    if violations:
        table = Table(title=f"Policy violations for {spec.name}", title_justify="left")
        for column in ("rule", "level", "resource", "violation", "reason", "remediation (environment file)"):
            table.add_column(column, overflow="fold")
        for v in sorted(violations, key=lambda v: (not v.rule.mandatory, v.rule.name, v.resource)):
            table.add_row(v.rule.name, v.rule.level, v.resource, v.message, v.rule.reason, v.rule.remediation)
        console.print(table)
    applied = [r for r in RULES if spec.production or not r.production_only]
    console.print(f"{spec.name}: {len(applied)} rules, {len(mandatory)} mandatory violation(s),"
                  f" {len(violations) - len(mandatory)} advisory")
    unverifiable = [v for v in mandatory if v.message.startswith(UNVERIFIABLE)]
    if unverifiable:
        console.print(f"{len(unverifiable)} of the mandatory violations could not be verified: inputs unknown until apply"
                      " (a first preview); they fail closed")
    return 1 if mandatory else 0


def write_config(spec: EnvironmentSpec, capacity: CapacityPlan, directory: Path = CONFIG_DIR) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{spec.name}.json"
    path.write_text(json.dumps(policy_pack_config(policy_config(spec, capacity)), indent=2, sort_keys=True) + "\n")
    return path
