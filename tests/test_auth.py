"""`tracking.auth: basic`: MLflow's basic-auth app with one user store on the PostgreSQL primary,
shared by the API and UI servers.

The local topology of stacks/local.yaml with `tracking: {auth: basic}` is brought up once for the
module (real PostgreSQL primary and replica, real MLflow servers started through the entrypoint);
the ECS rendering of prod with auth is checked under Pulumi's mocks, and its container start is
replayed through the entrypoint's own functions and read back with MLflow's own config reader."""

from __future__ import annotations

import base64
import configparser
import json
import os
import stat
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from helpers import ROOT, render
from infra import load_environment, plan
from infra.local import LocalTopology
from infra.local.processes import free_port, free_port_block, group_pids, process_environment
from infra.endpoints import AUTH_ENV, AUTH_SECRET_KEYS
from infra.planning.server_command import PRIMARY_URI_ENV
from infra.runtime import entrypoint
from local_services import parent_pid

LOCAL_YAML = ROOT / "stacks" / "local.yaml"
SEARCH = "/api/2.0/mlflow/experiments/search?max_results=5"
CREATE_USER = "/api/2.0/mlflow/users/create"
SECRET_NAMES = {"MLFLOW_FLASK_SERVER_SECRET_KEY", "AUTH_ADMIN_USERNAME", "AUTH_ADMIN_PASSWORD"}


def with_auth(env: str):
    """A shipped environment with tracking.auth basic, validated as a file would be."""
    from infra.spec.model import EnvironmentSpec

    spec = load_environment(ROOT / "stacks" / f"{env}.yaml", ROOT / "stacks")
    data = spec.model_dump()
    data["tracking"]["auth"] = "basic"
    return EnvironmentSpec.model_validate({**data, "source_file": spec.source_file})


def request(url: str, credentials: tuple[str, str] | None = None, body: dict | None = None) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"}
    if credentials:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def command_lines(pgid: int) -> list[str]:
    lines = []
    for pid in group_pids(pgid):
        try:
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:  # a process that ended while we looked
            continue
    return lines


# ---------------------------------------------------------------------------------------------
# the plan and its ECS rendering (no database)

def test_the_plan_gives_both_tiers_the_auth_app_and_names_its_secrets():
    p = plan(with_auth("prod"))
    for tier in p.tracking.tiers:
        server = tier.server
        command = list(server.command)
        assert command[command.index("--app-name") + 1] == "basic-auth"
        assert set(server.auth_secret_environment) == SECRET_NAMES == set(AUTH_SECRET_KEYS)
        assert server.environment[AUTH_ENV] == "basic"
        assert not SECRET_NAMES & set(server.environment)
    shipped = plan(load_environment(ROOT / "stacks" / "prod.yaml"))
    assert all(t.server.auth_secret_environment == () and AUTH_ENV not in t.server.environment for t in shipped.tracking.tiers)


def test_basic_auth_budgets_its_engine_on_the_primary_only():
    with_basic = plan(with_auth("prod")).connection_budget
    without = plan(load_environment(ROOT / "stacks" / "prod.yaml")).connection_budget
    assert (with_basic.engines_per_worker, without.engines_per_worker) == (3, 2)
    # the auth store has no read_database_uri: the replicas see the same UI engines either way
    assert with_basic.ui_replica_connections == without.ui_replica_connections
    # three engines for two, per worker and per server process (its store engines and the admin bootstrap's)
    assert with_basic.api_connections * 2 == without.api_connections * 3


def _task_containers(mocks, role: str) -> dict[str, dict]:
    task = mocks.one("aws:ecs/taskDefinition:TaskDefinition", f"-{role}").inputs
    return {c["name"]: c for c in json.loads(task["containerDefinitions"])}


@pytest.fixture(scope="module")
def prod_with_auth():
    return render("prod", with_auth("prod"))


