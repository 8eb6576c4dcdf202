"""The three setups the benchmark compares, each a context manager that yields a running Target and
stops everything it started:

  stock-sqlite    stock `mlflow server` on its default SQLite store (the baseline of every ratio)
  stock-postgres  stock `mlflow server` on one untuned PostgreSQL (initdb defaults)
  planned-local   the planned local topology (infra.local.topology.LocalTopology): tuned primary,
                  streaming replica, API and UI servers; the UI reads from the replica
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from ..local.postgres import LocalPostgres
from ..local.processes import free_port, free_port_block
from ..local.topology import LocalTopology
from ..runtime.migrate import libpq_uri
from ..spec import load_environment
from .procs import mlflow_server

BASELINE = "stock-sqlite"
LABELS = {
    "stock-sqlite": "(a) stock mlflow server, SQLite",
    "stock-postgres": "(b) stock mlflow server, untuned PostgreSQL",
    "planned-local": "(c) planned local topology",
}
# the local topology numbers the PostgreSQL primary and replica from its base port
TOPOLOGY_PORTS = 10


@dataclass(frozen=True)
class Target:
    name: str
    api_url: str
    ui_url: str            # where UI reads go; the API URL for a single server
    primary_uri: str | None  # libpq URI of the PostgreSQL primary; None for SQLite
    replica_split: bool    # the UI URL reads from a replica
    api_pid: int | None = None   # the planned API server's process (its environment seeds the server-stack section)
    jobs: int = 0                # the plan's concurrent training jobs (what its pools are sized for)
    client_environment: dict | None = None   # the plan's client_environment

    @property
    def label(self) -> str:
        return LABELS.get(self.name, self.name)

    @property
    def api_port(self) -> int:
        return urlsplit(self.api_url).port

    @property
    def ui_port(self) -> int:
        return urlsplit(self.ui_url).port


@contextmanager
def stock_sqlite(root: Path, progress=print):
    db = root / "sqlite" / "mlflow.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    with mlflow_server(f"sqlite:///{db}", root / "sqlite") as url:
        yield Target("stock-sqlite", url, url, None, False)


@contextmanager
def untuned_postgres(data_dir: Path, database: str = "mlflow"):
    """A PostgreSQL with initdb's defaults and an empty database; yields its libpq URI."""
    server = LocalPostgres(data_dir, free_port())
    server.init()
    try:
        server.start()
        with psycopg.connect(server.uri(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {database}")
        yield server.uri(database)
    finally:
        server.stop()


@contextmanager
def stock_postgres(root: Path, progress=print):
    with untuned_postgres(root / "pg-stock" / "data") as uri:
        # the stock server creates MLflow's tables itself on an empty database
        with mlflow_server(uri, root / "pg-stock") as url:
            yield Target("stock-postgres", url, url, uri, False)


@contextmanager
def planned_local(root: Path, progress=print):
    """The local topology, up (LocalTopology.up waits until both servers serve); torn down and purged on exit."""
    base = free_port_block(TOPOLOGY_PORTS)
    api_port, ui_port = free_port(), free_port()
    topo = LocalTopology.from_environment("local", root=root / "topology", base_port=base,
                                          api_port=api_port, ui_port=ui_port)
    try:
        state = topo.up(progress=lambda line: progress(f"  {line}"))
        api = next(s for s in topo.read_state()["servers"] if s["role"] == "api")
        yield Target("planned-local", state.api_url.rstrip("/"), state.ui_url.rstrip("/"),
                     libpq_uri(state.primary_uri), bool(state.replica_uris), api_pid=api["pid"],
                     jobs=load_environment("local").workload.concurrent_training_jobs,
                     client_environment=dict(topo.plan.client_environment))
    finally:
        topo.down(purge=True)


VARIANTS = {"stock-sqlite": stock_sqlite, "stock-postgres": stock_postgres, "planned-local": planned_local}
