"""Database credentials that work with replicas and rotation (issue scope 1).

The stack owns the master password (RDS refuses a read replica of a source whose master password it
manages in Secrets Manager); the servers log in as an application role the migrate step creates, whose
password lives in its own secret; rotating it is: new secret value, migrate, rolling restart. Under
Pulumi's mocks for the stack, moto for the EC2 secret reads, and a real PostgreSQL and real MLflow
servers (the local topology) for the role, its ownership and a rotation under load."""

from __future__ import annotations

import json
import stat
import subprocess
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from helpers import ROOT, environment, render
from infra.aws.mocks import RecordingMocks, render_stack
from infra.aws.instance import env_file, user_data
from infra.aws.rendering import Runtime, container_definitions, migrate_environment, migrate_secrets
from infra.endpoints import APP_DATABASE_USERNAME, DATABASE_PASSWORD_EXCLUDED, new_database_password
from infra.local.postgres import LocalPostgres
from infra.local.processes import free_port
from infra.runtime import entrypoint
from infra.runtime.entrypoint import EntrypointError, migrate_credentials
from local_services import running_topology

SECRET_SIG = "4dabf18193072939515e22adb298388d"
def mock_secret(name: str) -> str:
    """The ARN RecordingMocks gives a Secrets Manager secret named `name`."""
    return f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-AbCdEf"


def unwrap(value):
    """A Pulumi secret as the mocks record it ({sig, value}), or a plain value."""
    return value["value"] if isinstance(value, dict) and SECRET_SIG in value else value


def stored_secret(mocks, suffix: str) -> dict:
    return json.loads(unwrap(mocks.one("aws:secretsmanager/secretVersion:SecretVersion", suffix).inputs["secretString"]))


# ---------------------------------------------------------------------------------------------
# the stack: under Pulumi's mocks

@pytest.fixture(scope="module")
def prod():
    mocks, component, urns, outputs = render("prod")
    return mocks, urns


def test_the_primary_has_the_stacks_own_master_password_and_replicas_inherit_it(prod):
    mocks, urns = prod
    primary = mocks.one("aws:rds/instance:Instance", "-primary").inputs
    master = stored_secret(mocks, "-db-master")
    assert "manageMasterUserPassword" not in primary and "masterUserSecretKmsKeyId" not in primary
    assert primary["username"] == master["username"] == "mlflow"
    assert isinstance(primary["password"], dict) and SECRET_SIG in primary["password"], "a Pulumi secret"
    assert unwrap(primary["password"]) == master["password"], "the password is the stored secret's"
    assert master["engine"] == "postgres" and master["dbname"] == "mlflow"
    replicas = [r.inputs for r in mocks.of_type("aws:rds/instance:Instance") if "-replica-" in r.name]
    assert replicas and all("password" not in r and "manageMasterUserPassword" not in r and r["replicateSourceDb"]
                            for r in replicas)


def test_both_secrets_hang_under_the_database_encrypted_with_its_key(prod):
    mocks, urns = prod
    key = f"arn:aws:mock:us-east-1:123456789012:key/{mocks.one('aws:kms/key:Key', '-db-key').name}"
    for suffix, username in (("-db-master", "mlflow"), ("-db-app", APP_DATABASE_USERNAME)):
        assert mocks.one("aws:secretsmanager/secret:Secret", suffix).inputs["kmsKeyId"] == key
        assert stored_secret(mocks, suffix)["username"] == username
        assert [u for u in urns if u.endswith(f"secretVersion:SecretVersion::mlflow-prod{suffix}")]
        assert [u for u in urns if "mlflow-infra:database:TrackingDatabase$aws:secretsmanager/secret:Secret::" in u
                and u.endswith(suffix)]
    assert stored_secret(mocks, "-db-master")["password"] != stored_secret(mocks, "-db-app")["password"]


