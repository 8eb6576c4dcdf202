"""Shared test helpers: paths, the shipped environments, a minimal environment file, and stack
rendering under Pulumi's mocks. Tests import from here, never from conftest or another test file."""

from __future__ import annotations

from pathlib import Path

import botocore.session
import pulumi
from botocore.validate import ParamValidator

from infra import load_environment
from infra.aws.mocks import RecordingMocks, render_stack

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ["dev", "staging", "prod"]


def environment(env: str):
    """A shipped environment file, loaded and validated."""
    return load_environment(ROOT / "stacks" / f"{env}.yaml", ROOT / "stacks")


def variant(env: str, **changes):
    """The shipped environment with some dotted keys changed (`**{"database.read_replicas": 3}`),
    re-validated like a file would be."""
    from infra.spec.model import EnvironmentSpec

    spec = environment(env)
    data = spec.model_dump()
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return EnvironmentSpec.model_validate({**data, "source_file": spec.source_file})


def render(env: str, spec=None):
    """Build MlflowTracking for `env` under mocks; return (mocks, component, urns, outputs)."""
    return render_stack(spec or environment(env))


MINIMAL = """
extends: base
tier: {tier}
workload:
  concurrent_training_jobs: {jobs}
  logging_calls_per_job_per_minute: {calls}
  metrics_per_call: {metrics}
  params_per_run: 20
  tags_per_run: 5
  runs_per_day: {runs}
  retention_days: {retention}
  concurrent_ui_users: {users}
placement:
  tracking_vpc: new
  new_vpc:
    cidr: 10.60.0.0/20
    availability_zones: [us-east-1a, us-east-1b]
"""


def minimal(tier="staging", jobs=20, calls=10, metrics=10, runs=500, retention=30, users=5) -> str:
    return MINIMAL.format(tier=tier, jobs=jobs, calls=calls, metrics=metrics, runs=runs, retention=retention, users=users)


def build_alone(component):
    """Run `component()` under Pulumi's mocks; return the recorded resources."""
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="alone", stack="test", preview=False)

    @pulumi.runtime.test
    def run():
        component()

    run()
    return mocks


# ---------------------------------------------------------------------------------------------
# API inputs against botocore's service models

SESSION = botocore.session.get_session()


def enum_errors(value, shape, path="") -> list[str]:
    """botocore's validator checks types and ranges, not enums: walk the shape for those."""
    errors = []
    if shape.type_name == "structure" and isinstance(value, dict):
        for key, item in value.items():
            if key in shape.members:
                errors += enum_errors(item, shape.members[key], f"{path}.{key}")
    elif shape.type_name == "list" and isinstance(value, list):
        for i, item in enumerate(value):
            errors += enum_errors(item, shape.member, f"{path}[{i}]")
    elif shape.type_name == "string" and shape.enum and value not in shape.enum:
        errors.append(f"{path}: {value!r} not in {shape.enum}")
    return errors


def validate(service: str, operation: str, params: dict) -> None:
    shape = SESSION.get_service_model(service).operation_model(operation).input_shape
    report = ParamValidator().validate(params, shape)
    assert not report.has_errors(), report.generate_report()
    assert not enum_errors(params, shape)


SECRET_SIG = "4dabf18193072939515e22adb298388d"  # pulumi.runtime.rpc._special_sig_key's secret marker


def wire(value):
    """Pulumi's RPC carries numbers as doubles; the provider sends integral ones as integers."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [wire(v) for v in value]
    if isinstance(value, dict):
        if SECRET_SIG in value:  # a Pulumi secret, as the mocks see it: the provider gets its value
            return wire(value["value"])
        return {k: wire(v) for k, v in value.items()}
    return value


# prod's database as an Aurora Global Database: the secondary in us-west-2, in a VPC there
GLOBAL_DR = {"database.disaster_recovery": "global", "database.secondary_region": "us-west-2",
             "database.secondary_placement": {
                 "vpc_id": "vpc-0b2c3d4e5f6a7b8c9", "cidr": "10.60.0.0/16",
                 "subnets": [{"id": "subnet-0aa11bb22cc33dd44", "availability_zone": "us-west-2a"},
                             {"id": "subnet-0ee55ff66aa77bb88", "availability_zone": "us-west-2b"}]}}
