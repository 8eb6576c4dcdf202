"""The Pulumi program (stacks/__main__.py): validates before declaring anything, then builds MlflowTracking."""

from __future__ import annotations

import runpy

import pulumi
import pytest

from helpers import ROOT, SHIPPED
from infra.aws.mocks import RecordingMocks

OUTPUTS = ["tracking_uri", "ui_url", "primary_endpoint", "replica_endpoints", "client_security_group_id",
           "artifact_bucket", "image_repository", "plan_summary", "monthly_cost_usd"]


def run_program(stack: str, monkeypatch, config: dict | None = None) -> tuple[dict, RecordingMocks]:
    exports: dict = {}
    monkeypatch.setattr(pulumi, "export", lambda name, value: exports.__setitem__(name, value))
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="mlflow-tracking", stack=stack, preview=False)
    pulumi.runtime.set_all_config(config or {})

    @pulumi.runtime.test
    def program():
        runpy.run_path(str(ROOT / "stacks" / "__main__.py"), run_name="__main__")
        return pulumi.Output.all(*[exports[k] for k in OUTPUTS]).apply(
            lambda values: exports.update({f"resolved:{k}": v for k, v in zip(OUTPUTS, values)}))

    program()
    return exports, mocks


@pytest.mark.parametrize("stack", SHIPPED)
def test_program_exports_every_output(stack, monkeypatch):
    exports, mocks = run_program(stack, monkeypatch, {"aws:region": "us-east-1"})
    assert exports["resolved:tracking_uri"].startswith(f"http://mlflow-{stack}-svc-api")
    assert exports["resolved:plan_summary"]["environment"] == stack
    assert exports["resolved:monthly_cost_usd"] > 0
    assert mocks.of_type("aws:rds/instance:Instance")


def test_unknown_stack_is_a_one_line_error(monkeypatch):
    with pytest.raises(pulumi.RunError) as exc:
        run_program("qa", monkeypatch)
    assert str(exc.value) == "stacks/qa.yaml: file not found"  # relative to the working directory


def test_region_config_must_match_the_environment_file(monkeypatch):
    with pytest.raises(pulumi.RunError) as exc:
        run_program("prod", monkeypatch, {"aws:region": "eu-west-1"})
    assert str(exc.value) == ("Pulumi.prod.yaml: aws:region: 'eu-west-1' is not allowed; expected 'us-east-1',"
                              " the region of stacks/prod.yaml")
