"""The AWS components read the plan and decide nothing: no arithmetic, no planning constants; and
each child component builds on its own from plain Args, as terraform-aws-rds's submodules do."""

from __future__ import annotations

import ast

import pytest

from helpers import ROOT, build_alone as build
from infra.aws import (
    ArtifactsArgs,
    ArtifactStore,
    DatabaseArgs,
    MonitoringArgs,
    NetworkArgs,
    ParameterGroupArgs,
    ParameterSetting,
    ProxySettings,
    TrackingDatabase,
    TrackingMonitoring,
    TrackingNetwork,
    TrackingParameterGroup,
)
from infra.planning.alarms import AlarmPlan

COMPONENT_MODULES = sorted(p for p in (ROOT / "infra" / "aws").glob("*.py") if p.name not in ("__init__.py", "mocks.py"))
ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)


def test_every_component_module_is_checked():
    names = {p.name for p in COMPONENT_MODULES}
    assert {"database.py", "service.py", "monitoring.py", "network.py", "tracking.py", "rendering.py"} <= names


@pytest.mark.parametrize("path", COMPONENT_MODULES, ids=lambda p: p.name)
def test_components_do_no_arithmetic_and_import_no_planning_constant(path):
    tree = ast.parse(path.read_text())
    arithmetic = [f"line {n.lineno}" for n in ast.walk(tree)
                  if (isinstance(n, ast.BinOp) and isinstance(n.op, ARITHMETIC)) or
                  (isinstance(n, ast.AugAssign) and isinstance(n.op, ARITHMETIC))]
    assert not arithmetic, f"{path.name}: arithmetic belongs in infra/planning ({', '.join(arithmetic)})"
    constants = [f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and "planning" in (n.module or "")
                 for a in n.names if a.name.isupper()]
    assert not constants, f"{path.name}: imports planning constants {constants}; read the figure from the plan instead"


def test_database_alone_in_an_existing_vpc():
    mocks = build(lambda: TrackingDatabase("db", DatabaseArgs(
        subnet_ids=["subnet-0aaa1111", "subnet-0bbb2222"], security_group_ids=["sg-0123abcd"],
        instance_class="db.r7g.large", engine_version="17.6", multi_az=False, primary_zone="us-east-1a",
        replica_zones=["us-east-1b", "us-east-1c"],
        primary_parameters=[ParameterSetting("max_connections", "400", "pending-reboot"), ParameterSetting("work_mem", "8192")],
        proxy=ProxySettings(max_connections_percent=80), proxy_security_group_ids=["sg-0456cdef"])))
    instances = mocks.of_type("aws:rds/instance:Instance")
    primary = [i for i in instances if not i.inputs.get("replicateSourceDb")]
    replicas = [i for i in instances if i.inputs.get("replicateSourceDb")]
    assert len(primary) == 1 and primary[0].inputs["availabilityZone"] == "us-east-1a"
    assert {r.name: r.inputs["availabilityZone"] for r in replicas} == {"db-replica-0": "us-east-1b", "db-replica-1": "us-east-1c"}
    groups = {g.name: g.inputs for g in mocks.of_type("aws:rds/parameterGroup:ParameterGroup")}
    assert groups["db-primary"]["family"] == "postgres17"
    # no replica set given: the replicas get the primary's
    assert groups["db-replica"]["parameters"] == groups["db-primary"]["parameters"]
    assert {"name": "max_connections", "value": "400", "applyMethod": "pending-reboot"} in groups["db-primary"]["parameters"]
    pool = mocks.one("aws:rds/proxyDefaultTargetGroup:ProxyDefaultTargetGroup").inputs["connectionPoolConfig"]
    assert pool == {"maxConnectionsPercent": 80, "maxIdleConnectionsPercent": 50}
    assert primary[0].inputs["deletionProtection"] is True and primary[0].inputs["storageEncrypted"] is True


def test_database_single_az_needs_a_zone():
    with pytest.raises(ValueError, match="primary_zone"):
        build(lambda: TrackingDatabase("db", DatabaseArgs(subnet_ids=["subnet-0aaa1111"], security_group_ids=[], multi_az=False)))


