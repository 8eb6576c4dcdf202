"""Losing a region: the plan's recovery (mode, second region, recovery point and time, cost), its
validation, and what the stack declares for it (RDS backup replication and the artifact replica in
the second region, each with a key of that region), checked against botocore's models."""

from __future__ import annotations

import pytest

from helpers import GLOBAL_DR, environment, render, validate, variant, wire
from infra.planning.plan import plan


def test_production_defaults_to_backups_in_the_regions_pair_and_other_tiers_to_none():
    prod = plan(environment("prod")).recovery
    assert (prod.mode, prod.secondary_region) == ("backups", "us-west-2")
    assert "us-east-1's default pair" in prod.reason and "every 5 minutes" in prod.recovery_point and prod.monthly_usd > 0
    for env in ("dev", "staging"):
        assert plan(environment(env)).recovery.mode == "none"


def test_production_without_recovery_is_warned_about():
    p = plan(variant("prod", **{"database.disaster_recovery": "none"}))
    assert p.recovery.mode == "none" and any("disaster_recovery none" in w for w in p.warnings)
    assert not any(line.component == "disaster recovery" for line in p.cost.lines)


def test_global_takes_aurora_with_seconds_of_recovery_point():
    p = plan(variant("prod", **GLOBAL_DR))
    assert p.database.engine.engine == "aurora" and "Global Database" in p.database.engine.reason
    assert (p.recovery.mode, p.recovery.secondary_region) == ("global", "us-west-2")
    assert p.recovery.recovery_point.startswith("typically seconds") and p.recovery.recovery_time.startswith("minutes")
    assert any(line.component == "disaster recovery" and line.monthly_usd == p.recovery.monthly_usd for line in p.cost.lines)


def test_global_moves_a_burstable_class_to_a_memory_optimized_one():
    """An Aurora Global Database requires memory-optimized classes: dev's burstable class is
    replaced (and said so) on the writer, the readers and the secondary alike."""
    assert plan(environment("dev")).database.instance.instance_class.startswith("db.t")
    p = plan(variant("dev", **GLOBAL_DR))
    cls = p.database.instance.instance_class
    assert cls.startswith("db.r") and "requires memory-optimized classes" in p.database.instance.reason
    assert f"one {cls} reader" in p.recovery.reason


@pytest.fixture(scope="module")
def prod_global():
    mocks, component, urns, outputs = render("prod", variant("prod", **GLOBAL_DR))
    return mocks


def test_the_cluster_becomes_a_global_database_followed_by_an_encrypted_secondary_there(prod_global):
    m = prod_global
    glob = wire(m.one("aws:rds/globalCluster:GlobalCluster").inputs)
    assert glob["sourceDbClusterIdentifier"].endswith(":cluster/mlflow-prod-db-cluster")
    assert glob["forceDestroy"] is True and glob["deletionProtection"] is True
    region = m.one("pulumi:providers:aws", "-db-secondary-region")
    assert region.inputs["region"] == "us-west-2"
    secondary = m.one("aws:rds/cluster:Cluster", "-secondary")
    s = wire(secondary.inputs)
    assert "mlflow-prod-db-secondary-region" in secondary.provider
    assert s["globalClusterIdentifier"] == "mlflow-prod-db-global-id"
    # AWS refuses a master user or password on a secondary: it takes the primary's
    assert not {"masterUsername", "masterPassword", "databaseName", "snapshotIdentifier"} & set(s)
    key = m.one("aws:kms/key:Key", "-secondary-key")
    assert key.provider == secondary.provider and s["kmsKeyId"].endswith("mlflow-prod-db-secondary-key")
    assert s["storageEncrypted"] is True and s["deletionProtection"] is True and s["backupRetentionPeriod"] == 14
    subnets = m.one("aws:rds/subnetGroup:SubnetGroup", "-secondary-subnets")
    assert subnets.provider == secondary.provider
    assert subnets.inputs["subnetIds"] == ["subnet-0aa11bb22cc33dd44", "subnet-0ee55ff66aa77bb88"]
    sg = m.one("aws:ec2/securityGroup:SecurityGroup", "-db-secondary").inputs
    assert sg["vpcId"] == "vpc-0b2c3d4e5f6a7b8c9"
    assert [(r["fromPort"], r["cidrBlocks"]) for r in wire(sg["ingress"])] == [(5432, ["10.60.0.0/16"])]
    validate("rds", "CreateGlobalCluster", {"GlobalClusterIdentifier": glob["globalClusterIdentifier"],
                                            "SourceDBClusterIdentifier": glob["sourceDbClusterIdentifier"],
                                            "DeletionProtection": glob["deletionProtection"]})
    validate("rds", "CreateDBCluster", {
        "DBClusterIdentifier": "secondary", "GlobalClusterIdentifier": s["globalClusterIdentifier"], "Engine": s["engine"],
        "EngineVersion": s["engineVersion"], "DBSubnetGroupName": s["dbSubnetGroupName"], "VpcSecurityGroupIds": s["vpcSecurityGroupIds"],
        "DBClusterParameterGroupName": s["dbClusterParameterGroupName"], "StorageEncrypted": s["storageEncrypted"],
        "KmsKeyId": s["kmsKeyId"], "BackupRetentionPeriod": s["backupRetentionPeriod"], "DeletionProtection": s["deletionProtection"],
        "EnableCloudwatchLogsExports": s["enabledCloudwatchLogsExports"]})


