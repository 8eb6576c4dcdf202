"""mlflow-infra-entrypoint: what a tracking container (ECS) or instance (EC2 systemd unit) runs.

  mlflow-infra-entrypoint server -- mlflow server ...   compose the database URIs into the
                                                        environment, fill the command's
                                                        placeholders, wait for the expected schema,
                                                        then exec the command (or run it as a child
                                                        beside the readiness port)
  mlflow-infra-entrypoint migrate                       the application role (when given), the schema
                                                        upgrade when the database is behind (after a
                                                        snapshot of the primary), the index migration,
                                                        (MLFLOW_INFRA_AUTH=basic) the basic-auth user
                                                        store's upgrade, then the app role made owner of
                                                        it all, under one advisory lock

Environment:
  DB_HOST, DB_PORT (5432), DB_NAME (mlflow), DB_SSLMODE (require)   the primary database
  DB_USERNAME, DB_PASSWORD   credentials; when either is absent, read from DB_SECRET_ARN
  DB_SECRET_ARN              a Secrets Manager secret with JSON username and password (the servers' app role)
  DB_REPLICA_HOST            when set, the UI's read replica (same name and credentials)
  DB_REPLICA_PORT            the replica's port (default: DB_PORT; the local topology gives each server its own)
  DB_READ_FALLBACK_HOST, DB_READ_FALLBACK_PORT
                             a single replica's UI: where reads go while the replica cannot be reached (the
                             primary); the read URI lists both hosts and libpq takes the first that answers
  MLFLOW_INFRA_READY_PORT    a UI server reading a replica: the command runs as a child, and GET /ready on this
                             port answers 200 only while MLflow's /health and the read database (as the read
                             engine connects to it) answer, else 503: the load balancer's health check.
                             MLFLOW_INFRA_READY_HOST: where it listens (default 0.0.0.0)
  MLFLOW_ARTIFACTS_DESTINATION   fills {artifacts_destination}
  MLFLOW_LOAD_BALANCER_HOST      fills {load_balancer_host} in MLFLOW_SERVER_ALLOWED_HOSTS (or an --allowed-hosts
                                 flag) as HOST and HOST:* (MLflow's host check compares the whole Host header, port
                                 included); when empty, that entry is dropped, and the variable when none is left
  PROMETHEUS_MULTIPROC_DIR       created if missing, and its stale metric files removed
  MLFLOW_INFRA_SCHEMA_WAIT_S     the server starts only against the alembic revision its MLflow expects: it
                                 waits this many seconds while the database is behind (or not reachable yet)
                                 and fails with the reason; a revision it does not know fails at once.
                                 Unset: no check (MLflow's own behaviour)
  MLFLOW_INFRA_SECRETS           EC2: the container's ECS `secrets` as JSON (names and valueFrom references);
                                 each is read with the instance role and set, as ECS would, before anything else

migrate only (the servers log in as an application role; the migration as the master user):
  DB_INSTANCE_ID             the primary's RDS instance identifier: before upgrading an existing schema,
                             a manual snapshot of it is taken and waited for (none when unset: the local topology)
  DB_MASTER_SECRET_ARN       the master user's secret (JSON username, password): where DB_USERNAME and
                             DB_PASSWORD come from when absent (EC2); the app role is then DB_SECRET_ARN's
  APP_DB_USERNAME, APP_DB_PASSWORD
                             the application role (ECS injects them from the app secret): created with
                             LOGIN and this password, or its password set to this one (rotation), granted
                             CONNECT and schema public USAGE/CREATE, and made owner of every table, view,
                             sequence and type in public after the upgrade. Neither given: no role is managed.

With `--app-name basic-auth` in the command (tracking.auth: basic):
  MLFLOW_FLASK_SERVER_SECRET_KEY, AUTH_ADMIN_USERNAME, AUTH_ADMIN_PASSWORD
                             the Flask secret key and the admin user; when any is absent, all are
                             read from AUTH_SECRET_ARN (JSON secret_key, admin_username, admin_password)
  MLFLOW_INFRA_AUTH_DIR      where the private directory for the auth ini is made (default: the temp dir)
The entrypoint writes an auth ini (mode 0600, in a new 0700 directory) whose database_uri is the
primary's URI, with the admin pair and default_permission READ, points MLFLOW_AUTH_CONFIG_PATH at
it, and drops AUTH_ADMIN_* and MLFLOW_AUTH_ADMIN_* (which MLflow would prefer over the file) from the
server's environment: every server shares the one user store on the primary.

The URIs go to MLFLOW_BACKEND_STORE_URI and MLFLOW_READ_REPLICA_BACKEND_STORE_URI, which `mlflow
server` reads, so no password is ever on a command line. Exit codes: 2 bad input or a missing
variable, 1 a failed migration or an unreadable secret, 127 a command that is not installed; each
with one line on stderr.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import quote

from ..endpoints import (APP_PASSWORD_ENV, APP_USERNAME_ENV, AUTH_APP, AUTH_DIR_ENV, AUTH_ENV, AUTH_SECRET_ARN_ENV,
                         AUTH_SECRET_KEYS, DATABASE_NAME, DATABASE_PORT, DB_CLUSTER_ENV, DB_INSTANCE_ENV, HEALTH_PATH, MASTER_SECRET_ARN_ENV,
                         READ_FALLBACK_HOST_ENV, READY_HOST_ENV, READY_PATH, READY_PORT_ENV, SCHEMA_WAIT_ENV, TRACKING_PORT,
                         auth_variables)
from ..planning.server_command import (ALLOWED_HOSTS_ENV, ARTIFACTS_PLACEHOLDER, LOAD_BALANCER_HOST_PLACEHOLDER, PRIMARY_URI_ENV,
                                       REPLICA_URI_ENV)

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_FOUND = 127
SCHEME = "postgresql+psycopg"
DEFAULTS = {"DB_PORT": str(DATABASE_PORT), "DB_NAME": DATABASE_NAME, "DB_SSLMODE": "require"}
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
PLACEHOLDERS = {ARTIFACTS_PLACEHOLDER: "MLFLOW_ARTIFACTS_DESTINATION",
                LOAD_BALANCER_HOST_PLACEHOLDER: "MLFLOW_LOAD_BALANCER_HOST"}
_PLACEHOLDER = re.compile(r"\{[a-z_]+\}")
ALLOWED_HOSTS_FLAG = "--allowed-hosts"
USAGE = "usage: mlflow-infra-entrypoint server -- COMMAND [ARG ...] | mlflow-infra-entrypoint migrate"
# `mlflow db upgrade URL` takes the URL only as an argument; this runs that same click command
# with the URL from the environment, so the password stays off the process list.
DB_UPGRADE_CODE = ("import os; from mlflow.db import upgrade; "
                   f"upgrade.main([os.environ['{PRIMARY_URI_ENV}']], prog_name='mlflow db upgrade')")
# The basic-auth user store's own alembic upgrade (version table alembic_version_auth), the call
# every `mlflow server --app-name basic-auth` makes at bootstrap (mlflow/server/auth/sqlalchemy_store.py:132).
# Run here, under the advisory lock, so tasks that start together never race to create its tables.
AUTH_UPGRADE_CODE = ("import os, sqlalchemy; from mlflow.server.auth.db.utils import migrate_if_needed; "
                     f"engine = sqlalchemy.create_engine(os.environ['{PRIMARY_URI_ENV}'], poolclass=sqlalchemy.pool.NullPool); "
                     "migrate_if_needed(engine, 'head'); engine.dispose()")
# A replica (or the fallback) that does not answer within this is given up: the next host is tried,
# and a readiness check fails well inside the load balancer's 5 s health-check timeout.
READ_CONNECT_TIMEOUT_S = 3
AUTH_CONFIG_ENV = "MLFLOW_AUTH_CONFIG_PATH"
AUTH_INI = "basic_auth.ini"
# Users without a grant on an experiment or model can read it, as MLflow's own default
# (mlflow/server/auth/basic_auth.ini:2): a shared tracking server is for comparing runs. Writing
# needs a grant; a creator gets MANAGE on what they create (mlflow/server/auth/__init__.py:5416-5421).
AUTH_DEFAULT_PERMISSION = "READ"
# MLflow refuses a shorter admin password at bootstrap (mlflow/utils/validation.py:859-861)
MIN_ADMIN_PASSWORD = 12
# MLflow prefers these over the ini's admin pair (mlflow/server/auth/config.py:44-53): the secret is
# the one source, so a stray value in the environment must not override it
AUTH_ENV_DROPPED = ("AUTH_ADMIN_USERNAME", "AUTH_ADMIN_PASSWORD", "MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD")


class EntrypointError(Exception):
    """Bad input or environment: printed as one line, then the process exits with `code`."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT):
        super().__init__(message)
        self.code = code