def test_every_server_container_gets_the_secret_key_and_admin_password_as_ecs_secrets(prod_with_auth):
    mocks, *_ = prod_with_auth
    secret = mocks.one("aws:secretsmanager/secret:Secret", "-auth")
    key = mocks.one("aws:kms/key:Key", "-db-key")
    assert secret.inputs["kmsKeyId"] == f"arn:aws:mock:us-east-1:123456789012:key/{key.name}", "the database's KMS key"
    arn = f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{secret.name}-AbCdEf"
    for role in ("api", "ui"):
        containers = _task_containers(mocks, role)
        server = containers["mlflow"]
        injected = {s["name"]: s["valueFrom"] for s in server["secrets"]}
        assert {name: injected[name] for name in SECRET_NAMES} == {
            name: f"{arn}:{AUTH_SECRET_KEYS[name]}::" for name in SECRET_NAMES}
        for container in containers.values():
            names = {e["name"] for e in container["environment"]}
            assert not names & SECRET_NAMES, f"{role}/{container['name']}: auth values in plain environment"
            assert "MLFLOW_AUTH_CONFIG_PATH" not in names, "the ini is written at start, on the primary"
            assert "sqlite" not in json.dumps(container).lower()
        if role == "api":  # the migrate step runs in the API's tasks only
            migrate = containers["migrate"]
            assert not {s["name"] for s in migrate["secrets"]} & SECRET_NAMES, "the migration needs no admin credentials"
            assert {e["name"]: e["value"] for e in migrate["environment"]}[AUTH_ENV] == "basic"
        else:
            assert list(containers) == ["mlflow"]
        policy = json.loads(mocks.one("aws:iam/rolePolicy:RolePolicy", f"-{role}-secret").inputs["policy"])
        reads = next(s for s in policy["Statement"] if s["Action"] == "secretsmanager:GetSecretValue")["Resource"]
        database = {f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{mocks.one('aws:secretsmanager/secret:Secret', suffix).name}-AbCdEf"
                    for suffix in (("-db-app", "-db-master") if role == "api" else ("-db-app",))}
        assert set(reads) == {arn} | database, "execution role reads the auth secret and the database's (master: API only)"


def test_the_auth_secret_is_generated(prod_with_auth):
    mocks, *_ = prod_with_auth
    version = mocks.one("aws:secretsmanager/secretVersion:SecretVersion", "-auth")
    raw = version.inputs["secretString"]
    values = json.loads(raw["value"] if isinstance(raw, dict) else raw)  # the mocks see a secret as {sig, value}
    assert set(values) == set(AUTH_SECRET_KEYS.values())
    assert len(values["admin_password"]) >= 12 and len(values["secret_key"]) >= 32


def test_shipped_stacks_have_no_auth_secret():
    mocks, *_ = render("prod")
    assert not [s for s in mocks.of_type("aws:secretsmanager/secret:Secret") if s.name.endswith("-auth")]
    for role in ("api", "ui"):
        assert not {s["name"] for c in _task_containers(mocks, role).values() for s in c["secrets"]} & SECRET_NAMES


