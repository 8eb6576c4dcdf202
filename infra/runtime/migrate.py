"""Apply the planned index migration (infra/indexes.py) to a live MLflow database.

Runs after `mlflow db upgrade`, from `mlflow-infra-entrypoint migrate`. Safe to run from many tasks
at once and to run again: one session advisory lock serialises it, every statement is IF NOT EXISTS
or a settings change, and an index left INVALID by an interrupted concurrent build is dropped first.
"""

from __future__ import annotations

from contextlib import contextmanager

from ..planning.indexes import IndexMigration, index_migration

# SQLAlchemy dialect+driver schemes MLflow accepts for PostgreSQL; libpq only knows the plain ones.
_SQLALCHEMY_SCHEMES = ("postgresql+psycopg://", "postgresql+psycopg2://", "postgresql+pg8000://")
_LIBPQ_SCHEMES = ("postgresql://", "postgres://")
CONNECT_TIMEOUT_S = 30

_INVALID_INDEXES_SQL = """
SELECT c.relname
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE c.relname = ANY(%s) AND NOT i.indisvalid AND pg_table_is_visible(c.oid)
ORDER BY c.relname
"""


def libpq_uri(uri: str) -> str:
    """A PostgreSQL URI psycopg can open: the SQLAlchemy driver suffix removed, anything else refused."""
    for scheme in _SQLALCHEMY_SCHEMES:
        if uri.startswith(scheme):
            return "postgresql://" + uri[len(scheme):]
    if uri.startswith(_LIBPQ_SCHEMES):
        return uri
    scheme = uri.split("://", 1)[0] if "://" in uri else uri[:20]
    raise ValueError(f"database URI scheme {scheme!r} is not supported; expected postgresql:// or postgresql+psycopg://")


def invalid_indexes(conn, names: list[str]) -> list[str]:
    """Indexes among `names` that an interrupted CREATE INDEX CONCURRENTLY left INVALID."""
    return [row[0] for row in conn.execute(_INVALID_INDEXES_SQL, (names,)).fetchall()]


@contextmanager
def migration_lock(uri: str, key: int):
    """An autocommit connection holding the session advisory lock `key`: one migration at a time."""
    import psycopg  # lazily: only `migrate` needs a PostgreSQL driver in this process

    # autocommit: CREATE INDEX CONCURRENTLY refuses to run inside a transaction block
    with psycopg.connect(libpq_uri(uri), autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as conn:
        conn.execute("SELECT pg_advisory_lock(%s::bigint)", (key,))
        try:
            yield conn
        finally:
            if not conn.broken:  # a lost connection has released its session lock already
                conn.execute("SELECT pg_advisory_unlock(%s::bigint)", (key,))


def apply_index_migration(conn, migration: IndexMigration) -> list[str]:
    """Every statement executed, in order; `conn` must be autocommit and hold the migration lock."""
    by_name = {index.name: index for index in migration.indexes}
    executed: list[str] = []
    for name in invalid_indexes(conn, list(by_name)):
        conn.execute(by_name[name].drop_invalid_sql)
        executed.append(by_name[name].drop_invalid_sql)
    for statement in migration.statements:
        conn.execute(statement)
        executed.append(statement)
    return executed


def run_index_migration(uri: str, migration: IndexMigration | None = None) -> list[str]:
    """Apply the migration under its advisory lock; returns every statement executed, in order."""
    migration = migration or index_migration()
    with migration_lock(uri, migration.advisory_lock_key) as conn:
        return apply_index_migration(conn, migration)
