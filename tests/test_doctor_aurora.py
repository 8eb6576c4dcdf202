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