def test_the_master_password_is_stable_across_runs_because_it_is_read_from_the_stored_version():
    """Every run generates a new candidate; the SecretVersion ignores changes to its string, so the
    engine keeps the first one and the instance reads the version's output. The mocks cannot apply
    ignore_changes themselves: `stored` hands them the first run's state, as the engine would."""
    first, *_ = render("prod")
    again, *_ = render("prod")
    stored = {v.name: {"secretString": v.inputs["secretString"]}
              for v in first.of_type("aws:secretsmanager/secretVersion:SecretVersion")}
    second, *_ = render_stack(environment("prod"), mocks=RecordingMocks(stored=stored))

    def password(m):
        return unwrap(m.one("aws:rds/instance:Instance", "-primary").inputs["password"])

    assert password(again) != password(first), "a fresh program run generates a new candidate (kept by no engine here)"
    assert password(second) == password(first), "with the stored version, the instance keeps the first password"
    definitions = second.one("aws:ecs/taskDefinition:TaskDefinition", "-api").inputs["containerDefinitions"]
    assert stored_secret(second, "-db-app")["password"] not in definitions, "task definitions name the secret only"


def test_servers_get_the_app_secret_and_only_migrate_gets_the_master_secret(prod):
    mocks, _ = prod
    app = mock_secret(mocks.one("aws:secretsmanager/secret:Secret", "-db-app").name)
    master = mock_secret(mocks.one("aws:secretsmanager/secret:Secret", "-db-master").name)
    primary = mocks.one("aws:rds/instance:Instance", "-primary").name
    for role in ("api", "ui"):
        task = mocks.one("aws:ecs/taskDefinition:TaskDefinition", f"-{role}").inputs
        containers = {c["name"]: c for c in json.loads(task["containerDefinitions"])}
        assert {s["name"]: s["valueFrom"] for s in containers["mlflow"]["secrets"]} == {
            "DB_USERNAME": f"{app}:username::", "DB_PASSWORD": f"{app}:password::"}
        policy = json.loads(mocks.one("aws:iam/rolePolicy:RolePolicy", f"-{role}-secret").inputs["policy"])
        reads = next(s for s in policy["Statement"] if s["Action"] == "secretsmanager:GetSecretValue")["Resource"]
        if role == "ui":  # no migrate step in the UI's tasks: the app secret only
            assert list(containers) == ["mlflow"] and reads == app
            continue
        assert {s["name"]: s["valueFrom"] for s in containers["migrate"]["secrets"]} == {
            "DB_USERNAME": f"{master}:username::", "DB_PASSWORD": f"{master}:password::",
            "APP_DB_USERNAME": f"{app}:username::", "APP_DB_PASSWORD": f"{app}:password::"}
        migrate_env = {e["name"]: e["value"] for e in containers["migrate"]["environment"]}
        assert migrate_env["DB_HOST"].startswith(primary + "."), "migrate logs in to the primary itself"
        assert migrate_env["DB_INSTANCE_ID"] == primary, "and snapshots it before a schema upgrade"
        assert migrate_env["AWS_REGION"] == "us-east-1", "in its region, on EC2's docker too"
        assert sorted(reads) == sorted([app, master]), "the execution role reads exactly the task's two secrets"
        assert "secret" not in mocks.one("aws:iam/rolePolicy:RolePolicy", f"-{role}-artifacts").inputs["policy"]


RUNTIME = Runtime(image="123456789012.dkr.ecr.us-east-1.amazonaws.com/mlflow:3.17.2", region="us-east-1",
                  db_host="db.proxy-abc.us-east-1.rds.amazonaws.com", db_port=5432, replica_host=None,
                  secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:mlflow-prod-db-app-AbCdEf",
                  log_group="/mlflow/api", artifacts_destination="s3://b/artifacts", load_balancer_host="lb.example",
                  master_secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:mlflow-prod-db-master-AbCdEf",
                  primary_host="db-primary.abc123.us-east-1.rds.amazonaws.com")


def _plan_tier(env: str, role: str):
    from infra import plan
    return {t.role: t for t in plan(environment(env)).tracking.tiers}[role]


def test_with_rds_proxy_the_servers_use_the_proxy_and_migrate_the_primary():
    tier = _plan_tier("prod", "api")
    migrate, server = container_definitions(tier, RUNTIME)
    assert {e["name"]: e["value"] for e in server["environment"]}["DB_HOST"] == RUNTIME.db_host
    assert migrate_environment(tier, RUNTIME)["DB_HOST"] == RUNTIME.primary_host
    assert [s["name"] for s in migrate_secrets(RUNTIME)] == ["DB_USERNAME", "DB_PASSWORD", "APP_DB_USERNAME", "APP_DB_PASSWORD"]