def _value(env: Mapping[str, str], name: str) -> str:
    # an empty variable counts as unset: task definitions often carry NAME="" for "not used here"
    return env.get(name) or DEFAULTS.get(name, "")


def _required(env: Mapping[str, str], name: str) -> str:
    value = _value(env, name)
    if not value:
        raise EntrypointError(f"{name} is not set; the entrypoint needs DB_HOST, and DB_USERNAME and DB_PASSWORD"
                              " (or DB_SECRET_ARN), to reach the database")
    return value


def _port(env: Mapping[str, str], name: str = "DB_PORT") -> int:
    # an unset DB_REPLICA_PORT means the replica listens where the primary does, as on RDS
    text = _value(env, name) or _value(env, "DB_PORT")
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise EntrypointError(f"{name} {text!r} is not allowed; expected an integer from 1 to 65535")
    return int(text)


def _sslmode(env: Mapping[str, str]) -> str:
    mode = _value(env, "DB_SSLMODE")
    if mode not in SSLMODES:
        raise EntrypointError(f"DB_SSLMODE {mode!r} is not allowed; expected one of {', '.join(SSLMODES)}")
    return mode


def database_uri(user: str, password: str, host: str, port: int, name: str, sslmode: str) -> str:
    # quote everything with safe="": '@', ':', '/' and '%' in a generated password must not split the URI
    netloc_host = f"[{host}]" if ":" in host else host
    return (f"{SCHEME}://{quote(user, safe='')}:{quote(password, safe='')}@{netloc_host}:{port}"
            f"/{quote(name, safe='')}?sslmode={sslmode}")