def test_parameter_group_alone_and_its_checks():
    mocks = build(lambda: TrackingParameterGroup("pg", ParameterGroupArgs("postgres17", [ParameterSetting("jit", "0")])))
    group = mocks.one("aws:rds/parameterGroup:ParameterGroup", "pg")
    assert group.inputs["parameters"] == [{"name": "jit", "value": "0", "applyMethod": "immediate"}]
    with pytest.raises(ValueError, match="family"):
        build(lambda: TrackingParameterGroup("pg", ParameterGroupArgs("mysql8.0")))
    with pytest.raises(ValueError, match="apply_method 'later'"):
        build(lambda: TrackingParameterGroup("pg", ParameterGroupArgs("postgres17", [ParameterSetting("jit", "0", "later")])))


def test_network_alone_checks_its_subnets_before_creating_anything():
    with pytest.raises(ValueError, match="private_subnet_cidrs: 1 given; expected one per zone \\(2\\)"):
        build(lambda: TrackingNetwork("net", NetworkArgs(region="us-east-1", availability_zones=["us-east-1a", "us-east-1b"],
                                                        new_vpc_cidr="10.70.0.0/16", private_subnet_cidrs=["10.70.0.0/20"],
                                                        nat_gateway=False)))
    mocks = build(lambda: TrackingNetwork("net", NetworkArgs(
        region="us-east-1", availability_zones=["us-east-1a", "us-east-1b"], new_vpc_cidr="10.70.0.0/16",
        private_subnet_cidrs=["10.70.0.0/20", "10.70.16.0/20"], nat_gateway=False,
        interface_endpoint_services=["logs"], tracking_port=8080)))
    subnets = sorted(s.inputs["cidrBlock"] for s in mocks.of_type("aws:ec2/subnet:Subnet"))
    assert subnets == ["10.70.0.0/20", "10.70.16.0/20"]
    endpoints = [e.inputs["serviceName"] for e in mocks.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")]
    assert sorted(endpoints) == ["com.amazonaws.us-east-1.logs", "com.amazonaws.us-east-1.s3"]
    tasks = mocks.one("aws:ec2/securityGroup:SecurityGroup", "net-tasks").inputs
    assert tasks["ingress"][0]["fromPort"] == 8080


def test_artifacts_alone():
    mocks = build(lambda: ArtifactStore("art", ArtifactsArgs(expire_after_days=90, noncurrent_version_expire_days=7)))
    rule = mocks.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs["rules"][0]
    assert rule["expiration"]["days"] == 90 and rule["noncurrentVersionExpiration"]["noncurrentDays"] == 7


def test_monitoring_alone_loops_over_the_alarms_it_is_given():
    alarm = AlarmPlan("db-cpu", "primary", "AWS/RDS", "CPUUtilization", "GreaterThanThreshold", 75, "Average", None,
                      60, 5, 3, "notBreaching", "cpu")
    mocks = build(lambda: TrackingMonitoring("mon", MonitoringArgs(alarms=[alarm], region="us-east-1",
                                                                   dimensions={"primary": {"DBInstanceIdentifier": "db-1"}})))
    created = mocks.one("aws:cloudwatch/metricAlarm:MetricAlarm").inputs
    assert created["threshold"] == 75 and created["dimensions"] == {"DBInstanceIdentifier": "db-1"}
    assert not mocks.of_type("aws:cloudwatch/dashboard:Dashboard"), "no load balancers given: no dashboard"
    with pytest.raises(ValueError, match="no dimensions for alarm targets primary"):
        build(lambda: TrackingMonitoring("mon", MonitoringArgs(alarms=[alarm], region="us-east-1", dimensions={})))


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_alarm_topic_key_lets_cloudwatch_publish(env):
    """An AWS managed key (alias/aws/sns) cannot grant CloudWatch the use of it, so alarms to a topic
    encrypted with it are never delivered: the topic's key is the stack's own, and its policy says so."""
    import json

    from helpers import render

    mocks = render(env)[0]
    key = mocks.one("aws:kms/key:Key", "-mon-alarms-key").inputs
    topic = mocks.one("aws:sns/topic:Topic").inputs
    assert topic["kmsMasterKeyId"] != "alias/aws/sns" and topic["kmsMasterKeyId"].endswith("/mlflow-" + env + "-mon-alarms-key")
    statements = json.loads(key["policy"])["Statement"]
    cloudwatch = [s for s in statements if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert len(cloudwatch) == 1 and cloudwatch[0]["Effect"] == "Allow"
    assert set(cloudwatch[0]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    admins = [s for s in statements if s["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}]
    assert admins and admins[0]["Action"] == "kms:*", "the account keeps control of its key"
    assert key["enableKeyRotation"] is True
