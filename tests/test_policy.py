"""The policy pack: each rule with a compliant and a violating input, the shipped stacks clean, broken
environment files caught through `mlflow-infra policy check`, and the CrossGuard adapters."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import re
import runpy

import pytest
from pulumi_policy import PolicyResource, PolicyResourceOptions, ResourceValidationArgs, StackValidationArgs

from helpers import ROOT, SHIPPED
from infra import load_environment, plan
from infra.cli import main
from infra.policy import rules as R
from infra.policy.check import policy_config, policy_pack_config, stack_resources
from infra.policy.rules import RULES, PolicyConfig, Res, evaluate

BY_NAME = {r.name: r for r in RULES}


def load(env):
    return load_environment(ROOT / "stacks" / f"{env}.yaml", ROOT / "stacks")


@pytest.fixture(scope="module")
def prod():
    spec = load("prod")
    return stack_resources(spec), PolicyConfig.from_dict(policy_config(spec, plan(spec)))


def find(resources, typ, suffix=""):
    return next(r for r in resources if r.type == typ and r.name.endswith(suffix))


def edit(resources, typ, suffix, change):
    """A deep copy of the stack with one resource's props changed by `change(props)`."""
    out = copy.deepcopy(resources)
    target = find(out, typ, suffix)
    change(target.props)
    return out


def set_params(props, **values):
    for p in props["parameters"]:
        if p["name"] in values:
            p["value"] = values[p["name"]]


def edit_containers(props, fn):
    defs = json.loads(props["containerDefinitions"])
    fn(defs)
    props["containerDefinitions"] = json.dumps(defs)


def edit_user_data(props, fn):
    props["userData"] = base64.b64encode(fn(base64.b64decode(props["userData"]).decode()).encode()).decode()


