from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ["dev", "staging", "prod"]


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch):
    """Environment files are addressed as stacks/<env>.yaml, as users type them."""
    monkeypatch.chdir(ROOT)


@pytest.fixture
def stack_dir(tmp_path):
    """A scratch stacks/ directory with a copy of base.yaml; write(name, text) adds a file."""
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    (stacks / "base.yaml").write_text((ROOT / "stacks" / "base.yaml").read_text())

    def write(name: str, text: str) -> Path:
        path = stacks / name
        path.write_text(textwrap.dedent(text))
        return path

    write.dir = stacks
    return write


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
