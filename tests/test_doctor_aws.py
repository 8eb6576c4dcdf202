"""`mlflow-infra doctor ENV` and `mlflow-infra db apply-pending ENV` against moto.

The deployment moto holds is the one the Pulumi program declares: the prod stack is rendered under
Pulumi's mocks and its RDS instances, parameter groups, ECS services, load balancers, target groups
and master secret are created in moto with the declared tags, classes and parameter values. So a
healthy deployment reports nothing only if the program tags what the doctor looks for and sets
what the plan says; each finding is then provoked by changing that deployment as an operator, a
failover or a load would (a parameter changed in the console, CPU datapoints, a lost replica).

moto does not simulate two things RDS does, so the tests say what RDS would: a static parameter
change leaves the instances `pending-reboot` until a reboot (the `rds_reboots` fixture keeps that
state and clears it on reboot), and ECS runs the tasks a service wants (moto's own switch,
MOTO_ECS_SERVICE_RUNNING, sets the running count).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re

import boto3
import pytest
from moto import mock_aws
from moto.rds.models import DBInstance, RDSBackend

from helpers import ROOT, render
from infra.cli import main
from infra.cli import db as db_cli
from infra.doctor import aws, cloud, pending
from infra.doctor.findings import EXIT_BAD_INPUT, EXIT_UNREACHABLE
from infra.endpoints import ENVIRONMENT_TAG, MASTER_SECRET_TARGET, TARGET_TAG
from infra.planning.plan import plan
from infra.spec import load_environment

ENV = "prod"
REGION = "us-east-1"
SECRET = {"username": "mlflow", "password": "not-a-real-password"}


@pytest.fixture(scope="module")
def declared():
    """The prod stack as the program declares it, and its plan."""
    mocks, _, _, _ = render(ENV)
    return mocks, plan(load_environment(ROOT / "stacks" / f"{ENV}.yaml", ROOT / "stacks"))


def inputs(resource) -> dict:
    return dict(resource.inputs)


def tag_list(tags: dict, key="Key", value="Value") -> list[dict]:
    return [{key: k, value: v} for k, v in tags.items()]


@pytest.fixture
def aws_env(monkeypatch):
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def rds_reboots(monkeypatch):
    """What RDS does and moto does not: instances `pending-reboot` until rebooted. Yields the set of
    pending identifiers and the list of reboots made (identifier, in order)."""
    pending_ids: set[str] = set()
    rebooted: list[str] = []
    status_list = DBInstance.db_parameter_group_status_list.fget
    reboot = RDSBackend.reboot_db_instance

    def groups(self):
        found = status_list(self)
        for group in found:
            group.ParameterApplyStatus = "pending-reboot" if self.db_instance_identifier in pending_ids else "in-sync"
        return found

    def reboot_and_apply(self, db_instance_identifier):
        rebooted.append(db_instance_identifier)
        pending_ids.discard(db_instance_identifier)
        return reboot(self, db_instance_identifier)

    monkeypatch.setattr(DBInstance, "db_parameter_group_status_list", property(groups))
    monkeypatch.setattr(RDSBackend, "reboot_db_instance", reboot_and_apply)
    return pending_ids, rebooted


def deploy(mocks, monkeypatch) -> dict[str, str]:
    """Create in moto what the rendered program declares; returns {target: identifier} of the databases."""
    rds, ecs, ec2 = (boto3.client(s, region_name=REGION) for s in ("rds", "ecs", "ec2"))
    elbv2, secrets = boto3.client("elbv2", region_name=REGION), boto3.client("secretsmanager", region_name=REGION)
    for group in mocks.of_type("aws:rds/parameterGroup:ParameterGroup"):
        i = inputs(group)
        rds.create_db_parameter_group(DBParameterGroupName=group.name, DBParameterGroupFamily=i["family"],
                                      Description="mlflow-infra", Tags=tag_list(i["tags"]))
        params = [{"ParameterName": p["name"], "ParameterValue": p["value"], "ApplyMethod": p["applyMethod"]}
                  for p in i["parameters"]]
        for k in range(0, len(params), 20):  # RDS takes at most 20 a call
            rds.modify_db_parameter_group(DBParameterGroupName=group.name, Parameters=params[k:k + 20])
    databases = {}
    instances = sorted(mocks.of_type("aws:rds/instance:Instance"), key=lambda r: "replicateSourceDb" in inputs(r))
    for instance in instances:
        i = inputs(instance)
        common = dict(DBInstanceIdentifier=instance.name, DBInstanceClass=i["instanceClass"], Tags=tag_list(i["tags"]),
                      DBParameterGroupName=i["parameterGroupName"])
        if "replicateSourceDb" in i:
            rds.create_db_instance_read_replica(SourceDBInstanceIdentifier=i["replicateSourceDb"],
                                                AvailabilityZone=i["availabilityZone"], MultiAZ=bool(i.get("multiAz")),
                                                **common)
        else:
            rds.create_db_instance(Engine="postgres", MasterUsername="mlflow", MasterUserPassword=SECRET["password"],
                                   AllocatedStorage=int(i["allocatedStorage"]), Iops=int(i["iops"]), StorageType="gp3",
                                   MultiAZ=bool(i.get("multiAz")), AvailabilityZone=i.get("availabilityZone", f"{REGION}a"),
                                   DBName="mlflow", **common)
        databases[i["tags"][TARGET_TAG]] = instance.name
    secret = mocks.one("aws:secretsmanager/secret:Secret", "-master")
    secrets.create_secret(Name=secret.name, SecretString=json.dumps(SECRET), Tags=tag_list(inputs(secret)["tags"]))

    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{n}.0/24", AvailabilityZone=f"{REGION}{z}")["Subnet"]["SubnetId"]
               for n, z in enumerate("ab")]
    sg = ec2.create_security_group(GroupName="tasks", Description="tasks", VpcId=vpc)["GroupId"]
    cluster = mocks.one("aws:ecs/cluster:Cluster")
    ecs.create_cluster(clusterName=cluster.name, tags=tag_list(inputs(cluster)["tags"], "key", "value"))
    ecs.register_task_definition(family="mlflow", containerDefinitions=[{"name": "mlflow", "image": "mlflow", "memory": 512}],
                                 requiresCompatibilities=["FARGATE"], networkMode="awsvpc", cpu="1024", memory="2048")
    for service in mocks.of_type("aws:ecs/service:Service"):
        i = inputs(service)
        monkeypatch.setenv("MOTO_ECS_SERVICE_RUNNING", str(int(i["desiredCount"])))  # ECS placed every task
        ecs.create_service(cluster=cluster.name, serviceName=service.name, taskDefinition="mlflow",
                           desiredCount=int(i["desiredCount"]), launchType="FARGATE",
                           tags=tag_list(i["tags"], "key", "value"),
                           networkConfiguration={"awsvpcConfiguration": {"subnets": subnets, "securityGroups": [sg]}})
    monkeypatch.delenv("MOTO_ECS_SERVICE_RUNNING")
    groups = {}
    for tg in mocks.of_type("aws:lb/targetGroup:TargetGroup"):
        groups[tg.name] = elbv2.create_target_group(Name=tg.name, Protocol="HTTP", Port=5000, VpcId=vpc, TargetType="ip",
                                                    Tags=tag_list(inputs(tg)["tags"]))["TargetGroups"][0]["TargetGroupArn"]
    for lb in mocks.of_type("aws:lb/loadBalancer:LoadBalancer"):
        arn = elbv2.create_load_balancer(Name=lb.name, Subnets=subnets, Type="application",
                                         Tags=tag_list(inputs(lb)["tags"]))["LoadBalancers"][0]["LoadBalancerArn"]
        elbv2.create_listener(LoadBalancerArn=arn, Protocol="HTTP", Port=80,
                              DefaultActions=[{"Type": "forward", "TargetGroupArn": groups[lb.name]}])
    return databases


def doctor(capsys, *extra) -> tuple[int, dict]:
    code = main(["doctor", ENV, "--json", *extra])
    return code, json.loads(capsys.readouterr().out)


def put_datapoints(metric: str, dimensions: dict, values: list[float], namespace="AWS/RDS") -> None:
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    now = dt.datetime.now(dt.timezone.utc)
    cloudwatch.put_metric_data(Namespace=namespace, MetricData=[
        {"MetricName": metric, "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()],
         "Timestamp": now - dt.timedelta(minutes=5 * (n + 1)), "Value": value} for n, value in enumerate(values)])


# ---------------------------------------------------------------------------------------------
# what the program declares is what the doctor finds

def test_every_alarm_target_and_the_master_secret_carry_their_tags(declared):
    mocks, capacity = declared
    tagged = {}
    for resource in mocks.resources:
        tags = inputs(resource).get("tags")
        if isinstance(tags, dict) and TARGET_TAG in tags:
            assert tags[ENVIRONMENT_TAG] == ENV, resource.name
            tagged.setdefault(tags[TARGET_TAG], []).append(resource.typ)
    targets = {a.target for a in capacity.alarms} | {MASTER_SECRET_TARGET}
    assert set(tagged) - targets == {"api-tg"}, "the API's target group: tagged like the UI's, no alarm of its own yet"
    assert targets <= set(tagged)
    assert all(len(types) == 1 for types in tagged.values()), tagged


def test_a_healthy_deployment_has_no_finding(declared, aws_env, monkeypatch, capsys):
    mocks, capacity = declared
    with mock_aws():
        databases = deploy(mocks, monkeypatch)
        put_datapoints("CPUUtilization", {"DBInstanceIdentifier": databases["primary"]}, [35.0] * 24)
        code, report = doctor(capsys)
    assert report["findings"] == [], report["findings"]
    reached = {s["name"]: s["reached"] for s in report["sources"]}
    assert reached == {"rds": True, "rds:mlflow-prod-db-primary": True, "rds:mlflow-prod-db-replica": True, "ecs": True,
                       "elbv2": True, "cloudwatch": True, "prometheus": True, "database": False}
    # moto's endpoint is no database: the one source not reached, and the report says what to do
    database = next(s for s in report["sources"] if s["name"] == "database")
    assert "did not answer" in database["detail"] and "--database-uri" in database["detail"]
    assert code == EXIT_UNREACHABLE


def test_provoked_findings_are_named(declared, aws_env, monkeypatch, capsys, rds_reboots):
    mocks, capacity = declared
    pending_ids, _ = rds_reboots
    with mock_aws():
        databases = deploy(mocks, monkeypatch)
        rds = boto3.client("rds", region_name=REGION)
        # a parameter changed in the console, a static one waiting for a reboot, a replica lost
        rds.modify_db_parameter_group(DBParameterGroupName="mlflow-prod-db-primary", Parameters=[
            {"ParameterName": "work_mem", "ParameterValue": "64", "ApplyMethod": "immediate"}])
        pending_ids.add(databases["primary"])
        rds.delete_db_instance(DBInstanceIdentifier=databases["replica-0"], SkipFinalSnapshot=True)
        # the primary's CPU above the alarm for 2 of the last 24 hours, the API service short of tasks
        put_datapoints("CPUUtilization", {"DBInstanceIdentifier": databases["primary"]}, [95.0] * 24 + [30.0] * 264)
        ecs = boto3.client("ecs", region_name=REGION)
        cluster = ecs.list_clusters()["clusterArns"][0]
        api = next(s for s in ecs.describe_services(cluster=cluster, services=ecs.list_services(cluster=cluster)["serviceArns"],
                                                    include=["TAGS"])["services"] if "api" in s["serviceName"])
        ecs.update_service(cluster=cluster, service=api["serviceName"], desiredCount=capacity.tracking.api.service_max_count)
        code, report = doctor(capsys)
    found = {}
    for f in report["findings"]:
        found.setdefault(f["bottleneck"], []).append(f)
    evidence = {b: " | ".join(f["evidence"] for f in fs) for b, fs in found.items()}
    assert "work_mem is 64 in parameter group mlflow-prod-db-primary; the plan sets " in evidence["parameters"]
    assert "pending-reboot" in evidence["parameters"]
    assert any(f["remedy"] == f"mlflow-infra db apply-pending {ENV}" for f in found["parameters"])
    assert "replica-0: no RDS instance tagged mlflow-infra:target=replica-0" in evidence["replicas"]
    # 24 of the datapoints (the window's oldest one may fall just outside it by the time the doctor reads)
    assert re.search(r"primary: CPUUtilization \(Average\) above 80 in 24 of 28[78] periods of the last 24 h, worst 95 ",
                     evidence["instance"]), evidence["instance"]
    assert f"the autoscaling maximum {capacity.tracking.api.service_max_count}" in evidence["server"]
    assert code == EXIT_UNREACHABLE  # the database source still cannot be reached in moto
    assert set(found) == {"parameters", "replicas", "instance", "server"}, report["findings"]


def test_the_database_source_uses_the_master_secret_found_by_its_tags(declared, aws_env, monkeypatch):
    mocks, capacity = declared
    with mock_aws():
        deploy(mocks, monkeypatch)
        credentials = cloud.master_credentials(boto3.client("secretsmanager", region_name=REGION), ENV)
        with pytest.raises(LookupError, match="no secret tagged mlflow-infra:environment=staging"):
            cloud.master_credentials(boto3.client("secretsmanager", region_name=REGION), "staging")
    assert credentials == SECRET
    uri = cloud.primary_uri({"Endpoint": {"Address": "db.example", "Port": 5432}, "DBName": "mlflow"}, credentials)
    assert uri == "host=db.example port=5432 dbname=mlflow user=mlflow password=not-a-real-password sslmode=require"


def test_without_credentials_every_aws_source_says_so(aws_env, monkeypatch, capsys):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    code, report = doctor(capsys)
    assert code == EXIT_UNREACHABLE
    rds = next(s for s in report["sources"] if s["name"] == "rds")
    assert rds["reached"] is False and "Unable to locate credentials" in rds["detail"]


@pytest.mark.parametrize("argv, message", [
    (["doctor", ENV, "--window-hours", "0"], "doctor prod: --window-hours 0 is out of range; allowed: more than 0, at most 1,512"),
    (["doctor", "nosuchenv"], "nosuchenv"),
])
def test_bad_input_is_one_message(argv, message, capsys):
    assert main(argv) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


# ---------------------------------------------------------------------------------------------
# the findings' rules, as tables

def test_an_alarm_breached_for_three_periods_is_a_finding():
    alarm = next(a for a in plan(load_environment(ROOT / "stacks" / "dev.yaml", ROOT / "stacks")).alarms if a.key == "db-memory")
    t = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    below = alarm.threshold / 2
    two = {"db-memory": [(t, below), (t, below)] + [(t, alarm.threshold * 2)] * 10}
    three = {"db-memory": [(t, below)] * 3 + [(t, alarm.threshold * 2)] * 97}
    assert aws.alarm_findings([alarm], two, 24, "dev") == []
    [finding] = aws.alarm_findings([alarm], three, 24, "dev")
    assert (finding.bottleneck, finding.severity) == ("instance", "medium")   # 3 of 100: not yet the normal state
    assert finding.evidence.startswith("primary: FreeableMemory (Average) below ")


@pytest.mark.parametrize("key, bottleneck", [
    ("db-cpu", "instance"), ("db-connections", "connections"), ("replica-0-lag", "replicas"),
    ("ui-unhealthy-targets", "replicas"), ("api-latency-p99", "server"), ("ui-2-cpu", "server"), ("api-5xx", "server"),
])
def test_each_alarm_belongs_to_a_bottleneck(key, bottleneck):
    assert aws.alarm_bottleneck(key) == bottleneck


def test_storage_near_its_provisioned_iops():
    t = [dt.datetime(2026, 1, 1, 0, 5 * n, tzinfo=dt.timezone.utc) for n in range(4)]
    series = {"ReadIOPS": [(x, 1000.0) for x in t], "WriteIOPS": [(x, 2000.0) for x in t]}
    assert aws.storage_findings(series, 4000, 125, "dev") == []
    [finding] = aws.storage_findings(series, 3000, 125, "dev")
    assert finding.evidence == "primary: read + write IOPS above 90% of the provisioned 3,000 in 4 of 4 periods, worst 3,000"


def test_a_primary_outside_the_training_zones_is_a_network_finding(declared):
    _, capacity = declared
    primary = {"DBInstanceIdentifier": "db", "DBInstanceClass": capacity.database.instance.instance_class,
               "AvailabilityZone": "us-east-1d", "MultiAZ": True, "Iops": capacity.database.storage.iops}
    replica = {"DBInstanceIdentifier": "r", "DBInstanceClass": capacity.database.instance.instance_class}
    [finding] = aws.database_findings({"primary": primary, "replica-0": replica}, capacity)
    assert finding.bottleneck == "network"
    assert finding.evidence == ("primary db runs in us-east-1d; the training compute runs in us-east-1a, us-east-1b,"
                                " us-east-1c: every logging call crosses zones")
    assert "--force-failover" in finding.remedy


# ---------------------------------------------------------------------------------------------
# db apply-pending

def test_reboots_go_replicas_first_then_the_primary_with_failover_only_when_multi_az():
    def db(name, multi_az, status="pending-reboot"):
        return {"DBInstanceIdentifier": name, "MultiAZ": multi_az, "DBInstanceStatus": "available",
                "DBParameterGroups": [{"DBParameterGroupName": f"{name}-pg", "ParameterApplyStatus": status}]}
    databases = {"primary": db("p", True), "replica-10": db("r10", False), "replica-2": db("r2", False),
                 "replica-3": db("r3", False, "in-sync")}
    assert [(s.node, s.failover) for s in pending.reboot_plan(databases)] == [
        ("replica-2", False), ("replica-10", False), ("primary", True)]
    assert [s.failover for s in pending.reboot_plan({"primary": db("p", False)})] == [False]
    assert [s.node for s in pending.reboot_plan(databases, primary_first=True)] == ["primary", "replica-2", "replica-10"]


def test_rds_refuses_a_failover_reboot_without_multi_az():
    """The rule reboot_plan keeps (docs/aws-constraints.md), as botocore's RDS model documents it."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("rds")
    doc = model.operation_model("RebootDBInstance").input_shape.members["ForceFailover"].documentation
    assert "can't enable force failover if the instance isn't configured for Multi-AZ" in doc


