"""AWS rules the rendered stacks rely on that Pulumi's mocks and botocore's models do not check, one
test each (docs/aws-constraints.md names the source page of every rule)."""

from __future__ import annotations

import base64
import json

import pytest

from helpers import render, variant
from infra import plan
from infra.aws.iam import pre_upgrade_snapshot_policy
from infra.endpoints import READY_PATH, READY_PORT
from infra.spec.model import FARGATE_MEMORY_GIB

SERVICE, TARGET_GROUP = "aws:ecs/service:Service", "aws:lb/targetGroup:TargetGroup"
SG, INSTANCE = "aws:ec2/securityGroup:SecurityGroup", "aws:rds/instance:Instance"


@pytest.fixture(scope="module")
def prod_three_replicas():
    spec = variant("prod", **{"database.read_replicas": 3})
    return spec, plan(spec), render("prod", spec)[0]


def containers(task) -> dict:
    return {c["name"]: c for c in json.loads(task.inputs["containerDefinitions"])}


def env_of(container) -> dict:
    return {e["name"]: e["value"] for e in container.get("environment", [])}


# ---------------------------------------------------------------------------------------------
# the UI: one service per replica, one target group, health on the readiness port

def test_every_replica_has_a_ui_service_in_the_one_ui_target_group(prod_three_replicas):
    spec, p, mocks = prod_three_replicas
    replicas = sorted(r.name for r in mocks.of_type(INSTANCE) if r.inputs.get("replicateSourceDb"))
    ui_tasks = [t for t in mocks.of_type("aws:ecs/taskDefinition:TaskDefinition") if "-ui" in t.name]
    read = sorted(env_of(containers(t)["mlflow"])["DB_REPLICA_HOST"].split(".")[0] for t in ui_tasks)
    assert read == replicas and len(replicas) == 3, "each replica read by exactly one UI service"
    ui_tg = next(t for t in mocks.of_type(TARGET_GROUP) if t.name.endswith("-ui"))
    ui_services = [s for s in mocks.of_type(SERVICE) if "-ui" in s.name]
    assert len(ui_services) == 3
    for service in ui_services:
        # several ECS services may register into one target group (all `ip` targets here)
        assert [lb["targetGroupArn"] for lb in service.inputs["loadBalancers"]] == [f"arn:aws:mock:us-east-1:123456789012:targetgroup/{ui_tg.name}"]
        assert service.inputs["desiredCount"] == p.tracking.ui.service_min_count
    assert p.tracking.ui.min_count == 3 * p.tracking.ui.service_min_count, "the plan counts every service's tasks"
    # with several replicas a task whose replica is lost fails its check: no fallback to the primary
    assert all("DB_READ_FALLBACK_HOST" not in env_of(containers(t)["mlflow"]) for t in ui_tasks)


def test_the_readiness_port_is_open_from_the_ui_load_balancer_both_ways(prod_three_replicas):
    _, _, mocks = prod_three_replicas
    ui_tg = next(t for t in mocks.of_type(TARGET_GROUP) if t.name.endswith("-ui"))
    assert (ui_tg.inputs["healthCheck"]["port"], ui_tg.inputs["healthCheck"]["path"]) == (str(READY_PORT), READY_PATH)
    api_tg = next(t for t in mocks.of_type(TARGET_GROUP) if t.name.endswith("-api"))
    assert api_tg.inputs["healthCheck"]["port"] == "traffic-port"
    ui_lb, tasks = (next(g for g in mocks.of_type(SG) if g.name.endswith(suffix)) for suffix in ("-ui-lb", "-tasks"))
    assert any(r["fromPort"] == READY_PORT == r["toPort"] for r in ui_lb.inputs["egress"]), "the LB reaches the health port"
    ingress = [r for r in tasks.inputs["ingress"] if r["fromPort"] == READY_PORT]
    assert len(ingress) == 1 and ingress[0]["securityGroups"] == [f"{ui_lb.name}-id"], "only the UI LB reaches it"
    for task in (t for t in mocks.of_type("aws:ecs/taskDefinition:TaskDefinition") if "-ui" in t.name):
        ports = [m["containerPort"] for m in containers(task)["mlflow"]["portMappings"]]
        assert READY_PORT in ports, "awsvpc: the container maps the health port"