# rule -> (resource type, name suffix, mutation, fragment of the expected message, config changes)
CASES = {
    "rds-storage-encrypted": (R.RDS_INSTANCE, "-primary", lambda p: p.update(storageEncrypted=False), "storage_encrypted is not true", {}),
    "rds-not-public": (R.RDS_INSTANCE, "-primary", lambda p: p.update(publiclyAccessible=True), "publicly_accessible is true", {}),
    "rds-backup-retention": (R.RDS_INSTANCE, "-primary", lambda p: p.update(backupRetentionPeriod=3), "backup_retention_period 3 < 7 days", {}),
    "rds-deletion-protection": (R.RDS_INSTANCE, "-primary", lambda p: p.update(deletionProtection=False), "deletion_protection is not true", {}),
    "rds-multi-az": (R.RDS_INSTANCE, "-primary", lambda p: p.update(multiAz=False), "multi_az is not true", {}),
    "rds-performance-insights": (R.RDS_INSTANCE, "-primary", lambda p: p.update(performanceInsightsEnabled=False), "performance_insights_enabled is not true", {}),
    "rds-enhanced-monitoring": (R.RDS_INSTANCE, "-primary", lambda p: p.update(monitoringInterval=0), "monitoring_interval 0 (off)", {}),
    "rds-storage-type": (R.RDS_INSTANCE, "-primary", lambda p: p.update(storageType="gp2"), "storage_type 'gp2'", {}),
    "rds-custom-parameter-group": (R.RDS_INSTANCE, "-primary", lambda p: p.update(parameterGroupName="default.postgres17"), "parameter_group_name 'default.postgres17'", {}),
    "rds-no-burstable-production": (R.RDS_INSTANCE, "-primary", lambda p: p.update(instanceClass="db.t4g.large"), "instance_class db.t4g.large", {}),
    "pg-stat-statements": (R.PARAMETER_GROUP, "-primary", lambda p: set_params(p, shared_preload_libraries="auto_explain"), "lacks pg_stat_statements", {}),
    "pg-never-unsafe": (R.PARAMETER_GROUP, "-primary", lambda p: set_params(p, fsync="0"), "fsync is off", {}),
    "pg-synchronous-commit": (R.PARAMETER_GROUP, "-primary", lambda p: set_params(p, synchronous_commit="off"), "synchronous_commit off in production", {}),
    "pg-force-ssl": (R.PARAMETER_GROUP, "-primary", lambda p: set_params(p, **{"rds.force_ssl": "0"}), "rds.force_ssl is not 1", {}),
    "pg-replica-hot-standby-feedback": (R.PARAMETER_GROUP, "-replica", lambda p: set_params(p, hot_standby_feedback="0"), "lacks hot_standby_feedback=1", {}),
    "connection-budget": (R.PARAMETER_GROUP, "-primary", lambda p: set_params(p, max_connections="100"), "> max_connections 100", {}),
    "open-files-limit": (R.TASK_DEFINITION, "-api", lambda p: edit_containers(p, lambda d: d[1]["ulimits"][0].update(softLimit=1024)), "nofile", {}),
    "no-plain-credentials": (R.TASK_DEFINITION, "-api", lambda p: edit_containers(p, lambda d: d[1]["environment"].append({"name": "DB_PASSWORD", "value": "hunter2"})), "environment DB_PASSWORD", {}),
    "container-logging": (R.TASK_DEFINITION, "-api", lambda p: edit_containers(p, lambda d: d[0].pop("logConfiguration")), "container migrate: no logConfiguration", {}),
    "lb-internet-facing": (R.LOAD_BALANCER, "-api", lambda p: p.update(internal=False), "not the UI's", {}),
    "lb-deletion-protection": (R.LOAD_BALANCER, "-ui", lambda p: p.update(enableDeletionProtection=False), "enable_deletion_protection is not true", {}),
    "sg-no-open-database-or-servers": (R.SECURITY_GROUP, "-db", lambda p: p["ingress"].append({"protocol": "tcp", "fromPort": 5432, "toPort": 5432, "cidrBlocks": ["0.0.0.0/0"]}), "ingress from 0.0.0.0/0 covers port 5432", {}),
    "s3-closed-encrypted-versioned": (R.PUBLIC_ACCESS_BLOCK, "", lambda p: p.update(blockPublicPolicy=False), "public access not fully blocked", {}),
    "placement-training-zones": (R.ECS_SERVICE, "-api", lambda p: p["networkConfiguration"].update(subnets=["subnet-0999999999999999a"]), "API tasks in subnets outside the training zones", {}),
    "every-replica-read": (R.TASK_DEFINITION, "-ui", lambda p: edit_containers(p, lambda d: d[0].update(
        environment=[e for e in d[0]["environment"] if e["name"] != "DB_REPLICA_HOST"])), "1 replica(s), but UI services read 0: none", {}),
    "replicas-for-ui-reads": (R.RDS_INSTANCE, "-replica-0", lambda p: p.pop("replicateSourceDb"), "reads from a replica but the stack has none", {}),
    "tags-environment-owner": (R.RDS_INSTANCE, "-primary", lambda p: p["tags"].pop("owner"), "missing tags: owner", {}),
}
# rules whose inputs only exist in the EC2 variant, and the advisory access-log rule (violated by default)
EC2_CASES = {
    "imdsv2": (lambda p: p["metadataOptions"].update(httpTokens="optional"), "metadata_options.http_tokens is not required"),
    "ebs-encrypted": (lambda p: p["blockDeviceMappings"][0]["ebs"].update(encrypted="false"), "unencrypted volume /dev/xvda"),
    "open-files-limit": (lambda p: edit_user_data(p, lambda t: t.replace("nofile=65536:65536", "nofile=4096:4096")), "nofile [4096] < 65536"),
    "no-plain-credentials": (lambda p: edit_user_data(p, lambda t: t.replace("MLFLOW_INFRA_SECRETS=", "DB_PASSWORD=hunter2\nMLFLOW_INFRA_SECRETS=", 1)), "user data sets DB_PASSWORD"),
}


