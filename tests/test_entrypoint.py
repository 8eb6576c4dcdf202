"""mlflow-infra-entrypoint: URI composition, placeholders, secrets, and `migrate` on a real PostgreSQL."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.engine import make_url

from helpers import ROOT
from infra import load_environment, plan
from infra.runtime.entrypoint import (
    EntrypointError,
    auth_config_text,
    auth_environment,
    compose_uris,
    fetch_auth_secret,
    fetch_secret,
    fill_placeholders,
    main,
    with_allowed_hosts,
    parse_auth_secret,
    parse_secret,
    prepare_prometheus_dir,
    read_conninfo,
    readiness,
    secret_region,
    uses_basic_auth,
    wait_for_expected_schema,
    with_auth_credentials,
    with_credentials,
)
from infra.planning.indexes import IndexMigration, IndexSpec, index_migration
from infra.runtime.migrate import libpq_uri, run_index_migration
from infra.planning.server_command import ALLOWED_HOSTS_ENV, HEALTH_PATH, PORT, PRIMARY_URI_ENV, REPLICA_URI_ENV
from local_services import APP_USER, base_env, db_env, mlflow_database, require_entrypoint, run_entrypoint

DB = {"DB_HOST": "db.example.internal", "DB_USERNAME": "mlflow", "DB_PASSWORD": "secret"}
PASSWORD = "p@ss:w/rd%41"  # '@', ':', '/' and '%' all split or corrupt an unquoted URI


# ---------------------------------------------------------------------------------------------
# compose_uris

def test_defaults_give_port_5432_database_mlflow_and_required_tls():
    assert compose_uris(DB) == {
        PRIMARY_URI_ENV: "postgresql+psycopg://mlflow:secret@db.example.internal:5432/mlflow?sslmode=require"}


def test_password_with_uri_delimiters_is_quoted_and_parses_back_exactly():
    uri = compose_uris({**DB, "DB_USERNAME": "ml@user", "DB_PASSWORD": PASSWORD})[PRIMARY_URI_ENV]
    assert uri == "postgresql+psycopg://ml%40user:p%40ss%3Aw%2Frd%2541@db.example.internal:5432/mlflow?sslmode=require"
    parsed = make_url(uri)  # how MLflow's SQLAlchemy store reads it
    assert (parsed.username, parsed.password, parsed.host, parsed.port, parsed.database) == (
        "ml@user", PASSWORD, "db.example.internal", 5432, "mlflow")
    libpq = conninfo_to_dict(libpq_uri(uri))  # how the index migration reads it
    assert (libpq["user"], libpq["password"], libpq["sslmode"]) == ("ml@user", PASSWORD, "require")


def test_replica_uri_has_the_same_credentials_on_the_replica_host():
    env = {**DB, "DB_PORT": "6432", "DB_NAME": "tracking", "DB_SSLMODE": "verify-full",
           "DB_REPLICA_HOST": "replica.example.internal"}
    uris = compose_uris(env)
    assert set(uris) == {PRIMARY_URI_ENV, REPLICA_URI_ENV}
    # the same URI on the replica's host, and a hanging replica is given up after a few seconds
    assert uris[REPLICA_URI_ENV] == (uris[PRIMARY_URI_ENV].replace("db.example.internal", "replica.example.internal")
                                     + "&connect_timeout=3")
    assert make_url(uris[REPLICA_URI_ENV]).host == "replica.example.internal"
    assert uris[REPLICA_URI_ENV].endswith(":6432/tracking?sslmode=verify-full&connect_timeout=3")


def test_a_single_replicas_read_uri_lists_the_replica_then_the_fallback():
    import sqlalchemy

    env = {**DB, "DB_PASSWORD": PASSWORD, "DB_PORT": "6432", "DB_REPLICA_HOST": "replica.example.internal",
           "DB_READ_FALLBACK_HOST": "db.example.internal"}
    uri = compose_uris(env)[REPLICA_URI_ENV]
    url = make_url(uri)
    assert url.query["host"] == ("replica.example.internal:6432", "db.example.internal:6432")
    # what the psycopg dialect hands libpq: the hosts in order, the password intact
    _, params = sqlalchemy.create_engine(url).dialect.create_connect_args(url)
    assert (params["host"], params["port"], params["password"]) == ("replica.example.internal,db.example.internal", "6432,6432", PASSWORD)
    assert params["connect_timeout"] == "3" and params["sslmode"] == "require"
    assert read_conninfo(env)["host"] == params["host"] and read_conninfo(env)["port"] == params["port"]


def test_readiness_needs_the_replica_it_checks_and_a_valid_port():
    with pytest.raises(EntrypointError, match="^MLFLOW_INFRA_READY_PORT is set but DB_REPLICA_HOST is not"):
        readiness(["mlflow", "server"], {**DB, "MLFLOW_INFRA_READY_PORT": "5001"})
    with pytest.raises(EntrypointError, match="^MLFLOW_INFRA_READY_PORT 'x' is not allowed; expected an integer from 1 to 65535"):
        readiness(["mlflow", "server"], {**DB, "MLFLOW_INFRA_READY_PORT": "x"})
    assert readiness(["mlflow", "server"], DB) is None, "no readiness port: the entrypoint execs the server"


def test_a_bad_schema_wait_is_refused_before_anything_connects():
    with pytest.raises(EntrypointError, match="^MLFLOW_INFRA_SCHEMA_WAIT_S '5m' is not allowed; expected a whole number of seconds"):
        wait_for_expected_schema({"MLFLOW_INFRA_SCHEMA_WAIT_S": "5m"}, "postgresql+psycopg://u:p@h/d")


@pytest.mark.parametrize("replica_port, expected", [(None, 6432), ("", 6432), ("15433", 15433)])
def test_replica_port_defaults_to_the_primary_port(replica_port, expected):
    env = {**DB, "DB_PORT": "6432", "DB_REPLICA_HOST": "127.0.0.1"}
    if replica_port is not None:
        env["DB_REPLICA_PORT"] = replica_port
    uris = compose_uris(env)
    assert make_url(uris[REPLICA_URI_ENV]).port == expected
    assert make_url(uris[PRIMARY_URI_ENV]).port == 6432, "the replica's port never moves the primary"


@pytest.mark.parametrize("replica", [None, ""])
def test_no_replica_uri_without_a_replica_host(replica):
    env = DB if replica is None else {**DB, "DB_REPLICA_HOST": replica}
    assert list(compose_uris(env)) == [PRIMARY_URI_ENV]


@pytest.mark.parametrize("missing", ["DB_HOST", "DB_USERNAME", "DB_PASSWORD"])
def test_a_missing_variable_is_named(missing):
    env = {k: v for k, v in DB.items() if k != missing}
    with pytest.raises(EntrypointError) as err:
        compose_uris(env)
    assert str(err.value).startswith(f"{missing} is not set;")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name, value, allowed", [
    ("DB_PORT", "five", "an integer from 1 to 65535"),
    ("DB_PORT", "70000", "an integer from 1 to 65535"),
    ("DB_REPLICA_PORT", "replica", "an integer from 1 to 65535"),
    ("DB_REPLICA_PORT", "0", "an integer from 1 to 65535"),
    ("DB_SSLMODE", "on", "one of disable, allow, prefer, require, verify-ca, verify-full"),
])
def test_bad_values_name_what_is_allowed(name, value, allowed):
    with pytest.raises(EntrypointError, match=f"^{name} '{value}' is not allowed; expected {allowed}$"):
        compose_uris({**DB, "DB_REPLICA_HOST": "replica.example.internal", name: value})


# ---------------------------------------------------------------------------------------------
# credentials from DB_SECRET_ARN

ARN = "arn:aws:secretsmanager:us-west-2:123456789012:secret:rds!db-1234-AbCdEf"


def test_secret_fills_absent_credentials_and_set_ones_win():
    calls = []

    def fetch(arn):
        calls.append(arn)
        return {"DB_USERNAME": "from-secret", "DB_PASSWORD": "secret-pw"}

    env = {"DB_HOST": "h", "DB_SECRET_ARN": ARN, "DB_USERNAME": "explicit"}
    resolved = with_credentials(env, fetch)
    assert (resolved["DB_USERNAME"], resolved["DB_PASSWORD"], calls) == ("explicit", "secret-pw", [ARN])
    assert with_credentials({**DB, "DB_SECRET_ARN": ARN}, fetch) == {**DB, "DB_SECRET_ARN": ARN}
    assert calls == [ARN], "no secret is read when both credentials are set"


def test_no_secret_arn_leaves_the_missing_credential_to_compose_uris():
    env = with_credentials({"DB_HOST": "h", "DB_USERNAME": "u"}, fetch=lambda arn: pytest.fail("no secret to read"))
    with pytest.raises(EntrypointError, match="^DB_PASSWORD is not set"):
        compose_uris(env)


@pytest.mark.parametrize("text, problem", [
    ("not json", "the secret is not JSON"),
    ('{"username": "u"}', "the secret lacks a username or password"),
    ('["u", "p"]', "the secret lacks a username or password"),
])
def test_malformed_secrets_are_one_line_errors(text, problem):
    with pytest.raises(EntrypointError, match=f"^DB_SECRET_ARN {ARN}: {problem}; expected JSON"):
        parse_secret(text, ARN)


def test_secret_region_comes_from_the_arn():
    assert secret_region(ARN) == "us-west-2"
    assert secret_region("my-secret-name") is None


def test_fetch_secret_reads_an_rds_managed_secret_in_the_arns_region(monkeypatch):
    import moto  # the [test] extra installs it
    import boto3

    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)  # an EC2 instance often has no region configured
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws():
        arn = boto3.client("secretsmanager", region_name="us-west-2").create_secret(
            Name="rds!db-1234", SecretString=json.dumps({"username": "mlflow", "password": PASSWORD}))["ARN"]
        assert fetch_secret(arn) == {"DB_USERNAME": "mlflow", "DB_PASSWORD": PASSWORD}
        with pytest.raises(EntrypointError, match=r"^DB_SECRET_ARN .*: cannot read the secret: ") as err:
            fetch_secret(arn.replace("rds!db-1234", "missing"))
        assert err.value.code == 1


# ---------------------------------------------------------------------------------------------
# basic-auth: the auth ini, and its values from AUTH_SECRET_ARN

AUTH = {"MLFLOW_FLASK_SERVER_SECRET_KEY": "f" * 64, "AUTH_ADMIN_USERNAME": "admin", "AUTH_ADMIN_PASSWORD": "adm%n-p@ss:w/rd#1"}
AUTH_ARN = "arn:aws:secretsmanager:us-west-2:123456789012:secret:mlflow-auth-AbCdEf"


@pytest.mark.parametrize("command, expected", [
    (["mlflow", "server", "--app-name", "basic-auth"], True),
    (["mlflow", "server", "--app-name=basic-auth", "--workers", "2"], True),
    (["mlflow", "server", "--workers", "2"], False),
    (["mlflow", "server", "--app-name", "custom-auth"], False),
    (["mlflow", "server", "--app-name"], False),
])
def test_basic_auth_is_recognised_in_either_flag_form(command, expected):
    assert uses_basic_auth(command) is expected


def test_the_auth_ini_is_what_mlflow_reads_back_with_the_quoted_password(tmp_path, monkeypatch):
    from mlflow.server.auth.config import read_auth_config

    uri = compose_uris({**DB, "DB_PASSWORD": PASSWORD})[PRIMARY_URI_ENV]  # '%41' and friends in the URI
    env = auth_environment({**DB, **AUTH, "MLFLOW_AUTH_ADMIN_PASSWORD": "stray", "MLFLOW_INFRA_AUTH_DIR": str(tmp_path / "run")}, uri)
    path = env["MLFLOW_AUTH_CONFIG_PATH"]
    assert not {"AUTH_ADMIN_USERNAME", "AUTH_ADMIN_PASSWORD", "MLFLOW_AUTH_ADMIN_PASSWORD"} & set(env)
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == AUTH["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    for name in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", path)
    config = read_auth_config()
    assert config.database_uri == uri and make_url(config.database_uri).password == PASSWORD
    assert (config.admin_username, config.admin_password) == ("admin", AUTH["AUTH_ADMIN_PASSWORD"])
    assert config.default_permission == "READ" and config.read_database_uri is None, "no auth engine on the replica"
    again = auth_environment({**DB, **AUTH, "MLFLOW_INFRA_AUTH_DIR": str(tmp_path / "run")}, uri)["MLFLOW_AUTH_CONFIG_PATH"]
    assert again != path, "each start writes its own file"


@pytest.mark.parametrize("missing", ["MLFLOW_FLASK_SERVER_SECRET_KEY", "AUTH_ADMIN_USERNAME", "AUTH_ADMIN_PASSWORD"])
def test_a_missing_auth_variable_is_named(missing):
    env = {k: v for k, v in AUTH.items() if k != missing}
    with pytest.raises(EntrypointError, match=f"^{missing} is not set; `--app-name basic-auth` needs "):
        auth_config_text(env, "postgresql+psycopg://u:p@h:5432/mlflow")


@pytest.mark.parametrize("password, problem", [("short-pw", "is too short; MLflow requires at least 12 characters"),
                                               (" padded-password ", "is not allowed as it is"),
                                               ("two\nlines-password", "is not allowed as it is")])
def test_an_admin_password_mlflow_or_the_ini_cannot_take_is_refused(password, problem):
    with pytest.raises(EntrypointError, match=f"^AUTH_ADMIN_PASSWORD {problem}"):
        auth_config_text({**AUTH, "AUTH_ADMIN_PASSWORD": password}, "postgresql+psycopg://u:p@h:5432/mlflow")


def test_auth_secret_fills_absent_values_and_set_ones_win():
    calls = []

    def fetch(arn):
        calls.append(arn)
        return {"MLFLOW_FLASK_SERVER_SECRET_KEY": "k-from-secret", "AUTH_ADMIN_USERNAME": "admin",
                "AUTH_ADMIN_PASSWORD": "from-the-secret-pw"}

    resolved = with_auth_credentials({"AUTH_SECRET_ARN": AUTH_ARN, "AUTH_ADMIN_USERNAME": "root-admin"}, fetch)
    assert (resolved["AUTH_ADMIN_USERNAME"], resolved["AUTH_ADMIN_PASSWORD"], calls) == ("root-admin", "from-the-secret-pw", [AUTH_ARN])
    assert resolved["MLFLOW_FLASK_SERVER_SECRET_KEY"] == "k-from-secret"
    assert with_auth_credentials({**AUTH, "AUTH_SECRET_ARN": AUTH_ARN}, fetch) == {**AUTH, "AUTH_SECRET_ARN": AUTH_ARN}
    assert calls == [AUTH_ARN], "no secret is read when every value is set"
    assert with_auth_credentials({}, fetch=lambda arn: pytest.fail("no secret to read")) == {}


@pytest.mark.parametrize("text, problem", [
    ("not json", "the secret is not JSON"),
    ('{"secret_key": "k", "admin_username": "admin"}', "the secret lacks admin_password"),
    ('{"secret_key": "", "admin_username": "admin", "admin_password": "p"}', "the secret lacks secret_key"),
    ('["k", "u", "p"]', "the secret lacks secret_key, admin_username, admin_password"),
])
def test_malformed_auth_secrets_are_one_line_errors(text, problem):
    with pytest.raises(EntrypointError, match=f"^AUTH_SECRET_ARN {AUTH_ARN}: {problem}; expected JSON"):
        parse_auth_secret(text, AUTH_ARN)


def test_fetch_auth_secret_reads_its_json_keys_in_the_arns_region(monkeypatch):
    import moto  # the [test] extra installs it
    import boto3

    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with moto.mock_aws():
        arn = boto3.client("secretsmanager", region_name="us-west-2").create_secret(Name="mlflow-auth", SecretString=json.dumps(
            {"secret_key": "k" * 64, "admin_username": "admin", "admin_password": "generated-password"}))["ARN"]
        assert fetch_auth_secret(arn) == {"MLFLOW_FLASK_SERVER_SECRET_KEY": "k" * 64, "AUTH_ADMIN_USERNAME": "admin",
                                          "AUTH_ADMIN_PASSWORD": "generated-password"}
        with pytest.raises(EntrypointError, match=r"^AUTH_SECRET_ARN .*: cannot read the secret: ") as err:
            fetch_auth_secret(arn.replace("mlflow-auth", "missing"))
        assert err.value.code == 1


# ---------------------------------------------------------------------------------------------
# fill_placeholders

@pytest.fixture(scope="module")
def api_command():
    return list(plan(load_environment(ROOT / "stacks" / "prod.yaml")).tracking.api.server.command)


def _flag(command, flag):
    return command[command.index(flag) + 1] if flag in command else None


@pytest.fixture(scope="module")
def api_environment():
    return dict(plan(load_environment(ROOT / "stacks" / "prod.yaml")).tracking.api.server.environment)


def test_placeholders_are_filled_from_the_environment(api_command, api_environment):
    env = {"MLFLOW_ARTIFACTS_DESTINATION": "s3://bucket/artifacts", "MLFLOW_LOAD_BALANCER_HOST": "internal-api.elb.amazonaws.com"}
    filled = fill_placeholders(api_command, env)
    assert _flag(filled, "--artifacts-destination") == "s3://bucket/artifacts"
    assert not any("{" in arg for arg in filled)
    assert len(filled) == len(api_command)
    # the host list is MLflow's variable, which both uvicorn and gunicorn honour (the flag only sets it)
    hosts = with_allowed_hosts({**api_environment, **env})[ALLOWED_HOSTS_ENV]
    assert hosts == ("internal-api.elb.amazonaws.com,internal-api.elb.amazonaws.com:*,"
                     "mlflow.internal.example.com,mlflow-api.internal.example.com")


def test_without_a_load_balancer_host_its_entry_is_dropped(api_environment):
    composed = with_allowed_hosts({**api_environment, "MLFLOW_LOAD_BALANCER_HOST": ""})
    assert composed[ALLOWED_HOSTS_ENV] == "mlflow.internal.example.com,mlflow-api.internal.example.com"
    assert ALLOWED_HOSTS_ENV not in with_allowed_hosts({ALLOWED_HOSTS_ENV: "{load_balancer_host}"}), \
        "no host left: MLflow's default (localhost, private addresses)"


@pytest.mark.parametrize("form", ["separate", "equals"])
def test_an_allowed_hosts_list_left_empty_drops_the_flag(form):
    flag = ["--allowed-hosts", "{load_balancer_host}"] if form == "separate" else ["--allowed-hosts={load_balancer_host}"]
    assert fill_placeholders(["mlflow", "server", *flag, "--workers", "2"], {}) == ["mlflow", "server", "--workers", "2"]


def test_a_host_with_a_port_is_passed_as_is():
    filled = fill_placeholders(["--allowed-hosts", "{load_balancer_host}"], {"MLFLOW_LOAD_BALANCER_HOST": "lb.internal:8080"})
    assert filled == ["--allowed-hosts", "lb.internal:8080"]


def test_missing_artifacts_destination_is_named(api_command):
    with pytest.raises(EntrypointError, match=r"^MLFLOW_ARTIFACTS_DESTINATION is not set; the command's \{artifacts_destination\} needs it$"):
        fill_placeholders(api_command, {"MLFLOW_LOAD_BALANCER_HOST": "lb"})


def test_an_unknown_placeholder_is_refused():
    with pytest.raises(EntrypointError, match=r"^the command has an unknown placeholder \{bucket\}; known: "):
        fill_placeholders(["mlflow", "server", "--default-artifact-root", "s3://{bucket}/x"], {})


# ---------------------------------------------------------------------------------------------
# the process: arguments, exit codes, the exec'd environment

def test_prometheus_dir_is_created_and_emptied_of_stale_metric_files(tmp_path):
    directory = tmp_path / "a" / "prometheus"
    prepare_prometheus_dir({"PROMETHEUS_MULTIPROC_DIR": str(directory)})
    assert directory.is_dir()
    (directory / "counter_123.db").write_bytes(b"x")
    (directory / "keep.txt").write_text("not a metric file")
    prepare_prometheus_dir({"PROMETHEUS_MULTIPROC_DIR": str(directory)})
    assert sorted(p.name for p in directory.iterdir()) == ["keep.txt"]


@pytest.mark.parametrize("argv, message", [
    ([], "unknown command 'nothing'; usage: mlflow-infra-entrypoint server -- COMMAND"),
    (["serve"], "unknown command 'serve'; usage: "),
    (["server", "--"], "server needs the command to run after '--'"),
])
def test_bad_arguments_exit_2_with_one_line(capsys, argv, message):
    assert main(argv, env=DB) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mlflow-infra-entrypoint: {message}") and err.count("\n") == 1


def test_a_command_that_is_not_installed_exits_127(capsys, tmp_path):
    env = {**DB, "PATH": str(tmp_path), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}
    assert main(["server", "--", "no-such-mlflow", "server"], env=env) == 127
    assert capsys.readouterr().err == "mlflow-infra-entrypoint: 'no-such-mlflow' is not installed or not on PATH\n"


def test_missing_variable_exits_2_without_a_traceback(tmp_path):
    result = run_entrypoint(["migrate"], {**base_env(tmp_path), "DB_USERNAME": "u", "DB_PASSWORD": "p"}, timeout=60)
    assert result.returncode == 2
    assert result.stderr.startswith("mlflow-infra-entrypoint: DB_HOST is not set;")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_server_execs_the_command_with_the_uris_in_its_environment_only(tmp_path):
    probe = ("import json, os, sys; print(json.dumps({'argv': sys.argv[1:], 'pid': os.getpid(),"
             " 'env': {k: os.environ.get(k) for k in ('MLFLOW_BACKEND_STORE_URI', 'MLFLOW_READ_REPLICA_BACKEND_STORE_URI')}}))")
    env = {**base_env(tmp_path), **DB, "DB_PASSWORD": PASSWORD, "DB_REPLICA_HOST": "replica.internal",
           "MLFLOW_ARTIFACTS_DESTINATION": "s3://bucket/a", "MLFLOW_LOAD_BALANCER_HOST": ""}
    result = run_entrypoint(["server", "--", sys.executable, "-c", probe,
                             "--artifacts-destination", "{artifacts_destination}", "--allowed-hosts", "{load_balancer_host}"],
                            env, timeout=60)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["argv"] == ["--artifacts-destination", "s3://bucket/a"]
    assert make_url(seen["env"][PRIMARY_URI_ENV]).password == PASSWORD
    assert make_url(seen["env"][REPLICA_URI_ENV]).host == "replica.internal"
    assert not any(PASSWORD in arg or "p%40ss" in arg for arg in seen["argv"])


AUTH_PROBE = ("import json, os, stat, sys; path = os.environ.get('MLFLOW_AUTH_CONFIG_PATH');"
              " print(json.dumps({'argv': sys.argv[1:], 'path': path, 'text': open(path).read(),"
              " 'mode': stat.S_IMODE(os.stat(path).st_mode), 'dir_mode': stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode),"
              " 'env': sorted(os.environ)}))")


def test_server_with_basic_auth_gets_a_private_ini_and_no_admin_pair_in_its_environment(tmp_path):
    env = {**base_env(tmp_path), **DB, "DB_PASSWORD": PASSWORD, **AUTH, "MLFLOW_INFRA_AUTH_DIR": str(tmp_path / "run")}
    result = run_entrypoint(["server", "--", sys.executable, "-c", AUTH_PROBE, "--app-name", "basic-auth"], env, timeout=60)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["argv"] == ["--app-name", "basic-auth"]
    assert (seen["mode"], seen["dir_mode"]) == (0o600, 0o700)
    assert seen["path"].startswith(str(tmp_path / "run") + "/mlflow-auth-")
    assert "database_uri = postgresql+psycopg://mlflow:p%%40ss%%3Aw%%2Frd%%2541@db.example.internal:5432/mlflow" in seen["text"]
    assert f"admin_password = {AUTH['AUTH_ADMIN_PASSWORD'].replace('%', '%%')}\n" in seen["text"]
    assert "MLFLOW_FLASK_SERVER_SECRET_KEY" in seen["env"]
    assert not {"AUTH_ADMIN_USERNAME", "AUTH_ADMIN_PASSWORD"} & set(seen["env"])


def test_server_without_basic_auth_writes_no_ini(tmp_path):
    probe = "import json, os; print(json.dumps(os.environ.get('MLFLOW_AUTH_CONFIG_PATH')))"
    env = {**base_env(tmp_path), **DB, **AUTH, "MLFLOW_INFRA_AUTH_DIR": str(tmp_path / "run")}
    result = run_entrypoint(["server", "--", sys.executable, "-c", probe], env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) is None and not (tmp_path / "run").exists()


def test_basic_auth_without_its_values_exits_2_and_writes_nothing(capsys, tmp_path):
    env = {**DB, "MLFLOW_FLASK_SERVER_SECRET_KEY": "k", "MLFLOW_INFRA_AUTH_DIR": str(tmp_path / "run")}
    assert main(["server", "--", "mlflow", "server", "--app-name", "basic-auth"], env=env) == 2
    err = capsys.readouterr().err
    assert err.startswith("mlflow-infra-entrypoint: AUTH_ADMIN_USERNAME is not set;") and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_migrate_refuses_an_unknown_auth_mode(capsys):
    assert main(["migrate"], env={**DB, "MLFLOW_INFRA_AUTH": "oauth"}) == 2
    assert capsys.readouterr().err == "mlflow-infra-entrypoint: MLFLOW_INFRA_AUTH 'oauth' is not allowed; expected none or basic\n"


# ---------------------------------------------------------------------------------------------
# migrate on a real PostgreSQL

pg = pytest.mark.postgres

VALID_INDEXES_SQL = """
SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE c.relname = ANY(%s)
"""


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    with mlflow_database(tmp_path_factory.mktemp("pg") / "data") as server:
        yield server


def _wait_for_a_lock_waiter(conn, process: subprocess.Popen, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"migrate exited ({process.returncode}) instead of waiting for the lock:\n{process.stderr.read()[-3000:]}")
        if conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").fetchone()[0]:
            return
        time.sleep(0.1)
    pytest.fail(f"migrate did not wait for the advisory lock within {timeout_s} s")


@pg
def test_migrate_waits_for_the_lock_then_upgrades_and_builds_the_planned_indexes(database, tmp_path):
    env = {**base_env(tmp_path), **db_env(database)}
    migration = index_migration()
    with psycopg.connect(database.uri("mlflow"), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s::bigint)", (migration.advisory_lock_key,))  # another task migrating
        process = subprocess.Popen([str(require_entrypoint()), "migrate"], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_for_a_lock_waiter(holder, process)
            assert holder.execute("SELECT to_regclass('alembic_version')").fetchone()[0] is None, \
                "mlflow db upgrade waits for the lock too"
            holder.execute("SELECT pg_advisory_unlock(%s::bigint)", (migration.advisory_lock_key,))
            _, stderr = process.communicate(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 0, f"first run failed:\n{stderr[-3000:]}"
    assert f"index migration applied ({len(migration.statements)} statements)" in stderr
    again = run_entrypoint(["migrate"], env)
    assert again.returncode == 0, f"second run failed:\n{again.stderr[-3000:]}"
    with psycopg.connect(database.uri("mlflow")) as conn:
        indexes = dict(conn.execute(VALID_INDEXES_SQL, ([i.name for i in migration.indexes],)).fetchall())
        named = dict(conn.execute("SELECT indexname, tablename FROM pg_indexes WHERE indexname = ANY(%s)",
                                  ([i.name for i in migration.indexes],)).fetchall())
        statistics = {row[0] for row in conn.execute("SELECT stxname FROM pg_statistic_ext").fetchall()}
        options = dict(conn.execute("SELECT relname, reloptions FROM pg_class WHERE relname IN ('metrics', 'latest_metrics')").fetchall())
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert indexes == {i.name: True for i in migration.indexes}, "every planned index exists and is valid"
    assert named == {i.name: i.table for i in migration.indexes}
    assert {s.name for s in migration.statistics} <= statistics
    assert "fillfactor=85" in options["latest_metrics"]
    assert "autovacuum_vacuum_insert_scale_factor=0.02" in options["metrics"]
    assert revision is not None, "mlflow db upgrade created the schema"


@pg
def test_an_invalid_index_from_an_interrupted_build_is_rebuilt(database):
    uri = compose_uris(db_env(database))[PRIMARY_URI_ENV]
    with psycopg.connect(database.uri("mlflow"), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS rebuild_probe (x int)")
        conn.execute("INSERT INTO rebuild_probe VALUES (1), (1)")
        with pytest.raises(psycopg.errors.UniqueViolation):  # a failed concurrent build leaves the index INVALID
            conn.execute("CREATE UNIQUE INDEX CONCURRENTLY rebuild_probe_x ON rebuild_probe (x)")
        assert conn.execute(VALID_INDEXES_SQL, (["rebuild_probe_x"],)).fetchall() == [("rebuild_probe_x", False)]
        conn.execute(f"ALTER TABLE rebuild_probe OWNER TO {APP_USER}")
    spec = IndexSpec("rebuild_probe_x", "rebuild_probe", "btree", "x", "test")
    migration = IndexMigration(424242, (spec,), (), (), "test", "test")
    executed = run_index_migration(uri, migration)
    assert executed == [spec.drop_invalid_sql, spec.create_sql]
    with psycopg.connect(database.uri("mlflow")) as conn:
        assert conn.execute(VALID_INDEXES_SQL, (["rebuild_probe_x"],)).fetchall() == [("rebuild_probe_x", True)]
    assert run_index_migration(uri, migration) == [spec.create_sql], "a valid index is kept"


@pg
def test_a_second_index_migration_waits_for_the_lock(database):
    uri = compose_uris(db_env(database))[PRIMARY_URI_ENV]
    migration = IndexMigration(434343, (), (), (), "test", "test")
    done = threading.Event()
    with psycopg.connect(database.uri("mlflow"), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s::bigint)", (migration.advisory_lock_key,))
        worker = threading.Thread(target=lambda: (run_index_migration(uri, migration), done.set()), daemon=True)
        worker.start()
        deadline = time.monotonic() + 30
        while not holder.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").fetchone()[0]:
            assert time.monotonic() < deadline and not done.is_set(), "the second migration did not wait for the lock"
            time.sleep(0.05)
        assert not done.is_set()
        holder.execute("SELECT pg_advisory_unlock(%s::bigint)", (migration.advisory_lock_key,))
        worker.join(timeout=30)
    assert done.is_set(), "it ran once the lock was free"


@pg
def test_migrate_with_basic_auth_creates_the_user_store_on_the_primary(database, tmp_path):
    from alembic.script import ScriptDirectory
    from mlflow.server.auth.db.utils import _get_alembic_dir

    env = {**base_env(tmp_path), **db_env(database), "MLFLOW_INFRA_AUTH": "basic"}
    for attempt in ("first", "second"):  # the second finds the store at head and changes nothing
        result = run_entrypoint(["migrate"], env)
        assert result.returncode == 0, f"{attempt} run failed:\n{result.stderr[-3000:]}"
        assert result.stderr.rstrip().endswith("; basic-auth user store upgraded")
    head = ScriptDirectory(str(_get_alembic_dir())).get_current_head()
    with psycopg.connect(database.uri("mlflow")) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version_auth").fetchall() == [(head,)]
        owner = conn.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'users'").fetchone()
    assert owner == (APP_USER,), "the user store is in the mlflow database, created with the servers' credentials"


def test_only_postgresql_uris_are_accepted():
    assert libpq_uri("postgresql+psycopg://u:p@h:5432/d?sslmode=require") == "postgresql://u:p@h:5432/d?sslmode=require"
    with pytest.raises(ValueError, match="^database URI scheme 'mysql' is not supported; expected postgresql://"):
        libpq_uri("mysql://u:p@h/d")


# ---------------------------------------------------------------------------------------------
# the image and the import boundary

def test_entrypoint_and_migration_import_neither_pulumi_nor_boto3():
    code = ("import sys, infra.runtime.entrypoint, infra.runtime.migrate; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'pulumi', 'pulumi_aws', 'boto3', 'botocore', 'psycopg'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_dockerfile_matches_the_plan_and_the_console_script(api_command):
    dockerfile = (ROOT / "Dockerfile").read_text()
    default_version = plan(load_environment(ROOT / "stacks" / "dev.yaml")).tracking.mlflow_version
    assert f"ARG MLFLOW_VERSION={default_version}\n" in dockerfile, "the image pins the planned MLflow"
    assert 'mlflow-infra-entrypoint = "infra.runtime.entrypoint:main"' in (ROOT / "pyproject.toml").read_text()
    assert 'ENTRYPOINT ["mlflow-infra-entrypoint"]' in dockerfile
    assert f"EXPOSE {PORT}\n" in dockerfile and f"127.0.0.1:{PORT}{HEALTH_PATH}" in dockerfile
    assert re.search(r"^USER (?!0\b|root\b)\S+", dockerfile, re.M), "the server does not run as root"
    # one list of what the server needs: pyproject's [server] extra, installed by the image (EC2 runs the image too)
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    server = {re.match(r"[A-Za-z0-9._-]+(\[[^\]]*\])?", r).group(0).lower() for r in extras["server"]}
    assert server == {"mlflow[auth]", "psycopg[binary]", "boto3", "prometheus-flask-exporter"}, extras["server"]
    assert not any("pulumi" in r.lower() for r in extras["server"]), "no deploy tooling on a server"
    installs = [line for line in re.sub(r"\\\n\s*", " ", dockerfile).splitlines() if "pip install" in line]
    assert installs == ['RUN pip install "mlflow[auth]==${MLFLOW_VERSION}" "/tmp/src[server]" && rm -rf /tmp/src'], installs
    assert "pulumi" not in dockerfile.lower() and "--no-deps" not in dockerfile
    assert dockerfile.index("COPY infra /tmp/src/infra") < dockerfile.index("pip install")