def namespace(**values) -> argparse.Namespace:
    return argparse.Namespace(environment=ENV, stacks_dir=str(ROOT / "stacks"), yes=False, primary_first=False, **values)


def test_apply_pending_reboots_in_order_and_clears_what_waits(declared, aws_env, monkeypatch, capsys, rds_reboots):
    mocks, _ = declared
    pending_ids, rebooted = rds_reboots
    with mock_aws():
        databases = deploy(mocks, monkeypatch)
        pending_ids.update(databases.values())
        session = boto3.session.Session(region_name=REGION)
        failovers = []
        session.events.register("provide-client-params.rds.RebootDBInstance",
                                lambda params, **_: failovers.append((params["DBInstanceIdentifier"], params["ForceFailover"])))
        assert db_cli.cmd_apply_pending(namespace(), session=session, confirm=lambda _: "n") == db_cli.EXIT_DECLINED
        assert rebooted == [], "declined: nothing rebooted"
        assert db_cli.cmd_apply_pending(namespace(), session=session, confirm=lambda _: "y") == 0
        assert rebooted == [databases["replica-0"], databases["primary"]]
        assert failovers == [(databases["replica-0"], False), (databases["primary"], True)]   # prod is Multi-AZ
        assert main(["db", "apply-pending", ENV, "--yes"]) == 0
    out = capsys.readouterr().out
    assert "1. reboot replica-0 mlflow-prod-db-replica-0 (parameter group mlflow-prod-db-replica is pending-reboot)" in out
    assert "2. reboot with failover to its Multi-AZ standby primary mlflow-prod-db-primary" in out
    assert out.rstrip().endswith(f"{ENV}: nothing is pending a reboot (2 instance(s) in {REGION}, every parameter group in sync)")