def read_hosts(env: Mapping[str, str]) -> list[tuple[str, int]]:
    """Where reads go, in order: the replica, then (a single replica's UI) the fallback while the
    replica cannot be reached. Empty without DB_REPLICA_HOST: reads stay on the primary."""
    replica = _value(env, "DB_REPLICA_HOST")
    if not replica:
        return []
    hosts = [(replica, _port(env, "DB_REPLICA_PORT"))]
    fallback = _value(env, READ_FALLBACK_HOST_ENV)
    if fallback:
        hosts.append((fallback, _port(env, "DB_READ_FALLBACK_PORT")))
    return hosts


def read_uri(user: str, password: str, hosts: Sequence[tuple[str, int]], name: str, sslmode: str) -> str:
    """The read replica URI. With a fallback, libpq's multi-host form (SQLAlchemy `?host=h:p&host=h:p`):
    libpq tries the hosts in order, so a connection goes to the replica whenever it answers, else to
    the fallback; a host that hangs is given up after READ_CONNECT_TIMEOUT_S."""
    timeout = f"&connect_timeout={READ_CONNECT_TIMEOUT_S}"
    if len(hosts) == 1:
        return database_uri(user, password, *hosts[0], name, sslmode) + timeout
    listed = "&".join(f"host={quote(f'[{h}]' if ':' in h else h, safe='[]')}:{p}" for h, p in hosts)
    return f"{SCHEME}://{quote(user, safe='')}:{quote(password, safe='')}@/{quote(name, safe='')}?{listed}&sslmode={sslmode}{timeout}"


def compose_uris(env: Mapping[str, str]) -> dict[str, str]:
    """{MLFLOW_BACKEND_STORE_URI: ..., and MLFLOW_READ_REPLICA_BACKEND_STORE_URI when DB_REPLICA_HOST is set}."""
    host, user, password = (_required(env, name) for name in ("DB_HOST", "DB_USERNAME", "DB_PASSWORD"))
    port, name, sslmode = _port(env), _value(env, "DB_NAME"), _sslmode(env)
    uris = {PRIMARY_URI_ENV: database_uri(user, password, host, port, name, sslmode)}
    hosts = read_hosts(env)
    if hosts:
        uris[REPLICA_URI_ENV] = read_uri(user, password, hosts, name, sslmode)
    return uris


# ---------------------------------------------------------------------------------------------
# credentials from Secrets Manager (EC2: no ECS agent injects the secret's fields)

def secret_region(arn: str) -> str | None:
    """The region inside a Secrets Manager ARN, so an instance without AWS_REGION still finds it."""
    parts = arn.split(":")
    return parts[3] if len(parts) >= 7 and parts[0] == "arn" and parts[3] else None