# rules over an Aurora cluster (prod with database.engine: aurora): resource type, name suffix, mutation, fragment
AURORA_CASES = {
    "rds-storage-encrypted": (R.RDS_CLUSTER, "-cluster", lambda p: p.update(storageEncrypted=False), "storage_encrypted is not true"),
    "rds-backup-retention": (R.RDS_CLUSTER, "-cluster", lambda p: p.update(backupRetentionPeriod=3), "backup_retention_period 3 < 7 days"),
    "rds-deletion-protection": (R.RDS_CLUSTER, "-cluster", lambda p: p.update(deletionProtection=False), "deletion_protection is not true"),
    "rds-not-public": (R.CLUSTER_INSTANCE, "-writer", lambda p: p.update(publiclyAccessible=True), "publicly_accessible is true"),
    "rds-performance-insights": (R.CLUSTER_INSTANCE, "-reader-0", lambda p: p.update(performanceInsightsEnabled=False),
                                 "performance_insights_enabled is not true"),
    "rds-no-burstable-production": (R.CLUSTER_INSTANCE, "-writer", lambda p: p.update(instanceClass="db.t4g.large"), "instance_class db.t4g.large"),
    "rds-custom-parameter-group": (R.RDS_CLUSTER, "-cluster", lambda p: p.update(dbClusterParameterGroupName="default.aurora-postgresql17"),
                                   "db_cluster_parameter_group_name 'default.aurora-postgresql17'"),
    "aurora-reader-in-second-zone": (R.CLUSTER_INSTANCE, "-reader-0", lambda p: p.update(availabilityZone="us-east-1a"),
                                     "2 instance(s) in 1 zone(s)"),
    "pg-force-ssl": (R.CLUSTER_PARAMETER_GROUP, "-cluster", lambda p: set_params(p, **{"rds.force_ssl": "0"}), "rds.force_ssl is not 1"),
    "pg-synchronous-commit": (R.CLUSTER_PARAMETER_GROUP, "-cluster", lambda p: set_params(p, synchronous_commit="off"),
                              "synchronous_commit off in production"),
    "connection-budget": (R.PARAMETER_GROUP, "-instances", lambda p: set_params(p, max_connections="100"), "> max_connections 100"),
    "placement-training-zones": (R.CLUSTER_INSTANCE, "-reader-0", lambda p: p.update(availabilityZone="us-east-1f"),
                                 "Aurora instance in us-east-1f, not a training zone"),
}


def test_every_rule_has_a_case():
    assert set(CASES) | set(EC2_CASES) | set(AURORA_CASES) | {"lb-access-logs"} == set(BY_NAME)


@pytest.fixture(scope="module")
def prod_aurora():
    from helpers import variant

    spec = variant("prod", **{"database.engine": "aurora"})
    return stack_resources(spec), PolicyConfig.from_dict(policy_config(spec, plan(spec)))


def test_the_aurora_prod_stack_passes_every_mandatory_rule(prod_aurora):
    resources, config = prod_aurora
    assert any(r.type == R.RDS_CLUSTER for r in resources) and not any(r.type == R.RDS_INSTANCE for r in resources)
    assert [v for v in evaluate(resources, config) if v.rule.mandatory] == []


@pytest.fixture(scope="module")
def prod_global():
    from helpers import GLOBAL_DR, variant

    spec = variant("prod", **{"database.engine": "aurora", **GLOBAL_DR})
    return stack_resources(spec), PolicyConfig.from_dict(policy_config(spec, plan(spec)))


def test_the_global_database_passes_every_mandatory_rule_with_its_secondary_in_the_second_region(prod_global):
    """The secondary's subnets and instance are outside the training zones and its one instance in
    one zone by design; everything else is held as on the primary."""
    resources, config = prod_global
    secondary = [r for r in resources if r.type == R.RDS_CLUSTER and R.is_global_secondary(r)]
    assert [r.name for r in secondary] == ["mlflow-prod-db-secondary"]
    assert [m.name for m in R.cluster_members(secondary[0], resources)] == ["mlflow-prod-db-secondary-0"]
    primary = next(r for r in resources if r.type == R.RDS_CLUSTER and not R.is_global_secondary(r))
    assert "mlflow-prod-db-secondary-0" not in [m.name for m in R.cluster_members(primary, resources)]
    assert [v for v in evaluate(resources, config) if v.rule.mandatory] == []