def test_apply_pending_asks_first_and_refuses_what_rds_would(declared, aws_env, monkeypatch, capsys, rds_reboots):
    mocks, _ = declared
    pending_ids, rebooted = rds_reboots
    with mock_aws():
        databases = deploy(mocks, monkeypatch)
        pending_ids.add(databases["primary"])
        monkeypatch.setattr("sys.stdin.isatty", lambda: False)
        assert main(["db", "apply-pending", ENV]) == EXIT_BAD_INPUT
        assert "not confirmed: stdin is not a terminal; pass --yes" in capsys.readouterr().err
        rds = boto3.client("rds", region_name=REGION)
        rds.stop_db_instance(DBInstanceIdentifier=databases["primary"])
        assert main(["db", "apply-pending", ENV, "--yes"]) == EXIT_UNREACHABLE
        assert "primary mlflow-prod-db-primary is stopped; RDS reboots only an available instance" in capsys.readouterr().err
    assert rebooted == []


def test_a_reboot_that_does_not_settle_stops_the_rest():
    class Rds:
        calls: list = []

        def reboot_db_instance(self, **kw):
            self.calls.append(kw["DBInstanceIdentifier"])

        def describe_db_instances(self, DBInstanceIdentifier):  # noqa: N803 (boto3's spelling)
            return {"DBInstances": [{"DBInstanceStatus": "rebooting"}]}

    steps = [pending.Reboot("replica-0", "r0", False, ("g",), "available"), pending.Reboot("primary", "p", True, ("g",), "available")]
    with pytest.raises(pending.RebootTimeout, match="replica-0 r0 was not available .* the remaining reboots were not started"):
        pending.apply(Rds(), steps, lambda _: None, delay_s=0, max_attempts=3, sleep=lambda _: None)
    assert Rds.calls == ["r0"]