def _secret_json(text: str, arn: str, variable: str, expected: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise EntrypointError(f"{variable} {arn}: the secret is not JSON; {expected}") from None


def parse_secret(text: str, arn: str, variable: str = "DB_SECRET_ARN") -> dict[str, str]:
    """DB_USERNAME and DB_PASSWORD from a secret's JSON (the stack's database secrets use RDS's format)."""
    expected = 'expected JSON {"username": ..., "password": ...} as RDS-managed secrets hold'
    data = _secret_json(text, arn, variable, expected)
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) and data.get(k) for k in ("username", "password")):
        raise EntrypointError(f"{variable} {arn}: the secret lacks a username or password; {expected}")
    return {"DB_USERNAME": data["username"], "DB_PASSWORD": data["password"]}


def _secret_string(arn: str, variable: str, instead: str) -> str:
    """The SecretString of `arn`, read with the instance's role; `variable` names it in errors."""
    try:
        import boto3  # lazily: only the EC2 path needs it, and it costs half a second to import
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        raise EntrypointError(f"{variable} is set but boto3 is not installed; install boto3, or {instead}") from None
    try:
        response = boto3.client("secretsmanager", region_name=secret_region(arn)).get_secret_value(SecretId=arn)
    except (BotoCoreError, ClientError) as exc:
        raise EntrypointError(f"{variable} {arn}: cannot read the secret: {_one_line(exc)}", EXIT_FAILED) from None
    return response.get("SecretString") or ""


def fetch_secret(arn: str) -> dict[str, str]:
    return parse_secret(_secret_string(arn, "DB_SECRET_ARN", "set DB_USERNAME and DB_PASSWORD"), arn)


def fetch_master_secret(arn: str) -> dict[str, str]:
    return parse_secret(_secret_string(arn, MASTER_SECRET_ARN_ENV, "set DB_USERNAME and DB_PASSWORD"), arn, MASTER_SECRET_ARN_ENV)


def _filled(env: Mapping[str, str], variable: str, names: Sequence[str], fetch) -> dict[str, str]:
    """`env` with `names` filled from the secret whose ARN `variable` holds, when any of them is absent."""
    resolved = dict(env)
    arn = _value(env, variable)
    if arn and not all(_value(env, name) for name in names):
        secret = fetch(arn)
        for name in names:  # a variable that is set wins over the secret
            resolved[name] = _value(env, name) or secret[name]
    return resolved


def with_credentials(env: Mapping[str, str], fetch=fetch_secret, variable: str = "DB_SECRET_ARN") -> dict[str, str]:
    """`env` with DB_USERNAME/DB_PASSWORD filled from the secret `variable` names where they are absent."""
    return _filled(env, variable, ("DB_USERNAME", "DB_PASSWORD"), fetch)


def parse_auth_secret(text: str, arn: str) -> dict[str, str]:
    """MLFLOW_FLASK_SERVER_SECRET_KEY, AUTH_ADMIN_USERNAME and AUTH_ADMIN_PASSWORD from the auth secret's JSON."""
    keys = ", ".join(f'"{key}": ...' for key in AUTH_SECRET_KEYS.values())
    expected = f"expected JSON {{{keys}}}"
    data = _secret_json(text, arn, AUTH_SECRET_ARN_ENV, expected)
    missing = [key for key in AUTH_SECRET_KEYS.values()
               if not (isinstance(data, dict) and isinstance(data.get(key), str) and data.get(key))]
    if missing:
        raise EntrypointError(f"{AUTH_SECRET_ARN_ENV} {arn}: the secret lacks {', '.join(missing)}; {expected}")
    return auth_variables(data)


def fetch_auth_secret(arn: str) -> dict[str, str]:
    return parse_auth_secret(_secret_string(arn, AUTH_SECRET_ARN_ENV, "set " + ", ".join(AUTH_SECRET_KEYS)), arn)


def with_auth_credentials(env: Mapping[str, str], fetch=fetch_auth_secret) -> dict[str, str]:
    """`env` with the basic-auth variables filled from AUTH_SECRET_ARN where any is absent (EC2)."""
    return _filled(env, AUTH_SECRET_ARN_ENV, tuple(AUTH_SECRET_KEYS), fetch)


# ---------------------------------------------------------------------------------------------
# the server command

def host_patterns(host: str) -> list[str]:
    """The host, and the host with any port: MLflow matches the whole Host header, port included."""
    if not host:
        return []
    return [host] if ":" in host else [host, f"{host}:*"]


def allowed_hosts_value(value: str, load_balancer_host: str) -> str:
    """The --allowed-hosts list with the load balancer filled in, or its entry dropped when it has no host."""
    hosts: list[str] = []
    for entry in value.split(","):
        if entry == LOAD_BALANCER_HOST_PLACEHOLDER:
            hosts += host_patterns(load_balancer_host)
        elif entry:
            hosts.append(entry)
    return ",".join(dict.fromkeys(hosts))