def test_a_container_start_writes_an_ini_whose_user_store_is_the_primary(prod_with_auth, tmp_path, monkeypatch):
    """What the entrypoint does when ECS starts the container: the rendered environment plus the
    injected secrets give an ini that MLflow itself reads as a PostgreSQL user store."""
    from mlflow.server.auth.config import read_auth_config

    mocks, *_ = prod_with_auth
    server = _task_containers(mocks, "api")["mlflow"]
    db_secret = {"username": "mlflow", "password": "p@ss:w/rd%41#?;x"}
    auth_secret = {"secret_key": "k" * 64, "admin_username": "admin", "admin_password": "a-long-admin-password%"}
    env = {e["name"]: e["value"] for e in server["environment"]}
    for s in server["secrets"]:  # as ECS resolves valueFrom ARN:json-key::
        key = s["valueFrom"].split(":")[-3]
        env[s["name"]] = (db_secret if s["name"].startswith("DB_") else auth_secret)[key]
    env[entrypoint.AUTH_DIR_ENV] = str(tmp_path / "run")
    command = server["command"][2:]
    assert entrypoint.uses_basic_auth(command)
    composed = entrypoint.server_environment(entrypoint.with_credentials(env))
    composed = entrypoint.auth_environment(entrypoint.with_auth_credentials(composed), composed[PRIMARY_URI_ENV])

    path = Path(composed["MLFLOW_AUTH_CONFIG_PATH"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for name in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(path))
    config = read_auth_config()
    url = make_url(config.database_uri)
    assert url.drivername == "postgresql+psycopg" and url.host == env["DB_HOST"] and url.password == db_secret["password"]
    assert config.database_uri == composed[PRIMARY_URI_ENV]
    assert (config.admin_username, config.admin_password) == ("admin", auth_secret["admin_password"])
    assert config.default_permission == "READ"
    assert composed["MLFLOW_FLASK_SERVER_SECRET_KEY"] == auth_secret["secret_key"]
    assert not {"AUTH_ADMIN_USERNAME", "AUTH_ADMIN_PASSWORD"} & set(composed), "the admin pair is in the file only"


def test_ec2_user_data_names_the_auth_secret_not_its_values():
    spec = with_auth("prod")
    spec = spec.model_copy(update={"tracking": spec.tracking.model_copy(update={"compute": "ec2"})})
    mocks, *_ = render("prod", spec)
    for role in ("api", "ui"):
        script = base64.b64decode(mocks.one("aws:ec2/launchTemplate:LaunchTemplate", f"-{role}").inputs["userData"]).decode()
        # the secret's references (ARN:json-key::), resolved on the instance with its role, never its values
        auth_arn = mocks.one("aws:secretsmanager/secret:Secret", "-auth").name
        assert f'"name":"AUTH_ADMIN_PASSWORD","valueFrom":"arn:aws:secretsmanager:us-east-1:123456789012:secret:{auth_arn}-AbCdEf:admin_password::"' in script
        assert f"{AUTH_ENV}=basic" in script
        assert not any(f"{name}=" in script for name in SECRET_NAMES)


def test_the_policy_pack_finds_no_plain_credentials_with_auth():
    from infra.policy.check import check

    for compute in ("ecs", "ec2"):
        spec = with_auth("prod")
        spec = spec.model_copy(update={"tracking": spec.tracking.model_copy(update={"compute": compute})})
        found = [v for v in check(spec) if v.rule.name == "no-plain-credentials"]
        assert not found, found


# ---------------------------------------------------------------------------------------------
# the local topology with tracking.auth basic: real PostgreSQL, real MLflow servers

@pytest.fixture(scope="module")
def topology(tmp_path_factory):
    base = tmp_path_factory.mktemp("auth")
    environment_file = base / "local-auth.yaml"
    environment_file.write_text(f"extends: {LOCAL_YAML}\ntracking:\n  auth: basic\n")
    # free_port_block scans up from 21000: another topology test starting at the same time would pick the
    # same block, so start the scan somewhere random
    topology = LocalTopology.from_environment(str(environment_file), root=base / ".mlflow-local",
                                              base_port=free_port_block(2),
                                              api_port=free_port(), ui_port=free_port())
    try:
        state = topology.up()
        yield topology, state
    finally:
        topology.down(purge=True)


def admin(topology: LocalTopology) -> tuple[str, str]:
    credentials = json.loads(topology.auth_file.read_text())
    return credentials["admin_username"], credentials["admin_password"]


@pytest.mark.postgres
def test_without_credentials_the_servers_answer_401_and_health_stays_open(topology):
    _, state = topology
    for url in (state.api_url, state.ui_url):
        assert request(url + SEARCH)[0] == 401
        assert request(url + "/health")[0] == 200, "load balancer health checks need no credentials"


@pytest.mark.postgres
def test_the_admins_credentials_answer_200_on_both_servers(topology):
    topo, state = topology
    assert state.auth_file == str(topo.auth_file)
    assert stat.S_IMODE(topo.auth_file.stat().st_mode) == 0o600
    for url in (state.api_url, state.ui_url):
        assert request(url + SEARCH, admin(topo))[0] == 200
        assert request(url + SEARCH, (admin(topo)[0], "not-the-password"))[0] == 401


@pytest.mark.postgres
def test_a_user_created_through_the_api_logs_in_through_the_ui(topology, monkeypatch):
    topo, state = topology
    user = (f"user-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}")
    status, body = request(state.api_url + CREATE_USER, admin(topo), {"username": user[0], "password": user[1]})
    assert status == 200, body
    assert json.loads(body)["user"]["username"] == user[0]
    status, body = request(state.ui_url + SEARCH, user)  # the other server: one shared user store
    assert status == 200, body
    assert "experiments" in json.loads(body)
    assert request(state.ui_url + SEARCH, (user[0], "wrong-password-123"))[0] == 401

    with psycopg.connect(state.primary_uri, autocommit=True) as conn:
        rows = conn.execute("SELECT username, is_admin FROM users WHERE username IN (%s, %s)", (admin(topo)[0], user[0])).fetchall()
    assert sorted(rows) == sorted([(admin(topo)[0], True), (user[0], False)]), "both users live on the primary"

    # MLflow's own client, with the user's credentials: an experiment created through the API
    # (its creator gets MANAGE) is readable through the UI server
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", user[1])
    experiment_id = MlflowClient(state.api_url).create_experiment(f"auth-{uuid.uuid4().hex[:8]}")
    assert MlflowClient(state.ui_url).get_experiment(experiment_id).experiment_id == experiment_id


@pytest.mark.postgres
def mlflow_process(server: dict) -> int:
    """The `mlflow server` process: the entrypoint exec'd it (same pid), or, for a UI server answering
    readiness, keeps it as its child."""
    if not server.get("ready_port"):
        return server["pid"]
    return next(pid for pid in group_pids(server["pid"]) if parent_pid(pid) == server["pid"])


def test_each_server_reads_an_ini_on_the_primary_and_no_sqlite_store_exists(topology):
    topo, state = topology
    primary = make_url(state.primary_uri)
    secret = admin(topo)[1]
    for server in topo.read_state()["servers"]:
        pid = mlflow_process(server)
        env = process_environment(pid)
        path = Path(env["MLFLOW_AUTH_CONFIG_PATH"])
        assert path.is_relative_to(topo.auth_dir(server["name"]))
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        config = configparser.ConfigParser()  # as mlflow/server/auth/config.py reads it
        config.read(path)
        url = make_url(config["mlflow"]["database_uri"])
        assert url.drivername.startswith("postgresql") and (url.host, url.port) == (primary.host, primary.port)
        assert url.database == primary.database, "the same database as the tracking store, on the primary"
        assert "AUTH_ADMIN_PASSWORD" not in env and "MLFLOW_AUTH_ADMIN_PASSWORD" not in env
        assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == json.loads(topo.auth_file.read_text())["secret_key"]
        assert not any(secret in line for line in command_lines(server["pid"])), "no password on a command line"
    for where in (topo.root, Path.cwd()):
        assert not list(where.rglob("basic_auth.db")), f"a SQLite user store under {where}"


@pytest.mark.postgres
def test_the_secret_key_and_admin_are_reused_after_down_and_up(topology):
    topo, state = topology
    before = topo.auth_file.read_text()
    user = (f"kept-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}")
    assert request(state.api_url + CREATE_USER, admin(topo), {"username": user[0], "password": user[1]})[0] == 200
    topo.down()
    assert topo.auth_file.read_text() == before, "down keeps the credentials"
    again = topo.up()
    assert again == state
    assert topo.auth_file.read_text() == before, "up reuses them: the admin exists with this password"
    assert request(again.api_url + SEARCH, admin(topo))[0] == 200
    assert request(again.ui_url + SEARCH, user)[0] == 200
    assert len(os.listdir(topo.auth_dir("api"))) == 1, "a restart leaves no stale copy of the ini"
