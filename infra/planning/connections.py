"""The connection budget: every pool at maximum autoscale fits in max_connections minus the reserve.

This is the README's "Connection refused" bottleneck (pools exhausting max_connections) made
arithmetic: servers x workers x (pool + overflow) <= max_connections - reserve, or RDS Proxy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..spec import SpecError, SpecInvalid

# RDS's default max_connections is LEAST({DBInstanceClassMemory/9531392}, 5000): ~9 MiB per backend.
BYTES_PER_CONNECTION = 9_531_392
RDS_MAX_CONNECTIONS = 5_000
# Reserved slots: superuser_reserved_connections (3) + rds.rds_superuser_reserved_connections (2).
SUPERUSER_RESERVED = 5
# Operators' psql sessions, monitoring agents and the migration task must still get in when the
# fleet is at its maximum.
ADMIN_HEADROOM = 10
# Each replica's walsender, plus one for a pg_basebackup or logical slot.
def replication_reserve(replicas: int) -> int:
    return replicas + 1


# SQLAlchemy's defaults (pool 5, overflow 10) give 15 connections per engine, 30 per worker
# process, which is what exhausts max_connections on a stock deployment. A request holds its
# connection for a few ms, so 2 pooled connections serve the steady rate. MLflow's log_batch holds
# one connection while it takes a second (sqlalchemy_store.log_batch opens a session, and
# _log_metrics another one inside it): a worker running N logging requests at once needs 2N, or
# its requests wait on each other until SQLAlchemy's 30 s pool timeout (MLflow exposes no setting
# for it). That was the benchmark's "30 s read timeouts": uvicorn's workers run up to 40 requests
# at once (anyio's thread pool), and its first worker to wake accepts a burst of connections, so
# one worker held more requests than its pool served (py-spy: every thread in QueuePool._do_get).
# The API now runs gunicorn's sync workers, one request at a time each (server_command.py): 2
# connections per engine cover it, and one overflow connection is the margin for a path that
# nests once more. The UI's requests read with one connection each.
POOL_SIZE = {"api": 2, "ui": 2}
MIN_OVERFLOW = {"api": 1, "ui": 2}
CONNECTIONS_PER_REQUEST = {"api": 2, "ui": 1}
# A server that runs many requests per worker (uvicorn: 40, anyio's thread pool) never needs more
# than 2 x 40 per engine on the API. The UI's clients are people, whose pages do not land in the
# same second.
MAX_OVERFLOW_CAP = {"api": 2 * 40 - 2, "ui": 5}


# Each MLflow server worker process keeps one SQLAlchemy engine (its own pool, sized by
# MLFLOW_SQLALCHEMYSTORE_POOL_SIZE / MAX_OVERFLOW, mlflow/store/db/utils.py:383-395) per store, MLflow 3.17.2:
# - tracking and model registry: each store class caches one engine per URI in its own class-level
#   map (store/tracking/sqlalchemy_store.py:369-381, store/model_registry/sqlalchemy_store.py:115-125),
#   so the two stores never share one; with a read replica each keeps a second engine there
#   (tracking :412-413, registry :151-152), fed from MLFLOW_READ_REPLICA_BACKEND_STORE_URI
#   (server/handlers.py:533-537, :570-574).
# - basic-auth (`tracking.auth: basic`): `create_app` runs `store.init_db` once per worker
#   (server/auth/__init__.py:7098-7107, :8935), which creates an engine with the same pool settings
#   (server/auth/sqlalchemy_store.py:128-131) on the ini's database_uri, the primary; a second one
#   only for a read_database_uri (:135-136), which the entrypoint never writes, so none on the replica.
def engines_per_worker(auth: str, database: str = "primary") -> int:
    """Engines one worker keeps on the primary, or on a replica it reads from."""
    return 3 if auth == "basic" and database == "primary" else 2


# Per server process (task or instance), outside the workers: `mlflow server` itself runs
# initialize_backend_stores before it starts uvicorn (cli/__init__.py:707-715, server/handlers.py:822-838),
# which leaves the tracking and registry engines with one idle connection each on the primary, and
# on the replica for a UI that reads one; with basic-auth it also bootstraps the admin user
# (server/__init__.py:332-343, :440-443) through the module-level auth store
# (server/auth/__init__.py:7066-7077), whose engine keeps one more on the primary. Measured on the
# local topology: each process's sockets to the primary and the replica, from /proc/net/tcp.
SUPERVISOR_STORE_ENGINES = 2


def supervisor_connections(auth: str, database: str = "primary") -> int:
    return SUPERVISOR_STORE_ENGINES + (1 if auth == "basic" and database == "primary" else 0)


# Connections are recycled after 25 min: before RDS Proxy's 30 min idle client timeout.
POOL_RECYCLE_S = 1_500
# With a single replica the UI's reads fall back to the primary while the replica is down (the read
# URI lists both hosts); recycling every 30 s brings them back within 30 s of its return, for the
# price of a reconnect per UI connection every 30 s (a few ms; the UI keeps a handful per worker).
READ_FALLBACK_RECYCLE_S = 30
# A UI task that reads a replica answers its load balancer's health check only after a short
# connection to that replica answers (`mlflow-infra-entrypoint` readiness): one more per task.
READINESS_CONNECTIONS = 1
# Room left above the fleet's own need when max_connections is set from it.
MAX_CONNECTIONS_MARGIN = 1.2
MIN_MAX_CONNECTIONS = 100
# With RDS Proxy, the proxy may use 90% of max_connections; the rest stays for admin sessions.
PROXY_MAX_CONNECTIONS_PERCENT = 90
# Idle connections the proxy keeps open to the database: half its share, so a burst finds warm ones.
PROXY_MAX_IDLE_PERCENT = 50
# RDS Proxy closes a client connection idle this long; the pools recycle theirs before (POOL_RECYCLE_S).
PROXY_IDLE_CLIENT_TIMEOUT_S = 1_800


@dataclass(frozen=True)
class Pool:
    pool_size: int
    max_overflow: int
    recycle_seconds: int

    @property
    def per_worker(self) -> int:
        return self.pool_size + self.max_overflow


def pool_for(role: str, clients: int = 0, workers: int = 1, read_fallback: bool = False,
             requests_per_worker: int = 1) -> Pool:
    """Pool and overflow per engine: the burst share of `clients` calling at once over `workers`,
    at most the requests one worker runs at once; recycled sooner when reads fall back to the
    primary (a single replica's UI)."""
    at_once = min(math.ceil(clients / max(1, workers)), requests_per_worker)
    burst = at_once * CONNECTIONS_PER_REQUEST[role] - POOL_SIZE[role]
    return Pool(POOL_SIZE[role], min(MAX_OVERFLOW_CAP[role], max(MIN_OVERFLOW[role], burst)),
                READ_FALLBACK_RECYCLE_S if read_fallback else POOL_RECYCLE_S)


def memory_ceiling(memory_bytes: int) -> int:
    """RDS's own default for the class: what its memory can hold."""
    return min(RDS_MAX_CONNECTIONS, memory_bytes // BYTES_PER_CONNECTION)


@dataclass(frozen=True)
class ProxyPlan:
    """RDS Proxy's target group and client settings, when the budget needs a proxy."""

    max_connections_percent: int
    max_idle_connections_percent: int
    idle_client_timeout_seconds: int
    require_tls: bool = True


@dataclass(frozen=True)
class ConnectionBudget:
    engines_per_worker: int       # SQLAlchemy engines (pools) per worker process on the primary
    api_connections: int          # to the primary, all API workers at max autoscale
    ui_primary_connections: int   # the UI's writes (and reads when there is no replica)
    ui_replica_connections: int   # per replica: its UI service's tasks at max autoscale, readiness checks included
    ui_fallback_connections: int  # a single replica's UI reads, on the primary while the replica is down
    fleet_connections: int        # api + ui (+ fallback) on the primary
    reserve: int
    max_connections: int
    memory_ceiling: int
    rds_proxy: bool
    proxy: ProxyPlan | None
    headroom: int                 # max_connections - reserve - connections the database sees
    reason: str


def plan_connection_budget(*, api_max: int, api_workers: int, api_pool: Pool, ui_max: int, ui_workers: int,
                           ui_pool: Pool, replicas: int, memory_bytes: int, proxy_mode: str, auth: str = "none",
                           source_file: str = "", instance_class: str = "") -> ConnectionBudget:
    engines, replica_engines, supervisor = engines_per_worker(auth), engines_per_worker(auth, "replica"), supervisor_connections(auth)
    replica_supervisor = supervisor_connections(auth, "replica")
    api = api_max * (api_workers * engines * api_pool.per_worker + supervisor)
    ui_all = ui_max * (ui_workers * engines * ui_pool.per_worker + supervisor)
    # The UI server keeps its engines on the primary too (writes: tags, notes, deletes; the auth
    # store); with replicas its reads move there: one UI service per replica, each with its share of
    # the UI tasks (the plan makes ui_max a multiple of the replicas), plus their readiness checks.
    ui_primary = ui_all
    ui_replica = (math.ceil(ui_max / replicas) * (ui_workers * replica_engines * ui_pool.per_worker + replica_supervisor
                                                  + READINESS_CONNECTIONS) if replicas else 0)
    # with a single replica the UI's reads fall back to the primary while it is down: count them there
    ui_fallback = ui_replica if replicas == 1 else 0
    fleet = api + ui_primary + ui_fallback
    reserve = SUPERUSER_RESERVED + ADMIN_HEADROOM + replication_reserve(replicas)
    ceiling = memory_ceiling(memory_bytes)
    fits_direct = fleet + reserve <= ceiling and ui_replica + reserve <= ceiling
    if proxy_mode == "off" and not fits_direct:
        raise SpecInvalid([SpecError(source_file, "database.rds_proxy",
                                     f"'off' is not allowed for this plan; at maximum autoscale the tracking fleets open {fleet} connections"
                                     f" but {instance_class} allows {ceiling - reserve} after the reserve of {reserve};"
                                     f" expected 'auto' or 'on', a larger database.instance_class, or lower tracking max_count")])
    if ui_replica + reserve > ceiling:
        # RDS Proxy has no reader endpoint for RDS for PostgreSQL: UI reads reach replicas directly.
        raise SpecInvalid([SpecError(source_file, "tracking.ui.max_count",
                                     f"{ui_max} is not allowed for this plan; each replica would get {ui_replica} UI connections"
                                     f" but {instance_class} allows {ceiling - reserve}; expected fewer UI tasks or more read replicas")])
    use_proxy = proxy_mode == "on" or not fits_direct
    if use_proxy:
        max_connections = ceiling
        # the proxy's share never eats into the reserve
        percent = min(PROXY_MAX_CONNECTIONS_PERCENT, (ceiling - reserve) * 100 // ceiling)
        seen = ceiling * percent // 100
        why = (f"{fleet} fleet connections at max autoscale vs {ceiling} the class holds:"
               f" RDS Proxy multiplexes them onto at most {percent}% of max_connections ({seen})"
               if not fits_direct else f"RDS Proxy requested (database.rds_proxy: on), using at most {percent}% of max_connections ({seen})")
        headroom = max_connections - reserve - seen
        proxy = ProxyPlan(percent, PROXY_MAX_IDLE_PERCENT, PROXY_IDLE_CLIENT_TIMEOUT_S)
    else:
        need = max(fleet, ui_replica) + reserve
        max_connections = min(ceiling, max(MIN_MAX_CONNECTIONS, math.ceil(need * MAX_CONNECTIONS_MARGIN)))
        api_task = f"{api_workers} workers x {engines} engines x ({api_pool.pool_size}+{api_pool.max_overflow})"
        ui_task = f"{ui_workers} x {engines} x ({ui_pool.pool_size}+{ui_pool.max_overflow})"
        # the server process's own store engines (and the basic-auth bootstrap's), once per task
        api_task, ui_task = (f"({t} + {supervisor} per process)" for t in (api_task, ui_task))
        fallback = f" + UI reads falling back from the replica {ui_fallback}" if ui_fallback else ""
        why = (f"API {api_max} x {api_task} = {api} + UI {ui_max} x {ui_task} = {ui_primary}{fallback}"
               f" + reserve {reserve} fits in max_connections {max_connections} (class holds {ceiling})")
        headroom = max_connections - reserve - max(fleet, ui_replica)
        proxy = None
    return ConnectionBudget(engines, api, ui_primary, ui_replica, ui_fallback, fleet, reserve,
                            max_connections, ceiling, use_proxy, proxy, headroom, why)
