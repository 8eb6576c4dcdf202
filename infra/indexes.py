"""The index migration: what MLflow's schema lacks for its own search queries (reference text fix 7).

Runs after `mlflow db upgrade`, idempotently: CREATE INDEX CONCURRENTLY IF NOT EXISTS under an
advisory lock, so many tasks starting at once build each index once and never block logging.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import catalogue

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class IndexSpec:
    name: str
    table: str
    columns: str
    reason: str

    @property
    def create_sql(self) -> str:
        # CONCURRENTLY: logging goes on while the index builds (no write lock on the table)
        return f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {self.name} ON {self.table} ({self.columns})"

    @property
    def drop_invalid_sql(self) -> str:
        # a CONCURRENTLY build that was interrupted leaves an INVALID index that IF NOT EXISTS would keep
        return f"DROP INDEX CONCURRENTLY IF EXISTS {self.name}"


@dataclass(frozen=True)
class TableSettings:
    table: str
    settings: tuple[tuple[str, str], ...]
    reason: str

    @property
    def alter_sql(self) -> str:
        body = ", ".join(f"{k} = {v}" for k, v in self.settings)
        return f"ALTER TABLE {self.table} SET ({body})"


@dataclass(frozen=True)
class IndexMigration:
    advisory_lock_key: int
    indexes: tuple[IndexSpec, ...]
    table_settings: tuple[TableSettings, ...]
    source: str
    recorded: str


def index_migration() -> IndexMigration:
    data = catalogue.mlflow_indexes()
    indexes = tuple(IndexSpec(**row) for row in data["indexes"])
    settings = tuple(TableSettings(row["table"], tuple((k, str(v)) for k, v in row["settings"].items()), row["reason"])
                     for row in data["table_settings"])
    for item in indexes:
        if not (_IDENTIFIER.match(item.name) and _IDENTIFIER.match(item.table)):
            raise ValueError(f"infra/data/mlflow_indexes.yaml: index {item.name!r} on {item.table!r} is not a plain identifier")
    return IndexMigration(int(data["advisory_lock_key"]), indexes, settings, str(data["source"]), str(data["recorded"]))
