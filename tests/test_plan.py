"""The shipped environments: layering, plan contents, JSON, the CLI, and the no-Pulumi rule for planning code."""

from __future__ import annotations

import ast
import json

import pytest

from helpers import ROOT, SHIPPED, minimal
from infra import load_environment, plan
from infra.cli import main
from infra.spec.layering import load_layered


@pytest.mark.parametrize("env", SHIPPED)
def test_shipped_environment_plans(env):
    p = plan(load_environment(env))
    assert p.environment == env and p.source_file == f"stacks/{env}.yaml"
    assert p.tags["environment"] == env and p.tags["owner"]
    assert p.cost.total_monthly_usd > 0
    assert p.warnings == ()


def test_headline_decisions_per_tier():
    dev, staging, prod = (plan(load_environment(e)) for e in SHIPPED)
    assert dev.database.instance.family == "burstable" and dev.database.replicas.count == 0
    assert not dev.database.multi_az.value and not dev.database.deletion_protection.value
    assert staging.database.instance.family != "burstable" and staging.database.replicas.count >= 1
    assert prod.database.instance.family == "memory_optimized"
    assert prod.database.multi_az.value and prod.database.deletion_protection.value
    assert prod.database.replicas.count >= 1 and prod.tracking.ui_reads_from_replica.value
    assert prod.tracking.api.min_count >= 2 and prod.tracking.ui.min_count >= 2
    assert prod.database.backup_retention_days.value == 14


def test_every_decision_carries_a_reason():
    p = plan(load_environment("prod"))
    d = p.database
    for decision in (d.instance, d.storage, d.replicas, d.multi_az, d.backup_retention_days, d.deletion_protection,
                     d.durability, p.connection_budget, p.tracking.api, p.tracking.ui, p.tracking.ui_reads_from_replica,
                     p.placement, p.placement.peering, p.placement.interface_endpoints, p.load):
        assert decision.reason.strip(), decision
    for param in d.primary_parameters + d.replica_parameters:
        assert param.reason.strip(), param.name
    for index in p.indexes.indexes:
        assert index.reason.strip()


def test_plan_reaches_server_settings():
    p = plan(load_environment("prod"))
    api, ui = p.tracking.api.server, p.tracking.ui.server
    assert api.command[:2] == ("mlflow", "server")
    assert api.command[api.command.index("--workers") + 1] == str(p.tracking.api.workers)
    assert api.environment["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"] == str(p.tracking.api.pool.pool_size)
    assert api.environment["MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"] == str(p.tracking.api.pool.max_overflow)
    assert "--expose-prometheus" in api.command
    assert api.nofile >= 65_536 and ui.nofile >= 65_536
    assert "MLFLOW_READ_REPLICA_BACKEND_STORE_URI" in ui.uri_environment
    assert "MLFLOW_READ_REPLICA_BACKEND_STORE_URI" not in api.uri_environment
    joined = " ".join(api.command + ui.command) + json.dumps(api.environment) + json.dumps(ui.environment)
    assert "password" not in joined.lower() and "postgresql://" not in joined


def test_index_migration_includes_runs_search_index():
    p = plan(load_environment("prod"))
    sql = [i.create_sql for i in p.indexes.indexes]
    assert any("ON runs USING btree (experiment_id, start_time DESC, run_uuid)" in s for s in sql)
    # long param and tag values (up to 8,000 characters) cannot go into a btree: hash only
    assert all("USING hash (value)" in i.create_sql for i in p.indexes.indexes if i.table in ("params", "tags"))
    assert all(s.startswith("CREATE INDEX CONCURRENTLY IF NOT EXISTS ") for s in sql)