@pytest.mark.parametrize("name,mutate,fragment", [
    ("rds-storage-encrypted", lambda p: p.update(storageEncrypted=False), "storage_encrypted is not true"),
    ("rds-deletion-protection", lambda p: p.update(deletionProtection=False), "deletion_protection is not true"),
    ("rds-backup-retention", lambda p: p.update(backupRetentionPeriod=1), "backup_retention_period 1 < 7 days"),
    ("rds-custom-parameter-group", lambda p: p.update(dbClusterParameterGroupName="default.aurora-postgresql17"),
     "db_cluster_parameter_group_name 'default.aurora-postgresql17'"),
])
def test_the_secondary_cluster_is_held_to_the_primarys_rules(prod_global, name, mutate, fragment):
    resources, config = prod_global
    found = evaluate(edit(resources, R.RDS_CLUSTER, "-secondary", mutate), config, [BY_NAME[name]])
    assert any(fragment in v.message and v.resource == "mlflow-prod-db-secondary" for v in found), [(v.resource, v.message) for v in found]


def test_a_secondary_instance_in_a_training_zone_is_still_not_a_primary_member(prod_global):
    """Exempting the secondary does not exempt the primary's own readers: one moved out of the
    training zones is still flagged."""
    resources, config = prod_global
    found = evaluate(edit(resources, R.CLUSTER_INSTANCE, "-reader-0", lambda p: p.update(availabilityZone="us-east-1f")),
                     config, [BY_NAME["placement-training-zones"]])
    assert any("us-east-1f" in v.message for v in found)


@pytest.mark.parametrize("name", sorted(AURORA_CASES))
def test_aurora_rule_compliant_then_violated(prod_aurora, name):
    resources, config = prod_aurora
    rule = BY_NAME[name]
    assert evaluate(resources, config, [rule]) == [], f"{name} flags the compliant Aurora prod stack"
    typ, suffix, mutate, fragment = AURORA_CASES[name]
    found = evaluate(edit(resources, typ, suffix, mutate), config, [rule])
    assert any(fragment in v.message for v in found), [v.message for v in found]


@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_compliant_then_violated(prod, name):
    resources, config = prod
    rule = BY_NAME[name]
    assert evaluate(resources, config, [rule]) == [], f"{name} flags the compliant prod stack"
    typ, suffix, mutate, fragment, _ = CASES[name]
    found = evaluate(edit(resources, typ, suffix, mutate), config, [rule])
    assert len(found) >= 1 and all(v.rule is rule for v in found)
    assert any(fragment in v.message for v in found), [v.message for v in found]


@pytest.fixture(scope="module")
def prod_ec2():
    spec = load("prod")
    spec = spec.model_copy(update={"tracking": spec.tracking.model_copy(update={"compute": "ec2"})})
    return stack_resources(spec), PolicyConfig.from_dict(policy_config(spec, plan(spec)))


@pytest.mark.parametrize("name", sorted(EC2_CASES))
def test_ec2_rule_compliant_then_violated(prod_ec2, name):
    resources, config = prod_ec2
    rule = BY_NAME[name]
    assert evaluate(resources, config, [rule]) == []
    mutate, fragment = EC2_CASES[name]
    found = evaluate(edit(resources, R.LAUNCH_TEMPLATE, "-api", mutate), config, [rule])
    assert any(fragment in v.message for v in found), [v.message for v in found]