def test_ec2_gives_the_master_secret_to_the_migrate_unit_only():
    tier = _plan_tier("prod", "api")
    definitions = {d["name"]: d for d in container_definitions(tier, RUNTIME)}
    script = user_data(list(definitions.values()), role="api", environment="prod", region=RUNTIME.region)
    server_env, migrate_env = env_file(definitions["mlflow"]), env_file(definitions["migrate"])
    # the same secret references ECS injects, resolved on the instance with its role
    assert RUNTIME.master_secret_arn in migrate_env and RUNTIME.master_secret_arn not in server_env
    assert f"DB_HOST={RUNTIME.primary_host}" in migrate_env.splitlines()
    assert f"DB_HOST={RUNTIME.db_host}" in server_env.splitlines()
    assert server_env in script and migrate_env in script
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)


def test_rds_proxy_authenticates_the_app_role_with_the_app_secret():
    import pulumi

    from infra.aws.database import DatabaseArgs, ProxySettings, TrackingDatabase

    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="p", stack="s", preview=False)

    @pulumi.runtime.test
    def build():
        db = TrackingDatabase("db", DatabaseArgs(subnet_ids=["subnet-1", "subnet-2"], security_group_ids=["sg-1"],
                                                 replica_zones=["us-east-1b"], proxy=ProxySettings()))
        return db.secret_arn.apply(lambda arn: arn)

    build()
    app = mock_secret("db-app")
    proxy = mocks.one("aws:rds/proxy:Proxy").inputs
    assert [a["secretArn"] for a in proxy["auths"]] == [app] and proxy["auths"][0]["authScheme"] == "SECRETS"
    policy = json.loads(mocks.one("aws:iam/rolePolicy:RolePolicy", "db-proxy-secret").inputs["policy"])
    assert policy["Statement"][0]["Resource"] == app, "the proxy reads the app secret, never the master's"


def test_generated_passwords_use_only_what_rds_allows():
    for _ in range(50):
        password = new_database_password()
        assert len(password) == 40 and all(33 <= ord(c) <= 126 and c not in DATABASE_PASSWORD_EXCLUDED for c in password)
    with pytest.raises(ValueError, match="8 to 128"):
        new_database_password(7)


# ---------------------------------------------------------------------------------------------
# the entrypoint: who the migration logs in as, and which role it sets up

def test_migrate_logs_in_as_the_master_and_sets_up_the_app_role_ecs():
    env = {"DB_HOST": "h", "DB_USERNAME": "mlflow", "DB_PASSWORD": "master-pw",
           "APP_DB_USERNAME": "mlflow_app", "APP_DB_PASSWORD": "app-pw"}
    resolved, app = migrate_credentials(env, fetch_master=lambda a: pytest.fail("no read"), fetch_app=lambda a: pytest.fail("no read"))
    assert (resolved["DB_USERNAME"], resolved["DB_PASSWORD"], app) == ("mlflow", "master-pw", ("mlflow_app", "app-pw"))
    with pytest.raises(EntrypointError, match="go together"):
        migrate_credentials({**env, "APP_DB_PASSWORD": ""})
    with pytest.raises(EntrypointError, match="is the user the migration logs in as"):
        migrate_credentials({**env, "APP_DB_USERNAME": "mlflow"})
    resolved, app = migrate_credentials({"DB_HOST": "h", "DB_USERNAME": "owner", "DB_PASSWORD": "pw"})
    assert app is None, "no app role given: the migration manages none (a database the servers own)"


def test_migrate_reads_both_secrets_on_ec2(monkeypatch):
    import moto  # the [test] extra installs it
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws():
        sm = boto3.client("secretsmanager", region_name="us-west-2")
        master = sm.create_secret(Name="db-master", SecretString=json.dumps({"username": "mlflow", "password": "m-pw"}))["ARN"]
        app = sm.create_secret(Name="db-app", SecretString=json.dumps({"username": "mlflow_app", "password": "a-pw"}))["ARN"]
        resolved, role = migrate_credentials({"DB_HOST": "h", "DB_SECRET_ARN": app, "DB_MASTER_SECRET_ARN": master})
        assert (resolved["DB_USERNAME"], resolved["DB_PASSWORD"], role) == ("mlflow", "m-pw", ("mlflow_app", "a-pw"))
        # the server, from the same environment file, reads only the app secret
        server = entrypoint.with_credentials({"DB_HOST": "h", "DB_SECRET_ARN": app})
        assert (server["DB_USERNAME"], server["DB_PASSWORD"]) == ("mlflow_app", "a-pw")


