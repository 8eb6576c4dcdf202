"""TrackingParameterGroup: one RDS parameter group holding a planned PostgreSQL parameter set, each
parameter with its apply method (`pending-reboot` for static ones, `immediate` for dynamic ones).

TrackingDatabase declares its groups with the same `parameter_group()` function directly under
itself (so the groups of stacks deployed before this component existed keep their URNs); use the
component for a group of your own, for example for an instance you manage elsewhere."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws


@dataclass(frozen=True)
class ParameterSetting:
    """One parameter as RDS takes it: the value in PostgreSQL's base unit and its apply method."""

    name: str
    value: str
    apply_method: str = "immediate"  # or "pending-reboot": static parameters take effect at the next reboot

    @classmethod
    def from_plan(cls, parameters) -> list["ParameterSetting"]:
        """The planner's parameters (`plan.database.primary_parameters`, `primary_parameters(inputs)`) as settings."""
        return [cls(p.name, p.value, p.apply_method) for p in parameters]


@dataclass
class ParameterGroupArgs:
    family: str
    """The engine family, such as `postgres17` or `aurora-postgresql17` (the major version of the instances that use it)."""
    parameters: list[ParameterSetting] = field(default_factory=list)
    """The settings; `infra.planning.parameters.primary_parameters` computes a tuned set."""
    description: str = "tuned by mlflow-infra"
    tags: dict[str, str] = field(default_factory=dict)


APPLY_METHODS = ("immediate", "pending-reboot")


FAMILY_PREFIXES = ("postgres", "aurora-postgresql")


def check_parameter_group(args: ParameterGroupArgs) -> None:
    """A PostgreSQL family (RDS `postgres17`, Aurora `aurora-postgresql17`) and known apply methods."""
    major = next((args.family[len(prefix):] for prefix in FAMILY_PREFIXES if args.family.startswith(prefix)), "")
    if not major.isdigit():
        raise ValueError(f"ParameterGroupArgs.family: {args.family!r} is not allowed; expected postgres<major> or"
                         " aurora-postgresql<major>, such as postgres17")
    for p in args.parameters:
        if p.apply_method not in APPLY_METHODS:
            raise ValueError(f"ParameterGroupArgs.parameters: {p.name} apply_method {p.apply_method!r} is not allowed;"
                             f" expected one of {', '.join(APPLY_METHODS)}")


def settings(args: ParameterGroupArgs) -> list[dict[str, str]]:
    return [{"name": p.name, "value": p.value, "apply_method": p.apply_method} for p in args.parameters]


def parameter_group(name: str, args: ParameterGroupArgs, opts: pulumi.ResourceOptions) -> aws.rds.ParameterGroup:
    """The RDS parameter group itself; inputs are checked first, so a bad one provisions nothing."""
    check_parameter_group(args)
    return aws.rds.ParameterGroup(
        name, family=args.family, description=args.description,
        parameters=settings(args), tags=args.tags, opts=opts)


class TrackingParameterGroup(pulumi.ComponentResource):
    """Outputs: `name` (what an instance's parameter_group_name takes)."""

    name: pulumi.Output[str]

    def __init__(self, name: str, args: ParameterGroupArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-infra:database:TrackingParameterGroup", name, None, opts)
        self.group = parameter_group(name, args, pulumi.ResourceOptions(parent=self))
        self.name = self.group.name
        self.register_outputs({"name": self.name})