def fill_argument(arg: str, env: Mapping[str, str]) -> str:
    unknown = sorted(set(_PLACEHOLDER.findall(arg)) - set(PLACEHOLDERS))
    if unknown:
        raise EntrypointError(f"the command has an unknown placeholder {unknown[0]}; known: {', '.join(PLACEHOLDERS)}")
    for placeholder, name in PLACEHOLDERS.items():
        if placeholder in arg:
            value = env.get(name, "")
            if not value:
                raise EntrypointError(f"{name} is not set; the command's {placeholder} needs it")
            arg = arg.replace(placeholder, value)
    return arg


def fill_placeholders(command: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """The command with {artifacts_destination} and {load_balancer_host} filled in from the environment."""
    load_balancer_host = env.get("MLFLOW_LOAD_BALANCER_HOST", "")
    filled: list[str] = []
    args = iter(command)
    for arg in args:
        if arg == ALLOWED_HOSTS_FLAG or arg.startswith(ALLOWED_HOSTS_FLAG + "="):
            value = arg.partition("=")[2] if "=" in arg else next(args, "")
            hosts = fill_argument(allowed_hosts_value(value, load_balancer_host), env)
            if hosts:  # no hosts left: without the flag mlflow keeps its default (localhost, private IPs)
                filled += [ALLOWED_HOSTS_FLAG, hosts]
        else:
            filled.append(fill_argument(arg, env))
    return filled


def with_allowed_hosts(env: Mapping[str, str]) -> dict[str, str]:
    """MLFLOW_SERVER_ALLOWED_HOSTS (MLflow's host check, with uvicorn and gunicorn alike) with
    {load_balancer_host} filled in; without any host left the variable goes, and MLflow keeps its
    default (localhost and private addresses)."""
    composed = dict(env)
    value = composed.pop(ALLOWED_HOSTS_ENV, None)
    if value is not None:
        hosts = fill_argument(allowed_hosts_value(value, env.get("MLFLOW_LOAD_BALANCER_HOST", "")), env)
        if hosts:
            composed[ALLOWED_HOSTS_ENV] = hosts
    return composed


def prepare_prometheus_dir(env: Mapping[str, str]) -> None:
    """prometheus_client refuses a missing PROMETHEUS_MULTIPROC_DIR and must start from an empty one."""
    path = env.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
        for stale in Path(path).glob("*.db"):  # metric files of a previous run's (dead) worker processes
            stale.unlink()
    except OSError as exc:
        raise EntrypointError(f"PROMETHEUS_MULTIPROC_DIR {path}: {exc.strerror}; expected a writable directory") from None


# ---------------------------------------------------------------------------------------------
# basic-auth: the user store on the primary, shared by every server

def uses_basic_auth(command: Sequence[str]) -> bool:
    """The command runs MLflow's basic-auth app (`--app-name basic-auth` or `--app-name=basic-auth`)."""
    args = list(command)
    return any(arg == f"--app-name={AUTH_APP}" or (arg == "--app-name" and args[i + 1:i + 2] == [AUTH_APP])
               for i, arg in enumerate(args))


def _ini_value(name: str, value: str) -> str:
    # MLflow reads the file with configparser's default interpolation (mlflow/server/auth/config.py:39-40),
    # where '%' starts a reference: the URI's quoted password (%40, %2F) must be written as '%%'
    if value != value.strip() or "\n" in value or "\r" in value or not value:
        raise EntrypointError(f"{name} is not allowed as it is; expected a non-empty value without line breaks"
                              " or surrounding spaces")
    return value.replace("%", "%%")


def auth_config_text(env: Mapping[str, str], database_uri: str) -> str:
    """The auth ini MLflow reads at MLFLOW_AUTH_CONFIG_PATH (mlflow/server/auth/config.py:37-76)."""
    for name in AUTH_SECRET_KEYS:
        if not _value(env, name):
            raise EntrypointError(f"{name} is not set; `--app-name {AUTH_APP}` needs {', '.join(AUTH_SECRET_KEYS)}"
                                  f" (or {AUTH_SECRET_ARN_ENV})")
    if len(env["AUTH_ADMIN_PASSWORD"]) < MIN_ADMIN_PASSWORD:
        raise EntrypointError(f"AUTH_ADMIN_PASSWORD is too short; MLflow requires at least {MIN_ADMIN_PASSWORD} characters")
    lines = {
        "default_permission": AUTH_DEFAULT_PERMISSION,
        "database_uri": _ini_value(PRIMARY_URI_ENV, database_uri),
        "admin_username": _ini_value("AUTH_ADMIN_USERNAME", env["AUTH_ADMIN_USERNAME"]),
        "admin_password": _ini_value("AUTH_ADMIN_PASSWORD", env["AUTH_ADMIN_PASSWORD"]),
        "authorization_function": "mlflow.server.auth:authenticate_request_basic_auth",
    }
    return "[mlflow]\n" + "".join(f"{key} = {value}\n" for key, value in lines.items())


def write_auth_config(text: str, env: Mapping[str, str]) -> Path:
    """`text` in a new private directory (0700) as a 0600 file: it holds the database password."""
    parent = env.get(AUTH_DIR_ENV) or None
    try:
        if parent:
            Path(parent).mkdir(mode=0o700, parents=True, exist_ok=True)
        directory = Path(tempfile.mkdtemp(prefix="mlflow-auth-", dir=parent))
        path = directory / AUTH_INI
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(text)
    except OSError as exc:
        where = parent or tempfile.gettempdir()
        raise EntrypointError(f"{AUTH_DIR_ENV} {where}: {exc.strerror}; expected a writable directory") from None
    return path


def auth_environment(env: Mapping[str, str], database_uri: str) -> dict[str, str]:
    """MLFLOW_AUTH_CONFIG_PATH at a fresh auth ini; AUTH_ADMIN_* are in the file, not the environment."""
    path = write_auth_config(auth_config_text(env, database_uri), env)
    composed = {k: v for k, v in env.items() if k not in AUTH_ENV_DROPPED}
    composed[AUTH_CONFIG_ENV] = str(path)
    return composed


def server_environment(env: Mapping[str, str]) -> dict[str, str]:
    composed = dict(env)
    composed.update(compose_uris(env))
    return composed


def read_conninfo(env: Mapping[str, str]) -> dict[str, str]:
    """libpq keywords for a connection made as the read engine makes it: the same hosts, in order."""
    hosts = read_hosts(env)
    if not hosts:
        raise EntrypointError(f"{READY_PORT_ENV} is set but DB_REPLICA_HOST is not; readiness checks the replica"
                              " a UI server reads, so set both or neither")
    return {"host": ",".join(h for h, _ in hosts), "port": ",".join(str(p) for _, p in hosts),
            "dbname": _value(env, "DB_NAME"), "user": _required(env, "DB_USERNAME"), "password": _required(env, "DB_PASSWORD"),
            "sslmode": _sslmode(env), "connect_timeout": str(READ_CONNECT_TIMEOUT_S)}


def server_port(argv: Sequence[str]) -> int:
    """The `--port` of the server command (MLflow's default 5000 without one)."""
    if "--port" in argv[:-1]:
        text = argv[list(argv).index("--port") + 1]
        if text.isdigit():
            return int(text)
        raise EntrypointError(f"the server command's --port {text!r} is not allowed; expected an integer")
    return TRACKING_PORT


def readiness(argv: Sequence[str], env: Mapping[str, str]):
    """The readiness server (not yet serving) for a UI server that reads a replica, or None."""
    text = _value(env, READY_PORT_ENV)
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise EntrypointError(f"{READY_PORT_ENV} {text!r} is not allowed; expected an integer from 1 to 65535")
    from .readiness import database_answers, mlflow_health, readiness_server, ready

    conninfo = read_conninfo(env)
    health = f"http://127.0.0.1:{server_port(argv)}{HEALTH_PATH}"
    host = env.get(READY_HOST_ENV) or "0.0.0.0"
    try:
        return readiness_server(host, int(text), READY_PATH,
                                lambda: ready([lambda: mlflow_health(health), lambda: database_answers(conninfo)]))
    except OSError as exc:
        raise EntrypointError(f"{READY_PORT_ENV} {text}: cannot listen on {host}:{text} ({exc.strerror or exc})") from None


def wait_for_expected_schema(env: Mapping[str, str], uri: str) -> None:
    """With MLFLOW_INFRA_SCHEMA_WAIT_S set (every rendered server): start only against the schema this
    MLflow expects; wait that long for the migrate step while the database is behind, fail when ahead."""
    text = _value(env, SCHEMA_WAIT_ENV)
    if not text:
        return
    if not text.isdigit():
        raise EntrypointError(f"{SCHEMA_WAIT_ENV} {text!r} is not allowed; expected a whole number of seconds")
    import psycopg

    from .migrate import CONNECT_TIMEOUT_S, libpq_uri
    from .schema import wait_for_schema

    try:
        state = wait_for_schema(lambda: psycopg.connect(libpq_uri(uri), autocommit=True, connect_timeout=CONNECT_TIMEOUT_S),
                                int(text))
    except RuntimeError as exc:
        raise EntrypointError(f"not starting the server: {exc}", EXIT_FAILED) from None
    print(f"mlflow-infra-entrypoint: {state.describe()}", file=sys.stderr)


def run_server(command: Sequence[str], env: Mapping[str, str]) -> int:
    if not command:
        raise EntrypointError(f"server needs the command to run after '--'; {USAGE}")
    env = with_credentials(env)
    composed = with_allowed_hosts(server_environment(env))
    basic_auth = uses_basic_auth(command)
    if basic_auth:
        composed = with_auth_credentials(composed)
        auth_config_text(composed, composed[PRIMARY_URI_ENV])  # every auth input checked before anything is written
    argv = fill_placeholders(command, env)
    prepare_prometheus_dir(composed)
    wait_for_expected_schema(env, composed[PRIMARY_URI_ENV])
    ready_server = readiness(argv, env)
    if basic_auth:
        composed = auth_environment(composed, composed[PRIMARY_URI_ENV])
    try:
        if ready_server is not None:
            from .readiness import run_with_readiness

            return run_with_readiness(argv, composed, ready_server)
        os.execvpe(argv[0], argv, composed)
    except FileNotFoundError:
        raise EntrypointError(f"{argv[0]!r} is not installed or not on PATH", EXIT_NOT_FOUND) from None
    except PermissionError:
        raise EntrypointError(f"{argv[0]!r} is not executable", EXIT_NOT_FOUND) from None
    return EXIT_FAILED  # not reached: exec replaced this process


# ---------------------------------------------------------------------------------------------
# migrate

def app_credentials(env: Mapping[str, str], fetch=fetch_secret) -> tuple[str, str] | None:
    """The application role the migration sets up: APP_DB_USERNAME/APP_DB_PASSWORD (ECS), else, with
    DB_MASTER_SECRET_ARN set (EC2), DB_SECRET_ARN's pair; None when neither is given."""
    user, password = _value(env, APP_USERNAME_ENV), _value(env, APP_PASSWORD_ENV)
    if user or password:
        if not (user and password):
            raise EntrypointError(f"{APP_USERNAME_ENV} and {APP_PASSWORD_ENV} go together; set both or neither")
        return user, password
    arn = _value(env, "DB_SECRET_ARN")
    if _value(env, MASTER_SECRET_ARN_ENV) and arn:
        secret = fetch(arn)
        return secret["DB_USERNAME"], secret["DB_PASSWORD"]
    return None


def migrate_credentials(env: Mapping[str, str], fetch_master=fetch_master_secret,
                        fetch_app=fetch_secret) -> tuple[dict[str, str], tuple[str, str] | None]:
    """The migration's environment (DB_USERNAME/DB_PASSWORD: the master user when DB_MASTER_SECRET_ARN
    is set, else as the server resolves them) and the application role to set up, if any."""
    app = app_credentials(env, fetch_app)
    if _value(env, MASTER_SECRET_ARN_ENV):
        resolved = with_credentials(env, fetch_master, MASTER_SECRET_ARN_ENV)
    else:
        resolved = with_credentials(env, fetch_app)
    if app and _value(resolved, "DB_USERNAME") == app[0]:
        raise EntrypointError(f"{APP_USERNAME_ENV} {app[0]!r} is the user the migration logs in as; expected the"
                              " master user in DB_USERNAME (or DB_MASTER_SECRET_ARN) and the servers' role in"
                              f" {APP_USERNAME_ENV}")
    return resolved, app


def run_migrate(env: Mapping[str, str]) -> int:
    env, app = migrate_credentials(env)
    # the server-side variables are not passed on to mlflow's own processes
    env = {k: v for k, v in env.items() if k not in (APP_USERNAME_ENV, APP_PASSWORD_ENV)}
    auth = _value(env, AUTH_ENV)
    if auth not in ("", "none", "basic"):
        raise EntrypointError(f"{AUTH_ENV} {auth!r} is not allowed; expected none or basic")
    auth = auth == "basic"
    uri = compose_uris(env)[PRIMARY_URI_ENV]  # the schema and indexes live on the primary only
    try:
        import psycopg
    except ImportError:
        raise EntrypointError("migrate needs psycopg 3; install 'psycopg[binary]'") from None
    from ..planning.indexes import index_migration
    from .migrate import apply_index_migration, ensure_app_role, give_ownership, migration_lock
    from .schema import AHEAD, BEHIND, CURRENT, schema_state

    migration = index_migration()
    owned: list[str] = []
    try:
        # every API task runs migrate as it starts: the lock serialises them, and only the first of a
        # deploy finds the schema behind and upgrades it
        with migration_lock(uri, migration.advisory_lock_key) as conn:
            if app:  # first: a new password (rotation) works as soon as possible
                ensure_app_role(conn, *app)
            schema = schema_state(conn)
            if schema.status == AHEAD:
                raise EntrypointError(f"not migrating: {schema.describe()}", EXIT_FAILED)
            if schema.status == BEHIND:
                snapshot_before_upgrade(env, schema)
            if schema.status != CURRENT:
                upgrade = subprocess.run([sys.executable, "-c", DB_UPGRADE_CODE], env={**env, PRIMARY_URI_ENV: uri})
                if upgrade.returncode != 0:
                    raise EntrypointError(f"mlflow db upgrade failed with exit code {upgrade.returncode}; its output is above",
                                          EXIT_FAILED)
            statements = apply_index_migration(conn, migration)
            if auth:
                # importing mlflow.server.auth reads MLFLOW_AUTH_CONFIG_PATH: a stray one must not break the import
                clean = {k: v for k, v in env.items() if k != AUTH_CONFIG_ENV}
                upgrade = subprocess.run([sys.executable, "-c", AUTH_UPGRADE_CODE], env={**clean, PRIMARY_URI_ENV: uri})
                if upgrade.returncode != 0:
                    raise EntrypointError(f"the basic-auth user store upgrade failed with exit code {upgrade.returncode};"
                                          " its output is above", EXIT_FAILED)
            if app:  # after the upgrade: the tables it created are the master user's until now
                owned = give_ownership(conn, app[0])
    except (psycopg.Error, ValueError) as exc:
        raise EntrypointError(f"migration failed: {_one_line(exc)}", EXIT_FAILED) from None
    done = ("schema already at " + schema.expected + ", no upgrade" if schema.status == CURRENT
            else f"schema upgraded from {schema.found or 'an empty database'} to {schema.expected}")
    print(f"mlflow-infra-entrypoint: {done}; index migration applied ({len(statements)} statements)"
          + ("; basic-auth user store upgraded" if auth else "")
          + (f"; role {app[0]} set up, {len(owned)} objects handed to it" if app else ""), file=sys.stderr)
    return 0


def snapshot_before_upgrade(env: Mapping[str, str], schema) -> None:
    """A manual snapshot of the primary (DB_INSTANCE_ID), or of the Aurora cluster (DB_CLUSTER_ID),
    before an upgrade of an existing schema: MLflow's migrations have no downgrade. Without either
    (the local topology) there is nothing to snapshot."""
    cluster = _value(env, DB_CLUSTER_ENV)
    instance = cluster or _value(env, DB_INSTANCE_ENV)
    if not instance:
        print(f"mlflow-infra-entrypoint: {DB_INSTANCE_ENV} is not set: no snapshot before the upgrade", file=sys.stderr)
        return
    from .schema import snapshot_identifier, take_snapshot

    try:
        take_snapshot(instance, snapshot_identifier(instance, schema.found, schema.expected), kind="cluster" if cluster else "instance")
    except ValueError as exc:
        raise EntrypointError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 (botocore's errors: no upgrade without the snapshot)
        raise EntrypointError(f"not upgrading: the snapshot of {instance} before the upgrade failed: {_one_line(exc)}",
                              EXIT_FAILED) from None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    env = dict(os.environ if env is None else env)
    try:
        from .injected_secrets import SECRETS_ENV, SecretInjectionError, inject

        if SECRETS_ENV in env:  # EC2: the secrets ECS would inject, read with the instance role
            try:
                env = inject(env)
            except SecretInjectionError as exc:
                raise EntrypointError(str(exc), EXIT_FAILED) from None
        if args[:1] == ["server"]:
            command = args[2:] if args[1:2] == ["--"] else args[1:]
            return run_server(command, env)
        if args == ["migrate"]:
            return run_migrate(env)
        if args[:1] in (["-h"], ["--help"]):
            print(__doc__.strip())
            return 0
        got = " ".join(args) or "nothing"
        raise EntrypointError(f"unknown command {got!r}; {USAGE}")
    except EntrypointError as exc:
        print(f"mlflow-infra-entrypoint: {exc}", file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    sys.exit(main())
