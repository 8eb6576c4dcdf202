"""doctor on an Aurora deployment (moto): the cluster's writer and readers read as the plan's
primary and replicas, the cluster found by its tag for the readers' lag alarm, and its cluster
parameter group checked against the plan's cluster-level parameters."""

from __future__ import annotations

import boto3
from moto import mock_aws

from helpers import variant
from infra.doctor import aws as doctor_aws
from infra.doctor.cloud import _aurora_cluster
from infra.doctor.findings import Report
from infra.endpoints import ENVIRONMENT_TAG, TARGET_TAG
from infra.planning.plan import plan

CAPACITY = plan(variant("prod", **{"database.engine": "aurora"}))


def tags(target: str) -> list[dict]:
    return [{"Key": ENVIRONMENT_TAG, "Value": "prod"}, {"Key": TARGET_TAG, "Value": target}]


def deploy(rds, wrong: dict[str, str]) -> None:
    rds.create_db_cluster_parameter_group(DBClusterParameterGroupName="mlflow-prod-db-cluster",
                                          DBParameterGroupFamily="aurora-postgresql17", Description="tuned")
    rds.modify_db_cluster_parameter_group(DBClusterParameterGroupName="mlflow-prod-db-cluster", Parameters=[
        {"ParameterName": p.name, "ParameterValue": wrong.get(p.name, p.value), "ApplyMethod": p.apply_method}
        for p in CAPACITY.database.cluster_parameters])
    rds.create_db_cluster(DBClusterIdentifier="mlflow-prod-db-cluster", Engine="aurora-postgresql", MasterUsername="mlflow",
                          MasterUserPassword="x" * 20, DBClusterParameterGroupName="mlflow-prod-db-cluster", Tags=tags("cluster"))
    for target in ("writer", "reader-0"):
        rds.create_db_instance(DBInstanceIdentifier=f"mlflow-prod-db-{target}", DBClusterIdentifier="mlflow-prod-db-cluster",
                               Engine="aurora-postgresql", DBInstanceClass=CAPACITY.database.instance.instance_class, Tags=tags(target))


def test_the_writer_is_the_primary_and_the_cluster_parameters_are_checked():
    with mock_aws():
        rds = boto3.client("rds", region_name="us-east-1")
        deploy(rds, {"autovacuum_naptime": "60"})
        databases = doctor_aws.read_databases(rds, "prod")
        assert set(databases) == {"primary", "replica-0"}
        assert databases["primary"]["DBInstanceIdentifier"] == "mlflow-prod-db-writer"
        report, deployment = Report("prod"), doctor_aws.Deployment(databases=databases)
        _aurora_cluster(report, CAPACITY, rds, deployment)
        assert deployment.dimensions["cluster"] == {"DBClusterIdentifier": "mlflow-prod-db-cluster"}
        drift = [f.evidence for f in report.findings]
        assert drift == ["cluster: autovacuum_naptime is 60 in parameter group mlflow-prod-db-cluster; the plan sets 15 (s)"]
        # nothing about provisioned IOPS: Aurora's storage has none
        assert not [f for f in doctor_aws.database_findings(databases, CAPACITY) if "IOPS" in f.evidence]


def test_an_rds_deployment_has_no_cluster():
    with mock_aws():
        rds = boto3.client("rds", region_name="us-east-1")
        assert doctor_aws.read_cluster(rds, "prod") is None


# ---------------------------------------------------------------------------------------------
# db apply-pending on Aurora: the cluster parameter group's pending members, readers first

def member(identifier: str, cluster_status: str = "in-sync", instance_status: str = "in-sync", multi_az: bool = True) -> dict:
    return {"DBInstanceIdentifier": identifier, "DBClusterIdentifier": "c", "MultiAZ": multi_az, "DBInstanceStatus": "available",
            "DBParameterGroups": [{"DBParameterGroupName": "instances", "ParameterApplyStatus": instance_status}]}


def cluster_of(*pending_ids: str, members=("w", "r0", "r1")) -> dict:
    return {"DBClusterIdentifier": "c", "DBClusterParameterGroup": "cluster-group",
            "DBClusterMembers": [{"DBInstanceIdentifier": m, "DBClusterParameterGroupStatus":
                                  "pending-reboot" if m in pending_ids else "in-sync"} for m in members]}