def test_on_ec2_the_auto_scaling_groups_are_the_services(aws_env):
    """tracking.compute ec2: each service is an Auto Scaling group found by its tags; one short of
    its instances is a finding, and a missing one too."""
    from helpers import variant

    spec = variant(ENV, **{"tracking.compute": "ec2"})
    mocks = render(ENV, spec)[0]
    capacity = plan(spec)
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        subnet = ec2.create_subnet(VpcId=ec2.create_vpc(CidrBlock="10.1.0.0/16")["Vpc"]["VpcId"], CidrBlock="10.1.0.0/24",
                                   AvailabilityZone=f"{REGION}a")["Subnet"]["SubnetId"]
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        autoscaling = boto3.client("autoscaling", region_name=REGION)
        autoscaling.create_launch_configuration(LaunchConfigurationName="mlflow", ImageId=image, InstanceType="t3.micro")
        groups = mocks.of_type("aws:autoscaling/group:Group")
        assert {t["value"] for g in groups for t in inputs(g)["tags"] if t["key"] == TARGET_TAG} == {"api-fleet", "ui-fleet"}
        for group in groups:
            i = inputs(group)
            autoscaling.create_auto_scaling_group(
                AutoScalingGroupName=group.name, LaunchConfigurationName="mlflow", MinSize=int(i["minSize"]),
                MaxSize=int(i["maxSize"]), DesiredCapacity=int(i["desiredCapacity"]), VPCZoneIdentifier=subnet,
                Tags=[{"Key": t["key"], "Value": t["value"], "PropagateAtLaunch": True} for t in i["tags"]])
        found = aws.read_autoscaling_groups(autoscaling, ENV)
        assert set(found) == {"api-fleet", "ui-fleet"}
        assert aws.service_findings(found, capacity) == []
        ui = found.pop("ui-fleet")
        ui["Instances"] = ui["Instances"][1:]
        evidence = [f.evidence for f in aws.service_findings({**found, "ui-fleet": ui}, capacity)]
        assert evidence == [f"ui {ui['AutoScalingGroupName']}: {ui['DesiredCapacity'] - 1} of {ui['DesiredCapacity']} instances running"]
        assert [f.evidence for f in aws.service_findings(found, capacity)] == [
            "ui: no Auto Scaling group tagged mlflow-infra:target=ui-fleet"]
