"""MlflowTracking under Pulumi's mocks: every plan decision reaches its resource, for each shipped stack."""

from __future__ import annotations

import base64
import json

import pulumi
import pytest

from helpers import ROOT, SHIPPED, environment, render, variant
from infra import load_environment, plan
from infra.aws.mocks import RecordingMocks

COMPONENT = "mlflow-infra:index:MlflowTracking"


@pytest.fixture(scope="module", params=SHIPPED)
def stack(request):
    env = request.param
    mocks, component, urns, outputs = render(env)
    return env, plan(load_environment(ROOT / "stacks" / f"{env}.yaml", ROOT / "stacks")), mocks, urns, outputs


def inputs(mocks, typ, suffix=""):
    return mocks.one(typ, suffix).inputs


def test_every_resource_is_parented_to_the_component(stack):
    """The mock URN names the immediate parent's type: every resource's parent is one of our
    components, and every child component's parent is MlflowTracking, so all hang under it."""
    env, p, mocks, urns, _ = stack
    seen_children = set()
    for urn in urns:
        qualified = urn.split("::")[2].removeprefix("pulumi:pulumi:Stack$")
        if qualified == COMPONENT:
            continue
        parent_type, _, own_type = qualified.rpartition("$")
        assert parent_type.startswith("mlflow-infra:"), urn
        if own_type.startswith("mlflow-infra:"):
            assert parent_type == COMPONENT, urn
            seen_children.add(own_type)
    assert seen_children == {"mlflow-infra:network:TrackingNetwork", "mlflow-infra:database:TrackingDatabase",
                             "mlflow-infra:artifacts:ArtifactStore", "mlflow-infra:service:TrackingService",
                             "mlflow-infra:monitoring:TrackingMonitoring"}


def test_database_class_storage_and_iops(stack):
    env, p, mocks, urns, _ = stack
    db = inputs(mocks, "aws:rds/instance:Instance", "-primary")
    s = p.database.storage
    assert db["instanceClass"] == p.database.instance.instance_class
    assert db["engine"] == "postgres" and db["engineVersion"] == p.database.engine_version
    assert db["allocatedStorage"] == s.allocated_gib and db["maxAllocatedStorage"] == s.max_allocated_gib
    assert db["storageType"] == "gp3"
    if s.iops_provisioned:
        assert db["iops"] == s.iops and db["storageThroughput"] == s.throughput_mibps
    else:
        assert "iops" not in db and "storageThroughput" not in db
    assert db["multiAz"] == p.database.multi_az.value
    assert db["deletionProtection"] == p.database.deletion_protection.value
    assert db["backupRetentionPeriod"] == p.database.backup_retention_days.value
    assert db["storageEncrypted"] is True and db["kmsKeyId"]
    assert db["publiclyAccessible"] is False
    # the stack's own master password (a replica cannot be made of a source whose password RDS manages)
    assert "manageMasterUserPassword" not in db and "masterUserSecretKmsKeyId" not in db
    assert db["username"] == "mlflow" and db["password"]
    assert db["performanceInsightsEnabled"] is True
    assert db["monitoringInterval"] == p.database.monitoring_interval_seconds and db["monitoringRoleArn"]
    assert "postgresql" in db["enabledCloudwatchLogsExports"]


def _group(mocks, suffix):
    return {x["name"]: x for x in inputs(mocks, "aws:rds/parameterGroup:ParameterGroup", suffix)["parameters"]}


def test_every_parameter_value_and_apply_method(stack):
    env, p, mocks, urns, _ = stack
    primary = _group(mocks, "-primary")
    assert inputs(mocks, "aws:rds/parameterGroup:ParameterGroup", "-primary")["family"] == f"postgres{p.database.engine_version.split('.')[0]}"
    assert len(primary) == len(p.database.primary_parameters)
    for param in p.database.primary_parameters:
        assert primary[param.name]["value"] == param.value, param.name
        assert primary[param.name]["applyMethod"] == param.apply_method, param.name
    db = inputs(mocks, "aws:rds/instance:Instance", "-primary")
    assert db["parameterGroupName"] == mocks.one("aws:rds/parameterGroup:ParameterGroup", "-primary").inputs.get("name", "mlflow-" + env + "-db-primary")