def test_json_has_every_section_and_round_trips(capsys):
    assert main(["plan", "prod", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    for section in ("load", "database", "connection_budget", "tracking", "placement", "indexes", "cost", "coefficients"):
        assert section in data, section
    assert data["database"]["instance"]["instance_class"].startswith("db.r7g.")
    params = {p["name"]: p for p in data["database"]["primary_parameters"]}
    assert params["shared_buffers"]["apply_method"] == "pending-reboot"
    assert params["work_mem"]["apply_method"] == "immediate"
    assert {p["name"] for p in data["database"]["replica_parameters"]} >= {"hot_standby_feedback", "max_standby_streaming_delay"}
    assert data["cost"]["total_monthly_usd"] == pytest.approx(sum(l["monthly_usd"] for l in data["cost"]["lines"]), abs=0.05)


def test_plan_prints_readable_tables(capsys):
    assert main(["plan", "prod"]) == 0
    out = capsys.readouterr().out
    for heading in ("Load at peak", "Database", "Connection budget", "Tracking servers", "PostgreSQL parameters",
                    "Index migration", "Placement", "Monthly cost estimate"):
        assert heading in out, heading
    assert "shared_buffers" in out and "pending-reboot" in out


def test_validate_passes_for_shipped_stacks(capsys):
    assert main(["validate"]) == 0
    out = capsys.readouterr().out.splitlines()
    # local.yaml is an environment file too (the local topology's), though no Pulumi stack deploys it
    assert [line.split(":")[0] for line in out] == [f"ok  stacks/{e}.yaml" for e in sorted([*SHIPPED, "local"])]


def test_layering_merges_mappings_and_replaces_lists(stack_dir):
    stack_dir("team.yaml", minimal() + "tags:\n  team: vision\nalarms:\n  email: [a@example.com, b@example.com]\n")
    child = stack_dir("child.yaml", "extends: team\nalarms:\n  email: [c@example.com]\n  db_cpu_percent: 70\n")
    layered = load_layered(child)
    assert layered.files == [str(child), str(stack_dir.dir / "team.yaml"), str(stack_dir.dir / "base.yaml")]
    data = layered.data
    assert data["alarms"]["email"] == ["c@example.com"]                  # list replaced
    assert data["alarms"]["db_cpu_percent"] == 70                         # child wins
    assert data["alarms"]["replica_lag_seconds"] == 60                    # from base, merged
    assert data["tags"] == {"owner": "ml-platform", "cost-center": "ml-research", "team": "vision"}
    assert "extends" not in data
    assert layered.file_for(("alarms", "email", 0)) == str(child)
    assert layered.file_for(("tags", "team")) == str(stack_dir.dir / "team.yaml")
    assert layered.file_for(("database", "rds_proxy")) == str(stack_dir.dir / "base.yaml")


PLANNING_MODULES = sorted(str(p.relative_to(ROOT / "infra")) for stage in ("spec", "planning")
                          for p in (ROOT / "infra" / stage).glob("*.py"))


def test_every_planning_module_is_checked():
    assert "planning/plan.py" in PLANNING_MODULES and "spec/model.py" in PLANNING_MODULES and len(PLANNING_MODULES) >= 15


@pytest.mark.parametrize("module", PLANNING_MODULES)
def test_planning_code_has_no_pulumi_or_aws_imports(module):
    tree = ast.parse((ROOT / "infra" / module).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert not imported & {"pulumi", "pulumi_aws", "boto3", "botocore"}


def test_planning_and_the_cli_never_load_pulumi():
    import subprocess
    import sys

    code = ("import sys, infra, infra.cli; infra.plan(infra.load_environment('prod'));"
            " print(sorted(m for m in sys.modules if m.split('.')[0] in ('pulumi', 'pulumi_aws')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("env", [*SHIPPED, "local"])
def test_storage_alarm_follows_autoscaling(env):
    """RDS autoscaling keeps 10% of the current allocation free; the alarm fires under half of that of
    the first allocation, so a working autoscaling never trips it (docs/aws-constraints.md)."""
    p = plan(load_environment(env))
    storage = next(a for a in p.alarms if a.key == "db-storage")
    s = p.database.storage
    assert s.max_allocated_gib > s.allocated_gib
    assert storage.threshold <= s.allocated_gib * 1024**3 * 0.05
    assert storage.threshold == round(s.allocated_gib * 1024**3 * min(5, p_alarm_percent(env)) / 100, 3)


def p_alarm_percent(env):
    return load_environment(env).alarms.db_free_storage_percent


def test_plan_owns_the_alarms_the_cost_counts():
    p = plan(load_environment("prod"))
    replicas = p.database.replicas.count
    assert len(p.alarms) == 10 + replicas + max(0, replicas - 1) + (1 if replicas else 0)
    line = next(line for line in p.cost.lines if line.component == "monitoring and secrets")
    assert line.detail.startswith(f"{len(p.alarms)} alarms")
    assert len({a.key for a in p.alarms}) == len(p.alarms)