def test_connection_budget_reads_the_plans_figures_from_the_config(prod):
    resources, config = prod
    p = plan(load("prod"))
    assert config.fleet_connections == p.connection_budget.fleet_connections > 0
    assert config.connection_reserve == p.connection_budget.reserve
    rule = [BY_NAME["connection-budget"]]
    assert evaluate(resources, config, rule) == []
    over = dataclasses.replace(config, fleet_connections=p.connection_budget.max_connections)
    found = evaluate(resources, over, rule)
    assert [v.message for v in found] == [f"fleets open {p.connection_budget.max_connections} connections at maximum autoscale"
                                          f" + reserve {p.connection_budget.reserve} > max_connections {p.connection_budget.max_connections}"]


def test_access_logs_are_advisory_and_reported(prod):
    resources, config = prod
    found = evaluate(resources, config, [BY_NAME["lb-access-logs"]])
    assert len(found) == 2 and not found[0].rule.mandatory
    logged = edit(resources, R.LOAD_BALANCER, "-api", lambda p: p.update(accessLogs={"enabled": True, "bucket": "logs"}))
    assert len(evaluate(logged, config, [BY_NAME["lb-access-logs"]])) == 1


def test_production_only_rules_skip_other_tiers(prod):
    resources, config = prod
    broken = edit(resources, R.RDS_INSTANCE, "-primary", lambda p: p.update(multiAz=False))
    staging_like = PolicyConfig.from_dict({**config.__dict__, "production": False})
    assert [v.rule.name for v in evaluate(broken, config)].count("rds-multi-az") == 1
    assert "rds-multi-az" not in [v.rule.name for v in evaluate(broken, staging_like)]


@pytest.mark.parametrize("env", SHIPPED)
def test_shipped_stacks_pass_every_mandatory_rule(env, capsys):
    assert main(["policy", "check", env]) == 0
    assert "0 mandatory violation(s)" in capsys.readouterr().out
    spec = load(env)
    found = evaluate(stack_resources(spec), PolicyConfig.from_dict(policy_config(spec, plan(spec))))
    assert [v for v in found if v.rule.mandatory] == []


@pytest.mark.parametrize("env", SHIPPED)
def test_policy_config_files_match_the_plan(env):
    spec = load(env)
    written = json.loads((ROOT / "policies" / "config" / f"{env}.json").read_text())
    assert written == json.loads(json.dumps(policy_pack_config(policy_config(spec, plan(spec)))))


# Broken environment files: the families an environment file can break (the others are refused by
# validation first, e.g. relaxed durability or a burstable class in production, a missing owner tag).
BROKEN = [
    ("rds", "prod", "database:\n  multi_az: false\n  deletion_protection: false\n", {"rds-multi-az", "rds-deletion-protection"}),
    ("placement", "staging", "placement:\n  tracking_vpc: new\n  new_vpc: {cidr: 10.70.0.0/20, availability_zones: [us-east-1c, us-east-1d]}\n",
     {"placement-training-zones"}),
]