def test_replicas_and_their_parameter_group(stack):
    env, p, mocks, urns, _ = stack
    replicas = [r for r in mocks.of_type("aws:rds/instance:Instance") if "-replica-" in r.name]
    assert len(replicas) == p.database.replicas.count
    if not replicas:
        assert not [g for g in mocks.of_type("aws:rds/parameterGroup:ParameterGroup") if g.name.endswith("-replica")]
        return
    group = _group(mocks, "-replica")
    for param in p.database.replica_parameters:
        assert group[param.name]["value"] == param.value and group[param.name]["applyMethod"] == param.apply_method
    assert group["hot_standby_feedback"]["value"] == "1"
    zones = set()
    for r in replicas:
        assert r.inputs["replicateSourceDb"] == f"mlflow-{env}-db-primary"
        assert r.inputs["instanceClass"] == p.database.instance.instance_class
        assert r.inputs["publiclyAccessible"] is False and r.inputs["storageEncrypted"] is True
        zones.add(r.inputs["availabilityZone"])
    assert zones <= set(p.placement.training_availability_zones)


def _containers(mocks, role):
    task = inputs(mocks, "aws:ecs/taskDefinition:TaskDefinition", f"-{role}")
    return task, {c["name"]: c for c in json.loads(task["containerDefinitions"])}


@pytest.mark.parametrize("role", ["api", "ui"])
def test_fleet_sizes_workers_pools_and_ulimit(stack, role):
    env, p, mocks, urns, _ = stack
    fleet = getattr(p.tracking, role)
    server = getattr(p.tracking, role).server
    task, containers = _containers(mocks, role)
    assert task["cpu"] == str(int(fleet.vcpu * 1024)) and task["memory"] == str(int(fleet.memory_gib * 1024))
    main = containers["mlflow"]
    assert main["command"][:2] == ["server", "--"]
    command = main["command"][2:]
    assert command[command.index("--workers") + 1] == str(fleet.workers)
    env_vars = {e["name"]: e["value"] for e in main["environment"]}
    for key, value in server.environment.items():
        assert env_vars[key] == value
    pool = {t.role: t for t in p.tracking.tiers}[role].pool
    assert env_vars["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"] == str(pool.pool_size)
    assert env_vars["MLFLOW_SQLALCHEMYSTORE_MAX_OVERFLOW"] == str(pool.max_overflow)
    assert main["ulimits"] == [{"name": "nofile", "softLimit": server.nofile, "hardLimit": server.nofile}]
    assert server.nofile >= 65_536
    if fleet.runs_migrations:  # the API's tasks: the schema upgrade once per deploy, then the server
        assert main["dependsOn"] == [{"containerName": "migrate", "condition": "SUCCESS"}]
        assert containers["migrate"]["command"] == ["migrate"]
    else:  # the UI's: the server alone, waiting for the schema its MLflow expects
        assert "dependsOn" not in main and list(containers) == ["mlflow"]
        assert env_vars["MLFLOW_INFRA_SCHEMA_WAIT_S"] == "300"
    assert main["logConfiguration"]["logDriver"] == "awslogs"
    service = inputs(mocks, "aws:ecs/service:Service", f"-{role}")
    assert service["desiredCount"] == fleet.service_min_count == fleet.min_count // fleet.services
    assert service["deploymentCircuitBreaker"] == {"enable": True, "rollback": True}
    assert service["networkConfiguration"]["assignPublicIp"] is False
    target = inputs(mocks, "aws:appautoscaling/target:Target", f"-{role}")
    assert (target["minCapacity"], target["maxCapacity"]) == (fleet.service_min_count, fleet.service_max_count)


@pytest.mark.parametrize("role", ["api", "ui"])
def test_no_credentials_in_environment_or_command(stack, role):
    env, p, mocks, urns, _ = stack
    _, containers = _containers(mocks, role)
    for container in containers.values():
        text = json.dumps(container.get("environment", [])) + json.dumps(container["command"])
        assert "password" not in text.lower() and "postgresql://" not in text
        names = {"DB_USERNAME", "DB_PASSWORD"} | ({"APP_DB_USERNAME", "APP_DB_PASSWORD"} if container["name"] == "migrate" else set())
        assert {s["name"] for s in container["secrets"]} == names


def test_ui_reads_from_the_replica(stack):
    env, p, mocks, urns, _ = stack
    _, containers = _containers(mocks, "ui")
    env_vars = {e["name"]: e["value"] for e in containers["mlflow"]["environment"]}
    if p.tracking.ui_reads_from_replica.value:
        assert env_vars["DB_REPLICA_HOST"].startswith(f"mlflow-{env}-db-replica-0.")
    else:
        assert "DB_REPLICA_HOST" not in env_vars