def test_the_secondary_runs_one_memory_optimized_instance_with_the_primarys_parameters(prod_global):
    m = prod_global
    secondary = m.one("aws:rds/cluster:Cluster", "-secondary")
    instance = m.one("aws:rds/clusterInstance:ClusterInstance", "-secondary-0")
    i = wire(instance.inputs)
    assert instance.provider == secondary.provider and i["clusterIdentifier"] == "mlflow-prod-db-secondary-id"
    writer = wire(m.one("aws:rds/clusterInstance:ClusterInstance", "-writer").inputs)
    assert i["instanceClass"] == writer["instanceClass"] and i["instanceClass"].startswith("db.r")
    assert i["performanceInsightsKmsKeyId"].endswith("mlflow-prod-db-secondary-key"), "a key of the second region"
    for level in ("cluster", "instances"):
        here = m.one("aws:rds/" + ("clusterParameterGroup:ClusterParameterGroup" if level == "cluster" else "parameterGroup:ParameterGroup"),
                     f"-db-{level}").inputs
        there = m.one("aws:rds/" + ("clusterParameterGroup:ClusterParameterGroup" if level == "cluster" else "parameterGroup:ParameterGroup"),
                      f"-secondary-{level}")
        assert there.provider == secondary.provider and wire(there.inputs["parameters"]) == wire(here["parameters"])
    # Aurora offers no reader autoscaling on a secondary: the one target is the primary's
    assert [t.inputs["resourceId"] for t in m.of_type("aws:appautoscaling/target:Target")
            if t.inputs["serviceNamespace"] == "rds"] == ["cluster:mlflow-prod-db-cluster"]
    # the secondary is the copy in the second region: no AWS Backup copy beside it
    assert not m.of_type("aws:backup/plan:Plan")
    assert m.one("pulumi:providers:aws", "-artifacts-replica-region").inputs["region"] == "us-west-2"


def test_a_cluster_restores_as_a_copy_on_write_clone_of_the_promoted_secondary():
    arn = "arn:aws:rds:us-east-1:123456789012:cluster:mlflow-prod-db-secondary-0a1b2c3"
    spec = variant("prod", **{"database.engine": "aurora", "database.restore_from": arn})
    assert plan(spec).database.restore.reason.startswith("a copy-on-write clone of a DB cluster at its latest restorable time")
    mocks, *_ = render("prod", spec)
    c = wire(mocks.one("aws:rds/cluster:Cluster").inputs)
    assert c["restoreToPointInTime"] == {"sourceClusterIdentifier": arn, "restoreType": "copy-on-write", "useLatestRestorableTime": True}
    assert "masterUsername" not in c and "databaseName" not in c and c["masterPassword"], "the stack's password is set once restored"
    validate("rds", "RestoreDBClusterToPointInTime", {
        "DBClusterIdentifier": "mlflow-prod-db-cluster", "SourceDBClusterIdentifier": arn, "RestoreType": "copy-on-write",
        "UseLatestRestorableTime": True, "DBSubnetGroupName": c["dbSubnetGroupName"], "VpcSecurityGroupIds": c["vpcSecurityGroupIds"],
        "KmsKeyId": c["kmsKeyId"], "DBClusterParameterGroupName": c["dbClusterParameterGroupName"]})


