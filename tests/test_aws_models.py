"""Rendered API inputs checked against botocore's AWS service models: shapes, types, required
members, ranges and enums (ECS RegisterTaskDefinition, RDS CreateDBInstance, ModifyDBParameterGroup)."""

from __future__ import annotations

import dataclasses
import subprocess

import pytest

from helpers import ROOT, SHIPPED, render, validate, wire
from infra import load_environment, plan
from infra.aws.instance import user_data
from infra.aws.rendering import Runtime, container_definitions

RUNTIME = Runtime(image="123456789012.dkr.ecr.us-east-1.amazonaws.com/mlflow:3.17.2", region="us-east-1",
                  db_host="db.abc.us-east-1.rds.amazonaws.com", db_port=5432,
                  replica_host="replica.abc.us-east-1.rds.amazonaws.com",
                  secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-1a2b3c",
                  log_group="/mlflow/prod", artifacts_destination="s3://mlflow-artifacts/artifacts",
                  load_balancer_host="internal-mlflow-api-123.us-east-1.elb.amazonaws.com")


def tier_of(p, role):
    return {t.role: t for t in p.tracking.tiers}[role]


def plan_for(env):
    return plan(load_environment(ROOT / "stacks" / f"{env}.yaml", ROOT / "stacks"))


@pytest.mark.parametrize("env", SHIPPED)
@pytest.mark.parametrize("role", ["api", "ui"])
def test_task_definition_matches_ecs_model(env, role):
    tier = tier_of(plan_for(env), role)
    validate("ecs", "RegisterTaskDefinition", {
        "family": f"mlflow-{env}-{role}", "cpu": str(tier.task_cpu_units), "memory": str(tier.task_memory_mib), "networkMode": "awsvpc",
        "requiresCompatibilities": ["FARGATE"], "runtimePlatform": {"cpuArchitecture": "ARM64", "operatingSystemFamily": "LINUX"},
        "executionRoleArn": "arn:aws:iam::123456789012:role/exec", "taskRoleArn": "arn:aws:iam::123456789012:role/task",
        "containerDefinitions": container_definitions(tier, RUNTIME),
    })


def test_enum_check_catches_a_bad_value():
    p = plan_for("prod")
    defs = container_definitions(p.tracking.api, RUNTIME)
    defs[1]["ulimits"][0]["name"] = "openfiles"
    with pytest.raises(AssertionError):
        validate("ecs", "RegisterTaskDefinition", {"family": "x", "containerDefinitions": defs})


PULUMI_TO_RDS = {
    "instanceClass": "DBInstanceClass", "engine": "Engine", "engineVersion": "EngineVersion",
    "allocatedStorage": "AllocatedStorage", "maxAllocatedStorage": "MaxAllocatedStorage", "storageType": "StorageType",
    "iops": "Iops", "storageThroughput": "StorageThroughput", "multiAz": "MultiAZ", "storageEncrypted": "StorageEncrypted",
    "kmsKeyId": "KmsKeyId", "publiclyAccessible": "PubliclyAccessible", "password": "MasterUserPassword",
    "username": "MasterUsername", "dbName": "DBName",
    "backupRetentionPeriod": "BackupRetentionPeriod", "deletionProtection": "DeletionProtection",
    "performanceInsightsEnabled": "EnablePerformanceInsights", "performanceInsightsKmsKeyId": "PerformanceInsightsKMSKeyId",
    "performanceInsightsRetentionPeriod": "PerformanceInsightsRetentionPeriod", "monitoringInterval": "MonitoringInterval",
    "monitoringRoleArn": "MonitoringRoleArn", "enabledCloudwatchLogsExports": "EnableCloudwatchLogsExports",
    "parameterGroupName": "DBParameterGroupName", "dbSubnetGroupName": "DBSubnetGroupName",
    "vpcSecurityGroupIds": "VpcSecurityGroupIds", "copyTagsToSnapshot": "CopyTagsToSnapshot",
    "autoMinorVersionUpgrade": "AutoMinorVersionUpgrade", "availabilityZone": "AvailabilityZone",
    "backupWindow": "PreferredBackupWindow", "maintenanceWindow": "PreferredMaintenanceWindow",
}
NOT_IN_CREATE = {"skipFinalSnapshot", "finalSnapshotIdentifier", "applyImmediately", "tags", "replicateSourceDb"}


@pytest.fixture(scope="module", params=SHIPPED)
def rendered(request):
    mocks, component, urns, outputs = render(request.param)
    return request.param, mocks


def test_primary_matches_rds_create_db_instance(rendered):
    env, mocks = rendered
    inputs = wire(mocks.one("aws:rds/instance:Instance", "-primary").inputs)
    unmapped = set(inputs) - set(PULUMI_TO_RDS) - NOT_IN_CREATE
    assert not unmapped, f"map these to CreateDBInstance: {unmapped}"
    params = {PULUMI_TO_RDS[k]: v for k, v in inputs.items() if k in PULUMI_TO_RDS}
    params["DBInstanceIdentifier"] = f"mlflow-{env}"
    params["Tags"] = [{"Key": k, "Value": v} for k, v in inputs["tags"].items()]
    validate("rds", "CreateDBInstance", params)