def test_fargate_target_groups_are_ip_and_ec2_ones_instance():
    mocks = render("prod")[0]
    assert {t.inputs["targetType"] for t in mocks.of_type(TARGET_GROUP)} == {"ip"}
    ec2 = render("prod", variant("prod", **{"tracking.compute": "ec2"}))[0]
    assert {t.inputs["targetType"] for t in ec2.of_type(TARGET_GROUP)} == {"instance"}


# ---------------------------------------------------------------------------------------------
# rollout

def test_only_the_api_runs_the_migrate_step_and_may_snapshot_the_primary(prod_three_replicas):
    _, _, mocks = prod_three_replicas
    for task in mocks.of_type("aws:ecs/taskDefinition:TaskDefinition"):
        names = list(containers(task))
        assert names == (["migrate", "mlflow"] if task.name.endswith("-api") else ["mlflow"]), task.name
    policies = {p.name: json.loads(p.inputs["policy"]) for p in mocks.of_type("aws:iam/rolePolicy:RolePolicy")}
    snapshot = [name for name in policies if name.endswith("-snapshot")]
    assert snapshot == ["mlflow-prod-svc-api-snapshot"]
    master = next(s.name for s in mocks.of_type("aws:secretsmanager/secret:Secret") if s.name.endswith("-master"))
    for name, policy in policies.items():
        if name.endswith("-secret"):
            readable = json.dumps(policy["Statement"][0]["Resource"])
            assert (master in readable) == ("-api-" in name), f"{name}: the master secret for the migrate step only"


def test_the_snapshot_policy_names_the_instance_and_its_snapshots_only():
    import pulumi

    arn = "arn:aws:rds:us-east-1:123456789012:db:mlflow-prod-db-primary"
    seen = {}

    @pulumi.runtime.test
    def check():
        return pre_upgrade_snapshot_policy(arn).apply(lambda text: seen.setdefault("policy", json.loads(text)))

    from infra.aws.mocks import RecordingMocks

    pulumi.runtime.set_mocks(RecordingMocks(), preview=False)
    check()
    create, watch = seen["policy"]["Statement"]
    snapshots = "arn:aws:rds:us-east-1:123456789012:snapshot:mlflow-prod-db-primary-mlflow-*"
    assert (create["Action"], create["Resource"]) == ("rds:CreateDBSnapshot", [arn, snapshots])
    assert watch["Resource"] == snapshots and "rds:DeleteDBSnapshot" not in json.dumps(seen)


# ---------------------------------------------------------------------------------------------
# EC2: the same image, from ECR, logs to CloudWatch

def test_ec2_instances_run_the_ecs_image_and_may_pull_it_and_write_their_log_group():
    from infra.aws.instance import AMI_PARAMETER

    mocks = render("prod", variant("prod", **{"tracking.compute": "ec2"}))[0]
    repository = next(r for r in mocks.of_type("aws:ecr/repository:Repository"))
    for template in mocks.of_type("aws:ec2/launchTemplate:LaunchTemplate"):
        assert template.inputs["imageId"] == AMI_PARAMETER
        script = base64.b64decode(template.inputs["userData"]).decode()
        assert f"{repository.name}:3.17.2" in script and "pip install" not in script
        assert "--log-driver" in script and "awslogs" in script
    policies = {p.name: json.loads(p.inputs["policy"]) for p in mocks.of_type("aws:iam/rolePolicy:RolePolicy")}
    for role in ("api", "ui"):
        statements = json.dumps(policies[f"mlflow-prod-svc-{role}-image-logs"])
        assert "ecr:BatchGetImage" in statements and "logs:PutLogEvents" in statements


# ---------------------------------------------------------------------------------------------
# RDS

