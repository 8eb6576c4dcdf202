"""Shared test helpers: paths, the shipped environments, a minimal environment file, and stack
rendering under Pulumi's mocks. Tests import from here, never from conftest or another test file."""

from __future__ import annotations

from pathlib import Path

from infra import load_environment
from infra.aws.mocks import render_stack

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