def test_aurora_backups_are_daily_snapshot_copies():
    r = plan(variant("prod", **{"database.engine": "aurora"})).recovery
    assert r.mode == "backups" and r.recovery_point.startswith("up to 24 h") and "AWS Backup" in r.reason


@pytest.fixture(scope="module")
def prod():
    mocks, component, urns, outputs = render("prod")
    return mocks


def test_rds_replicates_its_backups_from_the_second_region_with_a_key_there(prod):
    replication = prod.one("aws:rds/instanceAutomatedBackupsReplication:InstanceAutomatedBackupsReplication")
    provider = prod.one("pulumi:providers:aws", "-db-backup-region")
    assert provider.inputs["region"] == "us-west-2"
    key = prod.one("aws:kms/key:Key", "-db-backup-key")
    assert replication.provider.startswith("urn:") and "mlflow-prod-db-backup-region" in replication.provider
    assert key.provider == replication.provider, "the backups' key is in the second region"
    i = wire(replication.inputs)
    assert i["sourceDbInstanceArn"].endswith("mlflow-prod-db-primary") and i["retentionPeriod"] == 14
    validate("rds", "StartDBInstanceAutomatedBackupsReplication", {
        "SourceDBInstanceArn": i["sourceDbInstanceArn"], "BackupRetentionPeriod": i["retentionPeriod"], "KmsKeyId": i["kmsKeyId"]})


def test_artifacts_replicate_to_a_versioned_encrypted_bucket_in_the_second_region(prod):
    config = prod.one("aws:s3/bucketReplicationConfig:BucketReplicationConfig").inputs
    replica = prod.one("aws:s3/bucket:Bucket", "-replica-bucket")
    assert replica.provider and "mlflow-prod-artifacts-replica-region" in replica.provider
    assert prod.one("pulumi:providers:aws", "-artifacts-replica-region").inputs["region"] == "us-west-2"
    rule = config["rules"][0]
    assert rule["destination"]["bucket"].endswith("mlflow-prod-artifacts-replica-bucket")
    assert rule["sourceSelectionCriteria"]["sseKmsEncryptedObjects"]["status"] == "Enabled"
    assert rule["destination"]["encryptionConfiguration"]["replicaKmsKeyId"].endswith("mlflow-prod-artifacts-replica-key")
    validate("s3", "PutBucketReplication", {"Bucket": "mlflow-prod-artifacts", "ReplicationConfiguration": {
        "Role": config["role"], "Rules": [{
            "ID": rule["id"], "Status": rule["status"], "Priority": wire(rule["priority"]), "Filter": {},
            "DeleteMarkerReplication": {"Status": rule["deleteMarkerReplication"]["status"]},
            "SourceSelectionCriteria": {"SseKmsEncryptedObjects": {"Status": "Enabled"}},
            "Destination": {"Bucket": rule["destination"]["bucket"], "StorageClass": rule["destination"]["storageClass"],
                            "EncryptionConfiguration": {"ReplicaKmsKeyID": rule["destination"]["encryptionConfiguration"]["replicaKmsKeyId"]}}}]}})
    versioning = {v.inputs["bucket"]: v.inputs["versioningConfiguration"]["status"]
                  for v in prod.of_type("aws:s3/bucketVersioning:BucketVersioning")}
    assert set(versioning.values()) == {"Enabled"} and len(versioning) == 2, "replication needs versioning on both buckets"


def test_staging_declares_nothing_in_a_second_region():
    mocks, *_ = render("staging")
    assert not mocks.of_type("pulumi:providers:aws")
    assert not mocks.of_type("aws:rds/instanceAutomatedBackupsReplication:InstanceAutomatedBackupsReplication")