def test_replicas_name_no_kms_key_and_no_subnet_group(prod_three_replicas):
    _, _, mocks = prod_three_replicas
    replicas = [r for r in mocks.of_type(INSTANCE) if r.inputs.get("replicateSourceDb")]
    assert len(replicas) == 3
    for replica in replicas:
        assert "kmsKeyId" not in replica.inputs and "dbSubnetGroupName" not in replica.inputs, replica.name
    primary = next(r for r in mocks.of_type(INSTANCE) if not r.inputs.get("replicateSourceDb"))
    assert primary.inputs["kmsKeyId"] and primary.inputs["storageEncrypted"] is True


def test_rds_proxy_never_gets_a_read_only_endpoint():
    spec = variant("prod", **{"database.rds_proxy": "on"})
    mocks = render("prod", spec)[0]
    assert mocks.of_type("aws:rds/proxy:Proxy"), "the proxy is there"
    assert not mocks.of_type("aws:rds/proxyEndpoint:ProxyEndpoint"), "RDS Proxy has no reader endpoint for RDS instances"


# ---------------------------------------------------------------------------------------------
# Fargate sizes (ECS API RegisterTaskDefinition, memory: the documented cpu/memory table)

DOCUMENTED_FARGATE_MIB = {
    256: [512, 1024, 2048], 512: [1024, 2048, 3072, 4096], 1024: list(range(2048, 8193, 1024)),
    2048: list(range(4096, 16385, 1024)), 4096: list(range(8192, 30721, 1024)),
    8192: list(range(16384, 61441, 4096)), 16384: list(range(32768, 122881, 8192)),
}


def test_fargate_sizes_are_the_documented_combinations():
    ours = {int(vcpu * 1024): [int(gib * 1024) for gib in memory] for vcpu, memory in FARGATE_MEMORY_GIB.items()}
    assert ours == DOCUMENTED_FARGATE_MIB


def test_a_lost_replica_is_visible_on_the_ui_target_group_and_every_ui_service_has_its_cpu_alarm(prod_three_replicas):
    _, p, mocks = prod_three_replicas
    alarms = {a.name.removeprefix("mlflow-prod-mon-"): a.inputs for a in mocks.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")}
    unhealthy = alarms["ui-unhealthy-targets"]
    # UnHealthyHostCount is reported per target group and load balancer (ELB "CloudWatch metrics for your ALB")
    assert (unhealthy["namespace"], unhealthy["metricName"]) == ("AWS/ApplicationELB", "UnHealthyHostCount")
    assert unhealthy["dimensions"] == {"TargetGroup": "targetgroup/mlflow-prod-svc-ui/0456", "LoadBalancer": "app/mlflow-prod-svc-ui/0123"}
    services = {s.name for s in mocks.of_type(SERVICE)}
    for name in p.tracking.ui.service_names:
        assert alarms[f"{name}-cpu"]["dimensions"]["ServiceName"] in services
    assert len({alarms[f"{n}-cpu"]["dimensions"]["ServiceName"] for n in p.tracking.ui.service_names}) == 3


def test_gunicorn_finishes_its_requests_within_the_stop_timeout(prod_three_replicas):
    """ECS sends SIGTERM, then SIGKILL after the container's stopTimeout (30 s when unset; `docker
    stop --time 30` on EC2): the API's gunicorn gives its workers less than that to finish."""
    from infra.aws.instance import STOP_TIMEOUT_SECONDS
    from infra.planning.server_command import GUNICORN_GRACEFUL_S

    mocks = prod_three_replicas[2]
    api = next(t for t in mocks.of_type("aws:ecs/taskDefinition:TaskDefinition") if t.name.endswith("-api"))
    server = containers(api)["mlflow"]
    assert "stopTimeout" not in server, "ECS's default stopTimeout (30 s) applies"
    options = server["command"][server["command"].index("--gunicorn-opts") + 1]
    assert f"--graceful-timeout {GUNICORN_GRACEFUL_S}" in options
    assert GUNICORN_GRACEFUL_S < STOP_TIMEOUT_SECONDS == 30
