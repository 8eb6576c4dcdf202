"""TrackingAuroraCluster alone under Pulumi's mocks: the cluster, its writer and readers, the two
parameter groups, reader autoscaling and the proxy's read-only endpoint; the rendered inputs checked
against botocore's models (CreateDBCluster, CreateDBInstance for a cluster member,
RegisterScalableTarget, PutScalingPolicy, CreateDBProxyEndpoint) and the argument checks."""

from __future__ import annotations

import pytest

from infra.aws.aurora import AuroraArgs, GlobalSecondary, TrackingAuroraCluster
from infra.aws.database import ProxySettings
from infra.aws.parameter_group import ParameterSetting
from infra.planning.aurora_parameters import aurora_parameters
from infra.planning.parameters import ParameterInputs
from helpers import build_alone as build, validate, wire

SECONDARY = GlobalSecondary("us-west-2", "vpc-1", "10.60.0.0/16", ["subnet-a", "subnet-b"])
INPUTS = ParameterInputs(memory_bytes=64 * 2**30, vcpu=8, max_connections=800, engine_major=17)


def args(**changes) -> AuroraArgs:
    base = dict(subnet_ids=["subnet-0aaa1111", "subnet-0bbb2222"], security_group_ids=["sg-0123abcd"],
                instance_class="db.r7g.2xlarge", engine_version="17", writer_zone="us-east-1a",
                reader_zones=["us-east-1b", "us-east-1c"], readers_max=6,
                cluster_parameters=ParameterSetting.from_plan(aurora_parameters("cluster", INPUTS)),
                instance_parameters=ParameterSetting.from_plan(aurora_parameters("instance", INPUTS)),
                proxy=ProxySettings(), proxy_security_group_ids=["sg-0456cdef"])
    return AuroraArgs(**{**base, **changes})


@pytest.fixture(scope="module")
def mocks():
    return build(lambda: TrackingAuroraCluster("db", args()))


def test_an_encrypted_protected_cluster_with_a_writer_and_readers_in_their_zones(mocks):
    cluster = mocks.one("aws:rds/cluster:Cluster").inputs
    assert (cluster["engine"], cluster["engineVersion"], cluster["storageEncrypted"], cluster["deletionProtection"]) == (
        "aurora-postgresql", "17", True, True)
    assert cluster["kmsKeyId"].endswith("db-key") and cluster["finalSnapshotIdentifier"] == "db-final"
    assert cluster["enabledCloudwatchLogsExports"] == ["postgresql"]
    instances = {i.name: i.inputs for i in mocks.of_type("aws:rds/clusterInstance:ClusterInstance")}
    assert {n: (i["availabilityZone"], i["promotionTier"]) for n, i in instances.items()} == {
        "db-writer": ("us-east-1a", 0), "db-reader-0": ("us-east-1b", 1), "db-reader-1": ("us-east-1c", 1)}
    assert all(i["instanceClass"] == "db.r7g.2xlarge" and i["dbParameterGroupName"] == "db-instances" for i in instances.values())


def test_each_parameter_in_the_group_aurora_takes_it_in(mocks):
    cluster_group = mocks.one("aws:rds/clusterParameterGroup:ClusterParameterGroup").inputs
    instance_group = mocks.one("aws:rds/parameterGroup:ParameterGroup", "db-instances").inputs
    assert cluster_group["family"] == instance_group["family"] == "aurora-postgresql17"
    assert {"name": "rds.force_ssl", "value": "1", "applyMethod": "immediate"} in cluster_group["parameters"]
    assert {"name": "max_connections", "value": "800", "applyMethod": "pending-reboot"} in instance_group["parameters"]
    names = {p["name"] for p in cluster_group["parameters"] + instance_group["parameters"]}
    assert not names & {"checkpoint_timeout", "max_wal_size", "shared_buffers", "fsync"}


def test_readers_autoscale_on_cpu_between_the_managed_ones_and_the_ceiling(mocks):
    target = mocks.one("aws:appautoscaling/target:Target").inputs
    assert (target["serviceNamespace"], target["scalableDimension"], target["resourceId"]) == (
        "rds", "rds:cluster:ReadReplicaCount", "cluster:db-cluster")
    assert (target["minCapacity"], target["maxCapacity"]) == (2, 6)
    validate("application-autoscaling", "RegisterScalableTarget", {
        "ServiceNamespace": target["serviceNamespace"], "ResourceId": target["resourceId"],
        "ScalableDimension": target["scalableDimension"], "MinCapacity": wire(target["minCapacity"]),
        "MaxCapacity": wire(target["maxCapacity"])})
    policy = mocks.one("aws:appautoscaling/policy:Policy").inputs
    config = policy["targetTrackingScalingPolicyConfiguration"]
    validate("application-autoscaling", "PutScalingPolicy", {
        "PolicyName": "db-readers-cpu", "ServiceNamespace": "rds", "ResourceId": "cluster:db-cluster",
        "ScalableDimension": "rds:cluster:ReadReplicaCount", "PolicyType": policy["policyType"],
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": config["targetValue"],
            "PredefinedMetricSpecification": {"PredefinedMetricType": config["predefinedMetricSpecification"]["predefinedMetricType"]},
            "ScaleInCooldown": wire(config["scaleInCooldown"]), "ScaleOutCooldown": wire(config["scaleOutCooldown"])}})