# ---------------------------------------------------------------------------------------------
# the migrate step on a real PostgreSQL: the role, its privileges, ownership, a new password

MIGRATE_HBA = f"""local all all trust
host all postgres 127.0.0.1/32 trust
host mlflow {APP_DATABASE_USERNAME} 127.0.0.1/32 scram-sha-256
"""


def _connect(port: int, user: str, password: str | None = None, database: str = "mlflow"):
    return psycopg.connect(host="127.0.0.1", port=port, user=user, password=password, dbname=database,
                           autocommit=True, connect_timeout=10)


def _migrate(port: int, app_password: str, tmp: Path) -> subprocess.CompletedProcess:
    from local_services import base_env, require_entrypoint

    env = {**base_env(tmp), "DB_HOST": "127.0.0.1", "DB_PORT": str(port), "DB_USERNAME": "postgres",
           "DB_PASSWORD": "trust", "DB_SSLMODE": "disable", "APP_DB_USERNAME": APP_DATABASE_USERNAME,
           "APP_DB_PASSWORD": app_password, "MLFLOW_INFRA_AUTH": "basic"}
    return subprocess.run([str(require_entrypoint()), "migrate"], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.postgres
def test_migrate_creates_the_app_role_hands_it_the_tables_and_rotates_its_password(tmp_path):
    server = LocalPostgres(tmp_path / "pg", free_port())
    server.init()
    (server.data_dir / "pg_hba.conf").write_text(MIGRATE_HBA)
    try:
        server.start()
        with psycopg.connect(server.uri(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE mlflow")
        with psycopg.connect(server.uri("mlflow"), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        first = new_database_password()
        result = _migrate(server.port, first, tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        assert f"role {APP_DATABASE_USERNAME} set up" in result.stderr
        assert first not in result.stdout + result.stderr + server.log_tail(400), "the password is in no log"
        with _connect(server.port, "postgres") as conn:
            role = conn.execute("SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolcanlogin"
                                " FROM pg_roles WHERE rolname = %s", (APP_DATABASE_USERNAME,)).fetchone()
            assert role == (False, False, False, False, False, True), "LOGIN only"
            assert conn.execute("SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member"
                                " WHERE r.rolname = %s", (APP_DATABASE_USERNAME,)).fetchone()[0] == 0, "member of no role"
            owners = dict(conn.execute(
                "SELECT c.relname, pg_get_userbyid(c.relowner) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'S', 'v')").fetchall())
            assert owners["runs"] == owners["metrics"] == owners["alembic_version"] == APP_DATABASE_USERNAME
            assert owners["users"] == owners["alembic_version_auth"] == APP_DATABASE_USERNAME, "basic-auth tables too"
            assert owners["pg_stat_statements"] == "postgres", "an extension's objects are left alone"
            verifier = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (APP_DATABASE_USERNAME,)).fetchone()[0]
            assert verifier.startswith("SCRAM-SHA-256$")
        with _connect(server.port, APP_DATABASE_USERNAME, first) as app:
            app.execute("INSERT INTO experiments (name, lifecycle_stage, creation_time, last_update_time)"
                        " VALUES ('x', 'active', 0, 0)")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                app.execute("CREATE ROLE intruder")
        # rotation: the secret's new value, the migrate step again (idempotent otherwise)
        second = new_database_password()
        held = _connect(server.port, APP_DATABASE_USERNAME, first)  # a pooled connection from before
        result = _migrate(server.port, second, tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        assert held.execute("SELECT count(*) FROM experiments").fetchone()[0] >= 1, "open sessions stay authenticated"
        held.close()
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            _connect(server.port, APP_DATABASE_USERNAME, first)
        with _connect(server.port, APP_DATABASE_USERNAME, second) as app:
            assert app.execute("SELECT current_user").fetchone()[0] == APP_DATABASE_USERNAME
        assert _migrate(server.port, second, tmp_path).returncode == 0, "a third run changes nothing and succeeds"
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------------
# the local topology: servers as the app role, and a rotation under real MLflow servers

LOCAL_YAML = ROOT / "stacks" / "local.yaml"


@pytest.fixture(scope="module")
def topology(tmp_path_factory):
    with running_topology(tmp_path_factory.mktemp("creds") / ".mlflow-local", LOCAL_YAML) as running:
        yield running


def _log(client: MlflowClient, run_id: str, key: str, count: int) -> list[str]:
    errors = []
    now = int(time.time() * 1000)
    for step in range(count):
        try:
            client.log_batch(run_id, metrics=[Metric(key, float(step), now + step, step)])
        except Exception as exc:  # counted, not raised: the assertion reports them all
            errors.append(f"{key}/{step}: {exc}")
    return errors


def _server_users(uri: str) -> set[str]:
    with psycopg.connect(uri, autocommit=True) as conn:
        return {row[0] for row in conn.execute(
            "SELECT usename FROM pg_stat_activity WHERE datname = 'mlflow' AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'").fetchall()}


@pytest.mark.postgres
def test_the_local_servers_log_in_as_the_app_role_whose_credentials_are_private(topology):
    topo, state = topology
    assert state.database_file == str(topo.database_file)
    assert stat.S_IMODE(topo.database_file.stat().st_mode) == 0o600
    credentials = json.loads(topo.database_file.read_text())
    assert credentials["username"] == APP_DATABASE_USERNAME and len(credentials["password"]) == 40
    client = MlflowClient(state.api_url)
    run_id = client.create_run(client.create_experiment(f"who-{uuid.uuid4().hex[:8]}")).info.run_id
    assert not _log(client, run_id, "probe", 3)
    assert _server_users(state.primary_uri) == {APP_DATABASE_USERNAME}, "the API server's connections"
    MlflowClient(state.ui_url).search_experiments(max_results=5)
    assert _server_users(state.replica_uris[0]) == {APP_DATABASE_USERNAME}, "the UI's, on the replica"
    with psycopg.connect(state.primary_uri, autocommit=True) as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (APP_DATABASE_USERNAME,)).fetchone() == (False,)
        assert conn.execute("SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'metrics'").fetchone() == (
            APP_DATABASE_USERNAME,)


@pytest.mark.postgres
def test_rotating_the_app_password_keeps_logging_working_and_retires_the_old_one(topology, monkeypatch):
    """The README procedure on this machine: a new value in the credentials file (the secret), the
    migrate step, a restart of the servers. Client retries are off, so any failed call counts."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    topo, state = topology
    client = MlflowClient(state.api_url)
    run_id = client.create_run(client.create_experiment(f"rotate-{uuid.uuid4().hex[:8]}")).info.run_id
    assert not _log(client, run_id, "before", 20)
    old = topo.database_credentials()["password"]

    new = new_database_password()
    topo.write_database_password(new)                    # 1. put-secret-value
    assert stat.S_IMODE(topo.database_file.stat().st_mode) == 0o600
    topo.migrate()                                       # 2. the migrate step: ALTER ROLE ... PASSWORD
    state = topo.restart_servers()                       # 3. the (here: all at once) restart

    errors = _log(client, run_id, "after", 50)
    assert errors == [], f"{len(errors)} failed log_batch calls after the restart: {errors[:3]}"
    history = client.get_metric_history(run_id, "before") + client.get_metric_history(run_id, "after")
    assert len(history) == 70, "every acknowledged metric is there"
    assert _server_users(state.primary_uri) == {APP_DATABASE_USERNAME}

    port = int(state.primary_uri.rsplit(":", 1)[1].split("/")[0])
    replica_port = int(state.replica_uris[0].rsplit(":", 1)[1].split("/")[0])
    for p in (port, replica_port):  # the role's new verifier replicated too
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            _connect(p, APP_DATABASE_USERNAME, old)
        with _connect(p, APP_DATABASE_USERNAME, new) as conn:
            assert conn.execute("SELECT current_user").fetchone()[0] == APP_DATABASE_USERNAME
    # three migrate runs on this topology (the first up, the rotation's, the restart's): one upgrade
    runs = (topo.logs_dir / "migrate.log").read_text().count
    assert (runs("schema upgraded from an empty database"), runs("no upgrade")) == (1, 2)
