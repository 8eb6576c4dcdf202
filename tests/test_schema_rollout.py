"""Rollout: the schema upgrade runs once per deploy, and a server starts only against the schema its
MLflow expects. On a real PostgreSQL with the real `mlflow-infra-entrypoint` and MLflow; the RDS
snapshot before an upgrade against moto."""

from __future__ import annotations

import subprocess
from pathlib import Path

import boto3
import psycopg
import pytest
from moto import mock_aws

from infra.endpoints import SCHEMA_WAIT_ENV
from infra.local.processes import free_port, stop_group
from infra.runtime.schema import AHEAD, BEHIND, CURRENT, EMPTY, classify, mlflow_revisions, snapshot_identifier, take_snapshot
from local_services import base_env, db_env, mlflow_database, require_entrypoint, run_entrypoint, wait_until_healthy

HEAD, KNOWN = mlflow_revisions()


@pytest.mark.parametrize(("found", "status"), [(None, EMPTY), (HEAD, CURRENT), (sorted(KNOWN - {HEAD})[0], BEHIND),
                                               ("ffffffffffff", AHEAD)])
def test_where_the_database_stands(found, status):
    assert classify(found, HEAD, KNOWN).status == status


@pytest.mark.parametrize(("instance", "expected"), [
    ("mlflow-prod-db-primary", "mlflow-prod-db-primary-mlflow-0584bdc529eb-to-1b5f0d9ad7c1"),
    ("Mixed_Case--id", "mixed-case-id-mlflow-0584bdc529eb-to-1b5f0d9ad7c1"),
])
def test_snapshot_names_follow_rds_rules(instance, expected):
    name = snapshot_identifier(instance, "0584bdc529eb", "1b5f0d9ad7c1")
    assert name == expected == snapshot_identifier(instance, "0584bdc529eb", "1b5f0d9ad7c1"), "one name per upgrade"
    assert name[0].isalpha() and "--" not in name and not name.endswith("-") and len(name) <= 255


def test_snapshot_names_refuse_an_identifier_that_starts_with_a_digit():
    with pytest.raises(ValueError, match="DB_INSTANCE_ID '1db'"):
        snapshot_identifier("1db", "a", "b")


@mock_aws
def test_the_snapshot_is_taken_and_waited_for_and_a_retry_reuses_it():
    rds = boto3.client("rds", region_name="us-east-1")
    rds.create_db_instance(DBInstanceIdentifier="mlflow-prod-db-primary", DBInstanceClass="db.m7g.large", Engine="postgres",
                           MasterUsername="mlflow", MasterUserPassword="x" * 20, AllocatedStorage=20)
    said: list[str] = []
    arn = take_snapshot("mlflow-prod-db-primary", "mlflow-prod-db-primary-mlflow-a-to-b-1", rds=rds, poll_s=0, say=said.append)
    assert arn.endswith(":snapshot:mlflow-prod-db-primary-mlflow-a-to-b-1")
    snapshot = rds.describe_db_snapshots(DBSnapshotIdentifier="mlflow-prod-db-primary-mlflow-a-to-b-1")["DBSnapshots"][0]
    assert (snapshot["DBInstanceIdentifier"], snapshot["SnapshotType"], snapshot["Status"]) == ("mlflow-prod-db-primary", "manual", "available")
    assert take_snapshot("mlflow-prod-db-primary", "mlflow-prod-db-primary-mlflow-a-to-b-1", rds=rds, poll_s=0,
                         say=said.append) == arn
    assert any("exists already" in line for line in said)


@mock_aws
def test_on_aurora_the_cluster_is_snapshotted_and_a_retry_reuses_it():
    rds = boto3.client("rds", region_name="us-east-1")
    rds.create_db_cluster(DBClusterIdentifier="mlflow-prod-db-cluster", Engine="aurora-postgresql", MasterUsername="mlflow",
                          MasterUserPassword="x" * 20)
    said: list[str] = []
    name = "mlflow-prod-db-cluster-mlflow-a-to-b"
    arn = take_snapshot("mlflow-prod-db-cluster", name, rds=rds, poll_s=0, say=said.append, kind="cluster")
    assert arn.endswith(f":cluster-snapshot:{name}")
    snapshot = rds.describe_db_cluster_snapshots(DBClusterSnapshotIdentifier=name)["DBClusterSnapshots"][0]
    assert (snapshot["DBClusterIdentifier"], snapshot["SnapshotType"], snapshot["Status"]) == ("mlflow-prod-db-cluster", "manual", "available")
    assert take_snapshot("mlflow-prod-db-cluster", name, rds=rds, poll_s=0, say=said.append, kind="cluster") == arn
    assert any("exists already" in line for line in said)


# ---------------------------------------------------------------------------------------------
# on a real database

def set_revision(server, revision: str) -> None:
    with psycopg.connect(server.uri("mlflow"), autocommit=True) as conn:
        conn.execute("UPDATE alembic_version SET version_num = %s", (revision,))


@pytest.mark.postgres
def test_two_deploy_starts_run_one_upgrade_and_servers_wait_for_the_expected_schema(tmp_path):
    with mlflow_database(tmp_path / "pg") as server:
        env = {**base_env(tmp_path), **db_env(server)}
        port = free_port()
        command = ["mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        log = tmp_path / "server.log"
        # the UI's server starts first, on an empty database: it waits for the migrate step
        with log.open("wb") as out:
            waiting = subprocess.Popen([str(require_entrypoint()), "server", "--", *command], env={**env, SCHEMA_WAIT_ENV: "240"},
                                       stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            first = run_entrypoint(["migrate"], env, timeout=300)
            assert first.returncode == 0, first.stderr
            assert f"schema upgraded from an empty database to {HEAD}" in first.stderr
            assert "Creating initial MLflow database tables" in first.stderr, "mlflow db upgrade ran"
            wait_until_healthy(waiting, port, log)
            assert f"the schema is at {HEAD}" in log.read_text()
        finally:
            stop_group(waiting)

        # the next task of the same deploy: the schema is current, nothing is upgraded
        second = run_entrypoint(["migrate"], env, timeout=300)
        assert second.returncode == 0, second.stderr
        assert f"schema already at {HEAD}, no upgrade" in second.stderr
        assert "mlflow.store.db.utils" not in second.stderr, "mlflow db upgrade did not run"

        # a database behind this MLflow: a server waits, then gives up clearly (it never serves it)
        older = next(iter(KNOWN - {HEAD}))
        set_revision(server, older)
        try:
            behind = run_entrypoint(["server", "--", *command], {**env, SCHEMA_WAIT_ENV: "1"}, timeout=120)
            assert behind.returncode == 1
            assert f"not starting the server: the schema is at {older}, older than {HEAD}" in behind.stderr
            # a database a newer MLflow upgraded: servers and the migrate step refuse at once
            set_revision(server, "ffffffffffff")
            ahead = run_entrypoint(["server", "--", *command], {**env, SCHEMA_WAIT_ENV: "240"}, timeout=120)
            assert ahead.returncode == 1 and "a newer MLflow upgraded it" in ahead.stderr, ahead.stderr
            refused = run_entrypoint(["migrate"], env, timeout=120)
            assert refused.returncode == 1 and "not migrating: the schema is at ffffffffffff" in refused.stderr, refused.stderr
        finally:
            set_revision(server, HEAD)
        assert not Path(tmp_path / "mlruns").exists()