def test_the_proxy_targets_the_cluster_and_reads_through_a_read_only_endpoint(mocks):
    target = mocks.one("aws:rds/proxyTarget:ProxyTarget").inputs
    assert target["dbClusterIdentifier"] == "db-cluster" and "dbInstanceIdentifier" not in target
    endpoint = mocks.one("aws:rds/proxyEndpoint:ProxyEndpoint").inputs
    assert endpoint["targetRole"] == "READ_ONLY"
    validate("rds", "CreateDBProxyEndpoint", {
        "DBProxyName": endpoint["dbProxyName"], "DBProxyEndpointName": endpoint["dbProxyEndpointName"],
        "VpcSubnetIds": endpoint["vpcSubnetIds"], "VpcSecurityGroupIds": endpoint["vpcSecurityGroupIds"],
        "TargetRole": endpoint["targetRole"]})


def test_the_cluster_matches_rds_create_db_cluster(mocks):
    c = wire(mocks.one("aws:rds/cluster:Cluster").inputs)
    validate("rds", "CreateDBCluster", {
        "DBClusterIdentifier": "db-cluster", "Engine": c["engine"], "EngineVersion": c["engineVersion"],
        "DatabaseName": c["databaseName"], "MasterUsername": c["masterUsername"], "MasterUserPassword": c["masterPassword"],
        "DBSubnetGroupName": c["dbSubnetGroupName"], "VpcSecurityGroupIds": c["vpcSecurityGroupIds"],
        "DBClusterParameterGroupName": c["dbClusterParameterGroupName"], "StorageEncrypted": c["storageEncrypted"],
        "KmsKeyId": c["kmsKeyId"], "BackupRetentionPeriod": c["backupRetentionPeriod"],
        "PreferredBackupWindow": c["preferredBackupWindow"], "PreferredMaintenanceWindow": c["preferredMaintenanceWindow"],
        "DeletionProtection": c["deletionProtection"], "CopyTagsToSnapshot": c["copyTagsToSnapshot"],
        "EnableCloudwatchLogsExports": c["enabledCloudwatchLogsExports"]})
    for member in mocks.of_type("aws:rds/clusterInstance:ClusterInstance"):
        i = wire(member.inputs)
        validate("rds", "CreateDBInstance", {
            "DBInstanceIdentifier": member.name, "DBClusterIdentifier": i["clusterIdentifier"], "Engine": i["engine"],
            "DBInstanceClass": i["instanceClass"], "AvailabilityZone": i["availabilityZone"], "PromotionTier": i["promotionTier"],
            "DBParameterGroupName": i["dbParameterGroupName"], "PubliclyAccessible": i["publiclyAccessible"],
            "EnablePerformanceInsights": i["performanceInsightsEnabled"], "MonitoringInterval": i["monitoringInterval"]})
        # storage and backups are the cluster's: a member that named them would be refused
        assert not {"allocatedStorage", "storageType", "backupRetentionPeriod", "kmsKeyId"} & set(member.inputs)


def test_io_optimized_storage_and_no_autoscaling_without_headroom():
    mocks = build(lambda: TrackingAuroraCluster("db", args(storage_type="aurora-iopt1", readers_max=2, proxy=None)))
    assert mocks.one("aws:rds/cluster:Cluster").inputs["storageType"] == "aurora-iopt1"
    assert not mocks.of_type("aws:appautoscaling/target:Target") and not mocks.of_type("aws:rds/proxyEndpoint:ProxyEndpoint")


def test_a_writer_alone_gets_no_read_only_proxy_endpoint():
    # RDS Proxy's read-only endpoint refuses every request while the cluster has no reader
    mocks = build(lambda: TrackingAuroraCluster("db", args(reader_zones=[], readers_max=0)))
    assert not mocks.of_type("aws:rds/proxyEndpoint:ProxyEndpoint")
    assert len(mocks.of_type("aws:rds/clusterInstance:ClusterInstance")) == 1


@pytest.mark.parametrize("change, message", [
    ({"storage_type": "aurora"}, "AuroraArgs.storage_type: 'aurora' is not allowed; expected '' (Standard) or 'aurora-iopt1'"),
    ({"readers_max": 16}, "AuroraArgs.readers_max: 16 is not allowed; expected 0 or from len(reader_zones) (2) to 15"),
    ({"readers_max": 1}, "AuroraArgs.readers_max: 1 is not allowed"),
    ({"engine_version": "x"}, "ParameterGroupArgs.family: 'aurora-postgresqlx' is not allowed"),
    ({"global_secondary": SECONDARY, "instance_class": "db.t4g.large"},
     "AuroraArgs.instance_class: 'db.t4g.large' is not allowed with global_secondary; expected a memory optimized class"),
    ({"global_secondary": SECONDARY, "backup_copy_region": "us-west-2"},
     "AuroraArgs.backup_copy_region: 'us-west-2' is not allowed with global_secondary"),
    ({"global_secondary": GlobalSecondary("us-west-2", "vpc-1", "10.60.0.0/16", ["subnet-a"])},
     "AuroraArgs.global_secondary.subnet_ids: 1 given; expected subnets in two zones or more"),
])
def test_bad_arguments_declare_nothing(change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        build(lambda: TrackingAuroraCluster("db", args(**change)))
