"""The Pulumi program validates and plans the stack's environment file before declaring anything."""

from __future__ import annotations

import runpy

import pulumi
import pytest

from conftest import ROOT


class NoResources(pulumi.runtime.Mocks):
    def new_resource(self, args):
        raise AssertionError(f"no resource expected yet, got {args.typ}")

    def call(self, args):
        return {}


def run_program(stack: str, monkeypatch) -> dict:
    exports: dict = {}
    monkeypatch.setattr(pulumi, "export", lambda name, value: exports.__setitem__(name, value))
    pulumi.runtime.set_mocks(NoResources(), project="mlflow-tracking", stack=stack, preview=False)
    runpy.run_path(str(ROOT / "stacks" / "__main__.py"), run_name="__main__")
    return exports


def test_program_exports_the_plan_of_its_stack(monkeypatch):
    exports = run_program("prod", monkeypatch)
    assert exports["plan"]["environment"] == "prod"
    assert exports["plan"]["database"]["instance"]["instance_class"].startswith("db.r7g.")
    assert exports["monthly_cost_usd"] > 0


def test_unknown_stack_is_a_one_line_error(monkeypatch):
    with pytest.raises(pulumi.RunError) as exc:
        run_program("qa", monkeypatch)
    assert str(exc.value) == "stacks/qa.yaml: file not found"  # relative to the working directory
