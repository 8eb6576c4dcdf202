"""MLflow's schema version: where the database stands against what this image's MLflow expects.

A rolling deploy runs old and new images side by side. So the upgrade runs once per deploy, in the
migrate step (the API tier's tasks, under the migration's advisory lock): when the database is at
the expected revision it does nothing; when it is behind, a manual RDS snapshot of the primary is
taken first (an MLflow schema upgrade has no downgrade); when it is ahead (a newer image upgraded
it) it refuses. A server starts only against exactly the revision its MLflow expects: it waits for
the migrate step of its own deploy while the database is behind, and fails at once when it is ahead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

CURRENT, BEHIND, AHEAD, EMPTY = "current", "behind", "ahead", "empty"
# A snapshot of a large primary takes minutes; the boto3 waiter asks every 30 s, for up to an hour.
SNAPSHOT_POLL_S = 30
SNAPSHOT_MAX_ATTEMPTS = 120
SCHEMA_POLL_S = 5


@dataclass(frozen=True)
class SchemaState:
    found: str | None      # the database's alembic revision, None before MLflow created its tables
    expected: str          # this MLflow's head revision
    status: str            # CURRENT, BEHIND (an older known revision), AHEAD (unknown to this MLflow), EMPTY

    def describe(self) -> str:
        return {CURRENT: f"the schema is at {self.expected}, what this MLflow expects",
                BEHIND: f"the schema is at {self.found}, older than {self.expected} this MLflow expects",
                AHEAD: f"the schema is at {self.found}, which this MLflow does not know (it expects {self.expected}):"
                       " a newer MLflow upgraded it; run the newer image (roll the deployment forward)",
                EMPTY: f"the database has no MLflow schema yet; this MLflow expects {self.expected}"}[self.status]


def mlflow_revisions() -> tuple[str, set[str]]:
    """This MLflow's head revision and every revision it knows (its alembic scripts)."""
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config, _get_latest_schema_revision

    script = ScriptDirectory.from_config(_get_alembic_config(db_url=""))
    return _get_latest_schema_revision(), {rev.revision for rev in script.walk_revisions()}


def found_revision(conn) -> str | None:
    """The revision in MLflow's alembic_version table; None when the table does not exist yet."""
    if not conn.execute("SELECT to_regclass('public.alembic_version') IS NOT NULL").fetchone()[0]:
        return None
    row = conn.execute("SELECT version_num FROM public.alembic_version").fetchone()
    return row[0] if row else None


def classify(found: str | None, expected: str, known: set[str]) -> SchemaState:
    if found is None:
        return SchemaState(found, expected, EMPTY)
    if found == expected:
        return SchemaState(found, expected, CURRENT)
    return SchemaState(found, expected, BEHIND if found in known else AHEAD)


def schema_state(conn, revisions: tuple[str, set[str]] | None = None) -> SchemaState:
    expected, known = revisions or mlflow_revisions()
    return classify(found_revision(conn), expected, known)


# ---------------------------------------------------------------------------------------------
# the snapshot before an upgrade

def snapshot_identifier(instance: str, found: str, expected: str) -> str:
    """`INSTANCE-mlflow-FOUND-to-EXPECTED`: letters, digits and single hyphens, starting with a letter
    (the instance identifier's own rule), at most 255 characters, as RDS requires. The same for every
    attempt at one upgrade, so a task replaced while it waits leaves the next one waiting for the same
    snapshot instead of starting another."""
    name = f"{instance}-mlflow-{found[:12]}-to-{expected[:12]}".lower()
    name = "-".join(part for part in "".join(c if c.isalnum() else "-" for c in name).split("-") if part)
    if not name[:1].isalpha():
        raise ValueError(f"DB_INSTANCE_ID {instance!r} is not allowed; expected an RDS instance identifier (starts with a letter)")
    return name[:255].rstrip("-")