def _ingress(mocks, suffix):
    return inputs(mocks, "aws:ec2/securityGroup:SecurityGroup", suffix).get("ingress", [])


def test_security_group_rules(stack):
    env, p, mocks, urns, _ = stack
    db_rules = _ingress(mocks, "-db")
    assert all(r["fromPort"] == 5432 and r["toPort"] == 5432 for r in db_rules)
    assert all(not r.get("cidrBlocks") for r in db_rules), "the database admits security groups only"
    for sg in mocks.of_type("aws:ec2/securityGroup:SecurityGroup"):
        for rule in sg.inputs.get("ingress", []):
            if "0.0.0.0/0" in rule.get("cidrBlocks", []):
                # only an internet-facing UI opens to the world, and only for HTTPS and its redirect
                assert environment(env).tracking.ui.internet_facing, sg.name
                assert sg.name.endswith("-ui-lb") and rule["fromPort"] in (80, 443), sg.name
    tasks = _ingress(mocks, "-tasks")
    # the UI's readiness port, for its load balancer's health checks, when the UI reads a replica
    assert [(r["fromPort"], r["toPort"]) for r in tasks] == [(5000, 5000)] + ([(5001, 5001)] if p.tracking.ui.reads_from_replica else [])


def test_load_balancers_internal_with_health_checks(stack):
    env, p, mocks, urns, _ = stack
    for role in ("api", "ui"):
        lb = inputs(mocks, "aws:lb/loadBalancer:LoadBalancer", f"-{role}")
        assert lb["internal"] is True
        assert lb["enableDeletionProtection"] == (p.tier == "production")
        tg = inputs(mocks, "aws:lb/targetGroup:TargetGroup", f"-{role}")
        reads_replica = role == "ui" and p.tracking.ui.reads_from_replica
        assert (tg["healthCheck"]["path"], tg["healthCheck"]["port"]) == (("/ready", "5001") if reads_replica else ("/health", "traffic-port"))


