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


# ---------------------------------------------------------------------------------------------
# the application role: what the servers log in as (see README "Rotating database passwords")

# what the app role owns after a migration: MLflow's tables, views and sequences (and basic-auth's),
# and enum or domain types, in schema public; never an extension's objects (pg_stat_statements' views
# live in public too) and never a sequence owned by a column (it follows its table's owner)
_OWNED_ELSEWHERE_SQL = """
SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END,
       c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S') AND c.relowner <> %(role)s::regrole
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND (d.deptype = 'e' OR (c.relkind = 'S' AND d.deptype IN ('a', 'i'))))
UNION ALL
SELECT 'TYPE', t.typname
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd') AND t.typowner <> %(role)s::regrole
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""


def password_verifier(conn, role: str, password: str) -> str:
    """The SCRAM-SHA-256 verifier of `password`, computed client-side by libpq (PQencryptPasswordConn,
    as psql's \\password does): the cleartext never reaches the server, so no statement log can hold it."""
    return conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256").decode()


def ensure_app_role(conn, role: str, password: str) -> list[str]:
    """Create `role` (LOGIN, no other attribute) with `password`, or set its password to `password`:
    the secret's current value is always the one that works. Then CONNECT on this database, USAGE and
    CREATE on schema public, and the migrating user made a member of the role (so it can hand objects to
    it and keep altering them: on RDS the master user is no superuser). Idempotent. Returns the
    statements executed, the password shown as '***'."""
    from psycopg import sql

    ident = sql.Identifier(role)
    verifier = sql.Literal(password_verifier(conn, role, password))
    executed: list[str] = []

    def run(statement, shown: str) -> None:
        conn.execute(statement)
        executed.append(shown)

    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    if exists:
        run(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(ident, verifier), f"ALTER ROLE {role} WITH LOGIN PASSWORD ***")
    else:
        run(sql.SQL("CREATE ROLE {} WITH LOGIN PASSWORD {}").format(ident, verifier), f"CREATE ROLE {role} WITH LOGIN PASSWORD ***")
    database = conn.execute("SELECT current_database()").fetchone()[0]
    run(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), ident),
        f"GRANT CONNECT ON DATABASE {database} TO {role}")
    run(sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(ident), f"GRANT USAGE, CREATE ON SCHEMA public TO {role}")
    if not conn.execute("SELECT pg_has_role(current_user, %s, 'USAGE')", (role,)).fetchone()[0]:
        run(sql.SQL("GRANT {} TO CURRENT_USER").format(ident), f"GRANT {role} TO CURRENT_USER")
    return executed


def give_ownership(conn, role: str) -> list[str]:
    """ALTER ... OWNER TO `role` for every object in schema public it does not own yet (see
    _OWNED_ELSEWHERE_SQL); a table's indexes and column sequences follow it. Returns the statements."""
    from psycopg import sql

    executed: list[str] = []
    for kind, name in conn.execute(_OWNED_ELSEWHERE_SQL, {"role": role}).fetchall():
        statement = sql.SQL("ALTER {} public.{} OWNER TO {}").format(sql.SQL(kind), sql.Identifier(name), sql.Identifier(role))
        conn.execute(statement)
        executed.append(f"ALTER {kind} public.{name} OWNER TO {role}")
    return executed