def test_aurora_copies_a_daily_snapshot_to_a_vault_in_the_second_region():
    mocks, *_ = render("prod", variant("prod", **{"database.engine": "aurora"}))
    plan_ = mocks.one("aws:backup/plan:Plan").inputs
    rule = plan_["rules"][0]
    copies = mocks.one("aws:backup/vault:Vault", "-backup-copies")
    assert copies.provider and "mlflow-prod-db-backup-region" in copies.provider
    assert mocks.one("pulumi:providers:aws", "-db-backup-region").inputs["region"] == "us-west-2"
    assert rule["copyActions"][0]["destinationVaultArn"].endswith("mlflow-prod-db-backup-copies")
    assert rule["lifecycle"]["deleteAfter"] == rule["copyActions"][0]["lifecycle"]["deleteAfter"] == 14
    selection = mocks.one("aws:backup/selection:Selection").inputs
    assert selection["resources"] == ["arn:aws:mock:us-east-1:123456789012:cluster/mlflow-prod-db-cluster"]
    validate("backup", "CreateBackupPlan", {"BackupPlan": {"BackupPlanName": "mlflow-prod-db-backups", "Rules": [{
        "RuleName": rule["ruleName"], "TargetBackupVaultName": rule["targetVaultName"], "ScheduleExpression": rule["schedule"],
        "Lifecycle": {"DeleteAfterDays": wire(rule["lifecycle"]["deleteAfter"])},
        "CopyActions": [{"DestinationBackupVaultArn": rule["copyActions"][0]["destinationVaultArn"],
                         "Lifecycle": {"DeleteAfterDays": wire(rule["copyActions"][0]["lifecycle"]["deleteAfter"])}}]}]}})
    validate("backup", "CreateBackupSelection", {"BackupPlanId": "plan-id", "BackupSelection": {
        "SelectionName": selection["name"], "IamRoleArn": selection["iamRoleArn"], "Resources": selection["resources"]}})
    assert not mocks.of_type("aws:rds/instanceAutomatedBackupsReplication:InstanceAutomatedBackupsReplication")


AUTO_BACKUP = "arn:aws:rds:us-east-1:123456789012:auto-backup:ab-abcdefghijklmnopqrstuvwxyz"


def test_a_restored_primary_starts_from_the_replicated_backups_and_takes_the_stacks_password():
    spec = variant("prod", **{"database.restore_from": AUTO_BACKUP, "database.restore_time": "2026-11-28T03:00:00Z"})
    p = plan(spec)
    assert (p.database.restore.arn, p.database.restore.time) == (AUTO_BACKUP, "2026-11-28T03:00:00Z")
    assert p.database.restore.reason.startswith("a point-in-time restore of replicated automated backups to 2026-11-28T03:00:00Z")
    mocks, *_ = render("prod", spec)
    primary = wire(mocks.one("aws:rds/instance:Instance", "-primary").inputs)
    assert primary["restoreToPointInTime"] == {"sourceDbInstanceAutomatedBackupsArn": AUTO_BACKUP, "restoreTime": "2026-11-28T03:00:00Z"}
    assert primary["identifier"] == "mlflow-prod-db-primary" and "dbName" not in primary and "username" not in primary
    assert primary["password"], "the stack's master password is set on the restored instance"
    validate("rds", "RestoreDBInstanceToPointInTime", {
        "TargetDBInstanceIdentifier": primary["identifier"], "SourceDBInstanceAutomatedBackupsArn": AUTO_BACKUP,
        "RestoreTime": "2026-11-28T03:00:00Z", "DBInstanceClass": primary["instanceClass"], "MultiAZ": primary["multiAz"],
        "StorageType": primary["storageType"], "VpcSecurityGroupIds": primary["vpcSecurityGroupIds"]})


def test_an_aurora_cluster_restores_from_a_cluster_snapshot():
    arn = "arn:aws:rds:us-east-1:123456789012:cluster-snapshot:mlflow-prod-before-upgrade"
    mocks, *_ = render("prod", variant("prod", **{"database.engine": "aurora", "database.restore_from": arn}))
    cluster = mocks.one("aws:rds/cluster:Cluster").inputs
    assert cluster["snapshotIdentifier"] == arn and "masterUsername" not in cluster and "databaseName" not in cluster


def test_rds_backups_cannot_restore_into_an_aurora_plan():
    from infra.spec import SpecInvalid

    with pytest.raises(SpecInvalid, match="it restores an RDS instance but the plan chose Aurora"):
        plan(variant("prod", **{"database.restore_from": AUTO_BACKUP, "workload.concurrent_ui_users": 1000}))