@pytest.mark.parametrize("family,base,extra,expected", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_environment_fails_policy_check(stack_dir, capsys, family, base, extra, expected):
    for name in ("base.yaml", f"{base}.yaml"):
        (stack_dir.dir / name).write_text((ROOT / "stacks" / name).read_text())
    path = stack_dir("broken.yaml", f"extends: {base}\n" + extra)
    code = main(["--stacks-dir", str(stack_dir.dir), "policy", "check", str(path)])
    out = capsys.readouterr().out
    assert code == 1
    for rule_name in expected:
        assert rule_name in out, out


def test_crossguard_adapters_report_through_pulumi_policy_args(prod):
    from infra.policy.pack import _resource_validation, _stack_validation, policies

    resources, config = prod
    built = {p.name: p for p in policies()}
    assert set(built) == set(BY_NAME)
    assert built["lb-access-logs"].enforcement_level.value == "advisory"
    assert built["rds-multi-az"].enforcement_level.value == "mandatory"

    primary = find(resources, R.RDS_INSTANCE, "-primary")
    reports = []
    args = ResourceValidationArgs(R.RDS_INSTANCE, {**primary.props, "publiclyAccessible": True}, "urn:x", primary.name,
                                  PolicyResourceOptions(False, [], False, [], None, []), None,
                                  config=policy_config(load("prod"), plan(load("prod"))))
    _resource_validation(BY_NAME["rds-not-public"])(args, lambda message, urn=None: reports.append(message))
    assert reports == ["publicly_accessible is true. Fix: nothing to set: the component keeps the database private"]

    reports.clear()
    options = PolicyResourceOptions(False, [], False, [], None, [])
    stack = [PolicyResource(r.type, r.props, f"urn:{r.name}", r.name, options, None, None, [], {})
             for r in edit(resources, R.PARAMETER_GROUP, "-primary", lambda p: set_params(p, max_connections="100"))]
    sargs = StackValidationArgs(stack, config=policy_config(load("prod"), plan(load("prod"))))
    _stack_validation(BY_NAME["connection-budget"])(sargs, lambda message, urn=None: reports.append((message, urn)))
    assert len(reports) == 1 and reports[0][1] == "urn:mlflow-prod-db-primary"


def test_policies_main_constructs_the_pack(monkeypatch):
    import pulumi_policy

    built = {}
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda name, policies, **kw: built.update(name=name, policies=policies))
    runpy.run_path(str(ROOT / "policies" / "__main__.py"), run_name="__main__")
    assert built["name"] == "mlflow-tracking" and len(built["policies"]) == len(RULES)


def preview_document(resources: list[Res], stack: str) -> dict:
    """Resources shaped as `pulumi preview --json` reports them (steps[].newState)."""
    return {"steps": [{"op": "create", "urn": f"urn:pulumi:{stack}::mlflow-tracking::{r.type}::{r.name}",
                       "newState": {"type": r.type, "custom": True, "inputs": r.props,
                                    "urn": f"urn:pulumi:{stack}::mlflow-tracking::{r.type}::{r.name}"}}
                      for r in resources]}


# One broken stack per rule family the environment file cannot express (validation refuses those
# first), checked through `mlflow-infra policy check prod --stack-json` like a CI preview would be.
FAMILY_CASES = ["pg-never-unsafe", "connection-budget", "no-plain-credentials", "lb-internet-facing",
                "sg-no-open-database-or-servers", "s3-closed-encrypted-versioned", "tags-environment-owner", "rds-storage-type"]


def test_family_cases_cover_every_family():
    families = {BY_NAME[n].family for n in FAMILY_CASES} | {f for f, *_ in BROKEN}
    assert families == {r.family for r in RULES}


@pytest.mark.parametrize("name", FAMILY_CASES)
def test_broken_stack_document_fails_policy_check(prod, tmp_path, capsys, name):
    resources, _ = prod
    typ, suffix, mutate, fragment, _ = CASES[name]
    path = tmp_path / "preview.json"
    path.write_text(json.dumps(preview_document(edit(resources, typ, suffix, mutate), "prod")))
    assert main(["policy", "check", "prod", "--stack-json", str(path)]) == 1
    out = capsys.readouterr().out
    assert name in out  # the table names the rule
    assert re.search(r"prod: \d+ rules, [1-9]\d* mandatory violation", out), out


def test_clean_stack_document_passes(prod, tmp_path, capsys):
    resources, _ = prod
    path = tmp_path / "preview.json"
    path.write_text(json.dumps(preview_document(resources, "prod")))
    assert main(["policy", "check", "prod", "--stack-json", str(path)]) == 0


def test_unreadable_stack_document_is_one_line(tmp_path, capsys):
    path = tmp_path / "x.json"
    path.write_text('{"resources": []}')
    assert main(["policy", "check", "prod", "--stack-json", str(path)]) == 2
    assert capsys.readouterr().err.strip() == (f"{path}: has neither steps (pulumi preview --json) nor"
                                               " deployment.resources (pulumi stack export)")
