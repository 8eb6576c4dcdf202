"""`mlflow-infra db apply-pending ENV`: what RDS holds back until a reboot, applied in a safe order.

The stack creates its parameter groups and instances with `apply_immediately=False`, so a static
parameter (`shared_buffers`, `max_connections`, ...) leaves the instances `pending-reboot` and
nothing ever reboots them. This plans the reboots from describe_db_instances (a pure function) and
performs them one at a time, each waited on until the instance is available again:

1. the replicas first: while one restarts, the UI reads the other replicas (or the primary, its
   read fallback). A hot standby must run `max_connections`, `max_worker_processes`,
   `max_wal_senders`, `max_prepared_transactions` and `max_locks_per_transaction` at least as high
   as its primary (PostgreSQL, "Hot Standby: Administrator's Overview": a standby set lower pauses
   its replay or refuses to start), so an increase, which is what the plan makes as the workload
   grows, goes to the replicas first;
2. then the primary, through a failover when it is Multi-AZ (the standby takes over in about a
   minute instead of a cold restart); RDS refuses a failover reboot of an instance that is not.

On Aurora the writer is the primary and the readers the replicas, in the same order; a member
also waits for a reboot when its cluster parameter group is `pending-reboot` for it
(describe_db_clusters' DBClusterMembers), and it is rebooted without a failover (an Aurora
instance is not Multi-AZ itself: the cluster fails over to a reader, which `aws rds
failover-db-cluster` does by hand if the writer's restart must be avoided).

A change that lowers one of those parameters (a smaller workload) must go the other way, the
primary first: `--primary-first`. RDS does not say which values an instance runs, so the command
cannot tell the direction itself; `mlflow-infra doctor ENV` shows them beside the plan's.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

# PostgreSQL's parameters a hot standby must run at least as high as its primary.
STANDBY_AT_LEAST_PRIMARY = ("max_connections", "max_worker_processes", "max_wal_senders", "max_prepared_transactions",
                            "max_locks_per_transaction")
PENDING = "pending-reboot"
# RDS reboots only an instance that is `available` (InvalidDBInstanceState otherwise).
REBOOTABLE = "available"
WAIT_DELAY_S = 30
WAIT_MAX_ATTEMPTS = 60  # 30 min: a large instance's crash recovery after a restart can take a while


@dataclass(frozen=True)
class Reboot:
    """One reboot of the plan: the instance, whether through a failover, and the groups it applies."""

    node: str
    identifier: str
    failover: bool
    groups: tuple[str, ...]
    status: str
    cluster: str | None = None
    """The Aurora cluster whose cluster parameter group waits for this reboot, else None."""

    def describe(self) -> str:
        how = "reboot with failover to its Multi-AZ standby" if self.failover else "reboot"
        return f"{how} {self.node} {self.identifier} (parameter group {', '.join(self.groups)} is {PENDING})"


def node_order(node: str, primary_first: bool = False) -> tuple[int, int]:
    """Replicas in their index order, the primary last (or first)."""
    if node == "primary":
        return (0 if primary_first else 1, 0)
    _, _, index = node.rpartition("-")
    return (1 if primary_first else 0, int(index) if index.isdigit() else 0)


def cluster_pending(cluster: Mapping | None) -> set[str]:
    """The members of an Aurora cluster (describe_db_clusters entry) its cluster parameter group waits on."""
    return {m["DBInstanceIdentifier"] for m in (cluster or {}).get("DBClusterMembers", [])
            if m.get("DBClusterParameterGroupStatus") == PENDING}


def reboot_plan(databases: Mapping[str, dict], primary_first: bool = False, cluster: Mapping | None = None) -> list[Reboot]:
    """The reboots that apply every pending-reboot parameter group: replicas first, then the primary
    (or the primary first, for a change that lowers a parameter of STANDBY_AT_LEAST_PRIMARY); on
    Aurora (`cluster`), its cluster parameter group too, and never through a failover."""
    waiting = cluster_pending(cluster)
    steps = []
    for node in sorted(databases, key=lambda n: node_order(n, primary_first)):
        db = databases[node]
        groups = tuple(g["DBParameterGroupName"] for g in db.get("DBParameterGroups", [])
                       if g.get("ParameterApplyStatus") == PENDING)
        in_cluster = cluster is not None and db["DBInstanceIdentifier"] in waiting
        if in_cluster:
            groups += (cluster["DBClusterParameterGroup"],)
        if groups:
            steps.append(Reboot(node, db["DBInstanceIdentifier"], bool(db.get("MultiAZ")) and not db.get("DBClusterIdentifier"),
                                groups, db.get("DBInstanceStatus", "?"), cluster["DBClusterIdentifier"] if in_cluster else None))
    return steps


def blocked(steps: list[Reboot]) -> list[str]:
    """Why the plan cannot run now: an instance RDS would refuse to reboot."""
    return [f"{s.node} {s.identifier} is {s.status}; RDS reboots only an {REBOOTABLE} instance: wait and run again"
            for s in steps if s.status != REBOOTABLE]


class RebootTimeout(Exception):
    pass


def settled(db: dict) -> bool:
    """The reboot is done: available again, and no parameter group still waits for one (right after
    the call an instance may still say `available` before it says `rebooting`)."""
    return db.get("DBInstanceStatus") == REBOOTABLE and not any(
        g.get("ParameterApplyStatus") == PENDING for g in db.get("DBParameterGroups", []))


def apply(rds, steps: list[Reboot], say, delay_s: float = WAIT_DELAY_S, max_attempts: int = WAIT_MAX_ATTEMPTS,
          sleep=time.sleep) -> None:
    """Each reboot in order, the next only once the previous instance has settled."""
    for step in steps:
        say(f"{step.describe()} ...")
        rds.reboot_db_instance(DBInstanceIdentifier=step.identifier, ForceFailover=step.failover)
        for _ in range(max_attempts):
            db = rds.describe_db_instances(DBInstanceIdentifier=step.identifier)["DBInstances"][0]
            if settled(db) and (step.cluster is None or step.identifier not in cluster_pending(
                    rds.describe_db_clusters(DBClusterIdentifier=step.cluster)["DBClusters"][0])):
                break
            sleep(delay_s)
        else:
            raise RebootTimeout(f"{step.node} {step.identifier} was not available with its parameters in sync after"
                                f" {delay_s * max_attempts / 60:g} min (status {db.get('DBInstanceStatus')}): the remaining"
                                " reboots were not started; see its RDS events, then run again")
        say(f"{step.node} {step.identifier} is available, its parameters in sync")