def test_replicas_match_rds_create_db_instance_read_replica(rendered):
    env, mocks = rendered
    for replica in (r for r in mocks.of_type("aws:rds/instance:Instance") if "-replica-" in r.name):
        i = wire(replica.inputs)
        validate("rds", "CreateDBInstanceReadReplica", {
            "DBInstanceIdentifier": replica.name, "SourceDBInstanceIdentifier": i["replicateSourceDb"],
            "DBInstanceClass": i["instanceClass"], "AvailabilityZone": i["availabilityZone"],
            "DBParameterGroupName": i["parameterGroupName"], "PubliclyAccessible": i["publiclyAccessible"],
            "StorageType": i["storageType"], "MaxAllocatedStorage": i["maxAllocatedStorage"],
            "EnablePerformanceInsights": i["performanceInsightsEnabled"], "MonitoringInterval": i["monitoringInterval"],
            "DeletionProtection": i["deletionProtection"],
        })
        # RDS refuses KmsKeyId for a replica in the source's region (it always uses the source's key)
        assert "kmsKeyId" not in replica.inputs and "dbSubnetGroupName" not in replica.inputs, replica.name


MAX_PARAMETERS_PER_CALL = 20  # ModifyDBParameterGroup's documented limit


@pytest.mark.parametrize("env", SHIPPED)
def test_parameter_groups_match_modify_db_parameter_group(env):
    p = plan_for(env)
    for group in (p.database.primary_parameters, p.database.replica_parameters):
        params = [{"ParameterName": x.name, "ParameterValue": x.value, "ApplyMethod": x.apply_method} for x in group]
        for start in range(0, len(params), MAX_PARAMETERS_PER_CALL):
            validate("rds", "ModifyDBParameterGroup", {"DBParameterGroupName": f"mlflow-{env}",
                                                       "Parameters": params[start:start + MAX_PARAMETERS_PER_CALL]})


@pytest.mark.parametrize("role", ["api", "ui"])
def test_ec2_user_data_is_valid_bash(tmp_path, role):
    spec = load_environment(ROOT / "stacks" / "prod.yaml", ROOT / "stacks")
    p = plan(spec.model_copy(update={"tracking": spec.tracking.model_copy(update={"compute": "ec2"})}))
    tier = tier_of(p, role)
    script = user_data(container_definitions(tier, RUNTIME), role=role, environment=p.environment, region=RUNTIME.region)
    path = tmp_path / "user-data.sh"
    path.write_text(script)
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # the ECS image, its limits and command: no package index, no pip
    assert f"nofile={tier.server.nofile}:{tier.server.nofile}" in script
    assert RUNTIME.image in script and "pip install" not in script
    assert ("RemainAfterExit=yes" in script) == tier.runs_migrations, "the migrate step runs with the API only"
    assert "DB_PASSWORD=" not in script and "MLFLOW_INFRA_SECRETS=" in script


# ---------------------------------------------------------------------------------------------
# tracking.auth basic: the auth secret's keys injected, in both renderings

AUTH_SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:mlflow-prod-svc-auth-AbCdEf"
AUTH_RUNTIME = dataclasses.replace(RUNTIME, auth_secret_arn=AUTH_SECRET_ARN)


def plan_with_auth(env, compute="ecs"):
    spec = load_environment(ROOT / "stacks" / f"{env}.yaml", ROOT / "stacks")
    return plan(spec.model_copy(update={"tracking": spec.tracking.model_copy(update={"auth": "basic", "compute": compute})}))


@pytest.mark.parametrize("role", ["api", "ui"])
def test_task_definition_with_basic_auth_matches_ecs_model(role):
    tier = tier_of(plan_with_auth("prod"), role)
    definitions = container_definitions(tier, AUTH_RUNTIME)
    validate("ecs", "RegisterTaskDefinition", {"family": f"mlflow-prod-{role}", "containerDefinitions": definitions})
    server = {c["name"]: c for c in definitions}["mlflow"]
    assert [s for s in server["secrets"] if s["valueFrom"].startswith(AUTH_SECRET_ARN)] == [
        {"name": "MLFLOW_FLASK_SERVER_SECRET_KEY", "valueFrom": f"{AUTH_SECRET_ARN}:secret_key::"},
        {"name": "AUTH_ADMIN_USERNAME", "valueFrom": f"{AUTH_SECRET_ARN}:admin_username::"},
        {"name": "AUTH_ADMIN_PASSWORD", "valueFrom": f"{AUTH_SECRET_ARN}:admin_password::"}]


def test_a_basic_auth_tier_without_its_secret_is_refused():
    with pytest.raises(ValueError, match="^the api tier runs basic-auth .* Runtime.auth_secret_arn is not set"):
        container_definitions(tier_of(plan_with_auth("prod"), "api"), RUNTIME)
    assert container_definitions(tier_of(plan_for("prod"), "api"), AUTH_RUNTIME) == container_definitions(
        tier_of(plan_for("prod"), "api"), RUNTIME), "without auth the secret is not used"


@pytest.mark.parametrize("role", ["api", "ui"])
def test_ec2_user_data_with_basic_auth_is_valid_bash(tmp_path, role):
    p = plan_with_auth("prod", compute="ec2")
    script = user_data(container_definitions(tier_of(p, role), AUTH_RUNTIME), role=role, environment=p.environment,
                       region=RUNTIME.region)
    path = tmp_path / "user-data.sh"
    path.write_text(script)
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # the auth secret's keys as references the entrypoint resolves with the instance role, never values
    assert f'"valueFrom": "{AUTH_SECRET_ARN}:admin_password::"' in script or f'"valueFrom":"{AUTH_SECRET_ARN}:admin_password::"' in script
    assert "MLFLOW_INFRA_AUTH=basic" in script
    assert "AUTH_ADMIN_PASSWORD=" not in script and "MLFLOW_FLASK_SERVER_SECRET_KEY=" not in script