# RDS's snapshot calls for an instance and for an Aurora cluster: (create, its identifier argument,
# the snapshot's, the answer's key, "already exists" error codes, describe, waiter, the ARN's key)
SNAPSHOT_API = {
    "instance": ("create_db_snapshot", "DBInstanceIdentifier", "DBSnapshotIdentifier", "DBSnapshot",
                 ("DBSnapshotAlreadyExists", "DBSnapshotAlreadyExistsFault"), "describe_db_snapshots", "DBSnapshots",
                 "db_snapshot_available", "DBSnapshotArn"),
    "cluster": ("create_db_cluster_snapshot", "DBClusterIdentifier", "DBClusterSnapshotIdentifier", "DBClusterSnapshot",
                ("DBClusterSnapshotAlreadyExistsFault",), "describe_db_cluster_snapshots", "DBClusterSnapshots",
                "db_cluster_snapshot_available", "DBClusterSnapshotArn"),
}


def take_snapshot(source: str, identifier: str, rds=None, poll_s: float = SNAPSHOT_POLL_S,
                  max_attempts: int = SNAPSHOT_MAX_ATTEMPTS, say: Callable[[str], None] | None = None,
                  kind: str = "instance") -> str:
    """Create a manual snapshot of `source` (an RDS instance, or with kind "cluster" an Aurora cluster)
    and wait until it is available; an existing snapshot of that name (a retried upgrade) is waited
    for instead. Returns its ARN."""
    import boto3
    from botocore.exceptions import ClientError

    create, source_key, snapshot_key, answer, exists, describe, listed, waiter, arn_key = SNAPSHOT_API[kind]
    say = say or (lambda line: print(f"mlflow-infra-entrypoint: {line}", file=sys.stderr))
    rds = rds or boto3.client("rds")
    try:
        created = getattr(rds, create)(**{snapshot_key: identifier, source_key: source})[answer]
        say(f"snapshot {identifier} of {source} started before the schema upgrade")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in exists:
            raise
        created = getattr(rds, describe)(**{snapshot_key: identifier})[listed][0]
        say(f"snapshot {identifier} exists already (a retried upgrade); waiting for it")
    rds.get_waiter(waiter).wait(**{snapshot_key: identifier, "WaiterConfig": {"Delay": poll_s, "MaxAttempts": max_attempts}})
    say(f"snapshot {identifier} is available")
    return created[arn_key]


# ---------------------------------------------------------------------------------------------
# a server waits for its deploy's schema

def wait_for_schema(connect: Callable[[], object], timeout_s: float, revisions: tuple[str, set[str]] | None = None,
                    poll_s: float = SCHEMA_POLL_S, say: Callable[[str], None] | None = None) -> SchemaState:
    """Return once the schema is CURRENT. AHEAD raises at once; BEHIND, EMPTY or a database that does
    not answer yet (the migrate step creates the servers' role) are waited out until `timeout_s`,
    then raise. The error is a RuntimeError whose message says what was found."""
    say = say or (lambda line: print(f"mlflow-infra-entrypoint: {line}", file=sys.stderr))
    revisions = revisions or mlflow_revisions()
    deadline = time.monotonic() + timeout_s
    last, said = "", ""
    while True:
        try:
            with connect() as conn:
                state = schema_state(conn, revisions)
            if state.status == CURRENT:
                return state
            if state.status == AHEAD:
                raise RuntimeError(state.describe())
            last = state.describe()
        except RuntimeError:
            raise
        except Exception as exc:  # noqa: BLE001 (a driver error while the role or database is not ready yet)
            text = str(exc).strip().splitlines()
            last = f"the database did not answer: {text[0] if text else type(exc).__name__}"
        if last != said:
            say(f"waiting for the migrate step: {last}")
            said = last
        if time.monotonic() + poll_s > deadline:
            raise RuntimeError(f"{last}; waited {timeout_s:g} s for the migrate step of this deploy to upgrade it")
        time.sleep(poll_s)
