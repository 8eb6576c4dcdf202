"""The index migration: what MLflow's schema lacks for its own search queries (README bottleneck 7).

Runs after `mlflow db upgrade`, idempotently: CREATE INDEX CONCURRENTLY IF NOT EXISTS under an
advisory lock, so many tasks starting at once build each index once and never block logging.
The figures behind each entry are in infra/data/mlflow_indexes.yaml.
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
    method: str
    columns: str
    reason: str

    @property
    def create_sql(self) -> str:
        # CONCURRENTLY: logging goes on while the index builds (no write lock on the table)
        return f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {self.name} ON {self.table} USING {self.method} ({self.columns})"

    @property
    def drop_invalid_sql(self) -> str:
        # an interrupted CONCURRENTLY build leaves an INVALID index that IF NOT EXISTS would keep
        return f"DROP INDEX CONCURRENTLY IF EXISTS {self.name}"


@dataclass(frozen=True)
class StatisticsSpec:
    name: str
    table: str
    columns: str
    kinds: str
    reason: str

    @property
    def create_sql(self) -> str:
        return f"CREATE STATISTICS IF NOT EXISTS {self.name} ({self.kinds}) ON {self.columns} FROM {self.table}"


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
    statistics: tuple[StatisticsSpec, ...]
    table_settings: tuple[TableSettings, ...]
    source: str
    recorded: str

    @property
    def statements(self) -> tuple[str, ...]:
        """Every statement in order; ANALYZE after the statistics so the planner uses them at once."""
        analyze = tuple(dict.fromkeys(f"ANALYZE {s.table}" for s in self.statistics))
        return (tuple(i.create_sql for i in self.indexes) + tuple(s.create_sql for s in self.statistics)
                + analyze + tuple(t.alter_sql for t in self.table_settings))


def _checked(name: str, *identifiers: str) -> None:
    for identifier in identifiers:
        if not _IDENTIFIER.match(identifier):
            raise ValueError(f"infra/data/mlflow_indexes.yaml: {name}: {identifier!r} is not a plain identifier")


def index_migration() -> IndexMigration:
    data = catalogue.mlflow_indexes()
    indexes = tuple(IndexSpec(**row) for row in data["indexes"])
    statistics = tuple(StatisticsSpec(**row) for row in data["statistics"])
    settings = tuple(TableSettings(row["table"], tuple((k, str(v)) for k, v in row["settings"].items()), row["reason"])
                     for row in data["table_settings"])
    for item in indexes:
        _checked(item.name, item.name, item.table, item.method)
    for stat in statistics:
        _checked(stat.name, stat.name, stat.table)
    return IndexMigration(int(data["advisory_lock_key"]), indexes, statistics, settings,
                          str(data["source"]), str(data["recorded"]))