def test_a_pending_cluster_parameter_group_reboots_its_members_readers_first_and_never_by_failover():
    from infra.doctor import pending

    databases = {"primary": member("w"), "replica-1": member("r1", instance_status="pending-reboot"), "replica-0": member("r0")}
    steps = pending.reboot_plan(databases, cluster=cluster_of("w", "r0"))
    assert [(s.node, s.failover, s.groups, s.cluster) for s in steps] == [
        ("replica-0", False, ("cluster-group",), "c"), ("replica-1", False, ("instances",), None),
        ("primary", False, ("cluster-group",), "c")]
    # a Multi-AZ primary of RDS (no cluster) goes through its standby; an Aurora writer does not
    writer = member("w", instance_status="pending-reboot")
    primary = {k: v for k, v in writer.items() if k != "DBClusterIdentifier"}
    assert [s.failover for s in pending.reboot_plan({"primary": primary})] == [True]
    assert [s.failover for s in pending.reboot_plan({"primary": writer}, cluster=cluster_of())] == [False]
    assert pending.reboot_plan(databases, cluster=cluster_of()) == pending.reboot_plan(databases)


def test_a_member_is_done_only_when_its_cluster_group_is_in_sync_too():
    from infra.doctor import pending

    class Rds:
        cluster_reads = 0

        def reboot_db_instance(self, **kw):
            assert kw == {"DBInstanceIdentifier": "w", "ForceFailover": False}

        def describe_db_instances(self, DBInstanceIdentifier):  # noqa: N803 (boto3's spelling)
            return {"DBInstances": [member("w")]}

        def describe_db_clusters(self, DBClusterIdentifier):  # noqa: N803
            Rds.cluster_reads += 1
            return {"DBClusters": [cluster_of(*(["w"] if Rds.cluster_reads < 3 else []))]}

    sleeps = []
    step = pending.Reboot("primary", "w", False, ("cluster-group",), "available", "c")
    pending.apply(Rds(), [step], lambda _: None, delay_s=1, max_attempts=5, sleep=sleeps.append)
    assert Rds.cluster_reads == 3 and sleeps == [1, 1], "waited while the cluster group was still pending for the writer"


def test_apply_pending_on_aurora_reboots_what_the_cluster_group_waits_on(tmp_path, monkeypatch, capsys):
    """End to end against moto, with what moto does not do (a member pending until it is rebooted)
    added through botocore's events."""
    import argparse

    from helpers import ROOT
    from infra.cli import db as db_cli

    env_file = tmp_path / "prod.yaml"
    env_file.write_text(f"extends: {ROOT / 'stacks' / 'prod.yaml'}\ndatabase:\n  engine: aurora\n")
    with mock_aws():
        session = boto3.session.Session(region_name="us-east-1")
        rds = session.client("rds")
        deploy(rds, {})
        waiting = {"mlflow-prod-db-writer", "mlflow-prod-db-reader-0"}
        rebooted = []

        def mark(parsed, **_):
            for c in parsed.get("DBClusters", []):
                for m in c.get("DBClusterMembers", []):
                    m["DBClusterParameterGroupStatus"] = "pending-reboot" if m["DBInstanceIdentifier"] in waiting else "in-sync"

        def reboot(params, **_):
            rebooted.append((params["DBInstanceIdentifier"], params.get("ForceFailover")))
            waiting.discard(params["DBInstanceIdentifier"])

        session.events.register("after-call.rds.DescribeDBClusters", mark)
        session.events.register("provide-client-params.rds.RebootDBInstance", reboot)
        args = argparse.Namespace(environment=str(env_file), stacks_dir=str(ROOT / "stacks"), yes=True, primary_first=False)
        assert db_cli.cmd_apply_pending(args, session=session) == 0
        assert rebooted == [("mlflow-prod-db-reader-0", False), ("mlflow-prod-db-writer", False)]
        assert db_cli.cmd_apply_pending(args, session=session) == 0
    out = capsys.readouterr().out
    assert "1. reboot replica-0 mlflow-prod-db-reader-0 (parameter group mlflow-prod-db-cluster is pending-reboot)" in out
    assert "2. reboot primary mlflow-prod-db-writer" in out
    assert out.rstrip().endswith("prod: nothing is pending a reboot (2 instance(s) in us-east-1, every parameter group in sync)")