def test_artifacts_bucket_is_closed(stack):
    """The artifact bucket and, with disaster recovery, its replica in the second region."""
    env, p, mocks, urns, _ = stack
    buckets = mocks.of_type("aws:s3/bucket:Bucket")
    assert len(buckets) == (2 if p.recovery.mode != "none" else 1)
    for block in (r.inputs for r in mocks.of_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")):
        assert all(block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"))
    versioning = mocks.of_type("aws:s3/bucketVersioning:BucketVersioning")
    assert len(versioning) == len(buckets) and all(v.inputs["versioningConfiguration"]["status"] == "Enabled" for v in versioning)
    retention = load_environment(ROOT / "stacks" / f"{env}.yaml", ROOT / "stacks").workload.retention_days
    lifecycles = mocks.of_type("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    assert len(lifecycles) == len(buckets) and all(r.inputs["rules"][0]["expiration"]["days"] == retention for r in lifecycles)


def test_placement_and_outputs(stack):
    env, p, mocks, urns, outputs = stack
    tracking_uri, ui_url, primary, replicas, client_sg, bucket, _ = outputs
    assert tracking_uri.startswith("http://mlflow-") and ".elb.amazonaws.com" in tracking_uri
    assert primary.startswith(f"mlflow-{env}-db-primary.")
    assert len(replicas) == p.database.replicas.count
    assert client_sg and bucket
    s3 = [e for e in mocks.of_type("aws:ec2/vpcEndpoint:VpcEndpoint") if e.inputs["vpcEndpointType"] == "Gateway"]
    assert len(s3) == 1 and s3[0].inputs["serviceName"] == f"com.amazonaws.{p.region}.s3"
    interface = [e for e in mocks.of_type("aws:ec2/vpcEndpoint:VpcEndpoint") if e.inputs["vpcEndpointType"] == "Interface"]
    assert bool(interface) == p.placement.interface_endpoints.value
    peering = mocks.of_type("aws:ec2/vpcPeeringConnection:VpcPeeringConnection")
    assert bool(peering) == p.placement.peering.value
    if p.placement.tracking_vpc == "training":
        db = inputs(mocks, "aws:rds/instance:Instance", "-primary")
        subnet_group = inputs(mocks, "aws:rds/subnetGroup:SubnetGroup")
        spec = load_environment(ROOT / "stacks" / f"{env}.yaml", ROOT / "stacks")
        assert subnet_group["subnetIds"] == [s.id for s in spec.placement.training_vpc.subnets]
        if not db["multiAz"]:
            assert db["availabilityZone"] in p.placement.training_availability_zones


def test_alarms_match_the_cost_estimate(stack):

    env, p, mocks, urns, _ = stack
    alarms = mocks.of_type("aws:cloudwatch/metricAlarm:MetricAlarm")
    replicas = p.database.replicas.count
    # per replica a lag alarm and (beyond the first) its UI service's CPU; with replicas the UI's unhealthy targets
    assert len(alarms) == len(p.alarms) == 10 + replicas + max(0, replicas - 1) + (1 if replicas else 0)
    connections = next(a.inputs for a in alarms if a.name.endswith("-db-connections"))
    assert connections["threshold"] == round(p.connection_budget.max_connections * 0.9, 3)
    assert all(a.inputs["alarmActions"] for a in alarms)


def test_every_taggable_resource_carries_environment_and_owner(stack):
    env, p, mocks, urns, _ = stack
    for r in mocks.resources:
        if "tags" in r.inputs and isinstance(r.inputs["tags"], dict):
            assert r.inputs["tags"].get("environment") == env and r.inputs["tags"].get("owner"), r.name


def test_production_database_is_protected():
    from infra import MlflowTracking  # noqa: F401

    mocks, component, urns, _ = render("prod")
    db = component.database.primary
    assert db._protect is True  # pulumi keeps it from being deleted or replaced
    assert all(r._protect for r in component.database.replicas)


def test_ec2_variant_has_imdsv2_encrypted_volumes_and_limits():
    spec = variant("prod", **{"tracking.compute": "ec2"})
    p = plan(spec)
    mocks, component, urns, _ = render("prod", spec)
    assert not mocks.of_type("aws:ecs/service:Service")
    for role in ("api", "ui"):
        template = inputs(mocks, "aws:ec2/launchTemplate:LaunchTemplate", f"-{role}")
        assert template["metadataOptions"]["httpTokens"] == "required"
        assert template["blockDeviceMappings"][0]["ebs"]["encrypted"] == "true"
        assert template["instanceType"] == getattr(p.tracking, role).instance_type
        script = base64.b64decode(template["userData"]).decode()
        nofile = getattr(p.tracking, role).server.nofile
        assert f"nofile={nofile}:{nofile}" in script, "docker run --ulimit, as the ECS container's ulimits"
        group = inputs(mocks, "aws:autoscaling/group:Group", f"-{role}")
        fleet = getattr(p.tracking, role)
        assert (group["minSize"], group["maxSize"]) == (fleet.service_min_count, fleet.service_max_count)
        assert group["instanceRefresh"]["strategy"] == "Rolling"
        assert len(group["vpcZoneIdentifiers"]) == len(p.placement.availability_zones)


def test_rds_proxy_when_the_budget_needs_it():
    spec = variant("dev", **{"database.rds_proxy": "on"})
    p = plan(spec)
    mocks, component, urns, outputs = render("dev", spec)
    proxy = inputs(mocks, "aws:rds/proxy:Proxy")
    assert proxy["requireTls"] is True and proxy["engineFamily"] == "POSTGRESQL"
    assert proxy["auths"][0]["authScheme"] == "SECRETS" and proxy["auths"][0]["iamAuth"] == "DISABLED"
    group = inputs(mocks, "aws:rds/proxyDefaultTargetGroup:ProxyDefaultTargetGroup")
    assert group["connectionPoolConfig"]["maxConnectionsPercent"] == p.connection_budget.proxy.max_connections_percent
    _, containers = _containers(mocks, "api")
    env_vars = {e["name"]: e["value"] for e in containers["mlflow"]["environment"]}
    assert ".proxy-" in env_vars["DB_HOST"], "the servers connect through the proxy"


def test_internet_facing_ui_is_https_only():
    spec = variant("dev", **{"tracking.auth": "basic", "tracking.ui.internet_facing": True,
                             "tracking.ui.certificate_arn": "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-aaaa-bbbb-cccc-0123456789ab"})
    mocks, component, urns, _ = render("dev", spec)
    lb = inputs(mocks, "aws:lb/loadBalancer:LoadBalancer", "-ui")
    assert lb["internal"] is False
    assert inputs(mocks, "aws:lb/loadBalancer:LoadBalancer", "-api")["internal"] is True
    https = inputs(mocks, "aws:lb/listener:Listener", "-ui-https")
    assert https["protocol"] == "HTTPS" and https["certificateArn"].startswith("arn:aws:acm:")
    redirect = inputs(mocks, "aws:lb/listener:Listener", "-ui-http")["defaultActions"][0]
    assert redirect["type"] == "redirect" and redirect["redirect"]["protocol"] == "HTTPS"


@pytest.mark.parametrize("compute", ["ecs", "ec2"])
def test_basic_auth_secret_hangs_under_the_service_and_only_the_secret_readers_get_it(compute):
    spec = variant("staging", **{"tracking.auth": "basic", "tracking.compute": compute})
    mocks, component, urns, _ = render("staging", spec)
    secret_urns = [u for u in urns if "aws:secretsmanager/" in u and "-svc-auth" in u]
    assert len(secret_urns) == 2 and all("mlflow-infra:service:TrackingService$aws:secretsmanager/" in u for u in secret_urns)
    secret = mocks.one("aws:secretsmanager/secret:Secret", "-svc-auth")
    assert secret.inputs["kmsKeyId"] == f"arn:aws:mock:us-east-1:123456789012:key/{mocks.one('aws:kms/key:Key', '-db-key').name}"
    arn = f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{secret.name}-AbCdEf"
    for role in ("api", "ui"):
        reader = json.loads(inputs(mocks, "aws:iam/rolePolicy:RolePolicy", f"-{role}-secret")["policy"])
        assert arn in reader["Statement"][0]["Resource"], "the execution role (ECS) or instance role (EC2) reads it"
        artifacts = inputs(mocks, "aws:iam/rolePolicy:RolePolicy", f"-{role}-artifacts")["policy"]
        assert secret.name not in artifacts, "the ECS task role never reads secrets"
    if compute == "ecs":
        _, containers = _containers(mocks, "api")
        assert {s["name"] for s in containers["mlflow"]["secrets"]} == {
            "DB_USERNAME", "DB_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY", "AUTH_ADMIN_USERNAME", "AUTH_ADMIN_PASSWORD"}


def test_new_vpc_is_peered_with_the_training_vpc_both_ways():
    spec = variant("staging", **{"placement.tracking_vpc": "new",
                                 "placement.new_vpc": {"cidr": "10.70.0.0/20", "availability_zones": ["us-east-1a", "us-east-1b"],
                                                       "nat_gateway": False}})
    mocks, component, urns, _ = render("staging", spec)
    peering = inputs(mocks, "aws:ec2/vpcPeeringConnection:VpcPeeringConnection")
    assert peering["peerVpcId"] == spec.placement.training_vpc.vpc_id and peering["autoAccept"] is True
    routes = [r.inputs for r in mocks.of_type("aws:ec2/route:Route")]
    assert {r["destinationCidrBlock"] for r in routes} == {"10.20.0.0/16", "10.70.0.0/20"}
    assert any(r["routeTableId"] == "rtb-0a1b2c3d4e5f60733" for r in routes)
    assert len(mocks.of_type("aws:ec2/subnet:Subnet")) == 2  # private only: no NAT, internal load balancers
    # training compute attaches the client group, so it lives in the training VPC
    assert inputs(mocks, "aws:ec2/securityGroup:SecurityGroup", "-clients")["vpcId"] == spec.placement.training_vpc.vpc_id


def test_component_used_from_another_program(monkeypatch):
    import runpy

    exports = {}
    monkeypatch.setattr(pulumi, "export", lambda name, value: exports.__setitem__(name, value))
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="research-platform", stack="staging", preview=False)

    @pulumi.runtime.test
    def program():
        runpy.run_path(str(ROOT / "tests" / "consumer" / "__main__.py"), run_name="__main__")
        return exports["MLFLOW_TRACKING_URI"].apply(lambda uri: exports.__setitem__("uri", uri))

    program()
    assert exports["uri"].startswith("http://research-svc-api")
    nodes = mocks.one("aws:ec2/launchTemplate:LaunchTemplate", "training-nodes")
    assert nodes.inputs["vpcSecurityGroupIds"] == ["research-net-clients-id"]
    assert mocks.one("aws:rds/instance:Instance", "research-db-primary").inputs["instanceClass"].startswith("db.")
