"""The alarm plan: every CloudWatch alarm the platform gets, with its metric, threshold, period and
reason, computed from the environment's `alarms:` section and the plan's own figures (the
instance's memory, max_connections, the storage autoscaling ceiling). The monitoring component
loops over it and the cost estimate counts it; neither decides a number.

Each alarm names its `target` (what its dimensions point at) instead of the dimensions themselves,
which are only known once resources exist: `primary`, `replica-<i>`, `cluster` (Aurora), `api-lb`, `ui-lb`, `ui-tg`
(the UI's target group), `api-fleet`, `ui-fleet` (and `ui-<n>-fleet` for the UI service of replica n).
"""

from __future__ import annotations

from dataclasses import dataclass

from .sizing import service_names

GIB = 1024**3
# One-minute datapoints, 3 of the last 5 breaching: a blip does not page, a trend does within 5 min.
PERIOD_S = 60
EVALUATION_PERIODS = 5
DATAPOINTS_TO_ALARM = 3
# A service with no traffic has no datapoints; that is not an incident.
TREAT_MISSING_DATA = "notBreaching"
GREATER = "GreaterThanThreshold"
LESS = "LessThanThreshold"
# ECS Fargate services report CPU per service; EC2 fleets per Auto Scaling group.
FLEET_CPU_NAMESPACE = {"ecs": "AWS/ECS", "ec2": "AWS/EC2"}


@dataclass(frozen=True)
class AlarmPlan:
    key: str                       # the alarm's logical name, unique in the stack
    target: str                    # what the dimensions point at: primary, replica-<i>, api-lb, ui-lb, <role>-fleet
    namespace: str
    metric: str
    comparison: str                # GreaterThanThreshold | LessThanThreshold
    threshold: float
    statistic: str | None          # Average, Maximum, Minimum, Sum; None with extended_statistic
    extended_statistic: str | None  # p99
    period_seconds: int
    evaluation_periods: int
    datapoints_to_alarm: int
    treat_missing_data: str
    reason: str


def _alarm(key: str, target: str, namespace: str, metric: str, comparison: str, threshold: float,
           statistic: str | None, reason: str, extended: str | None = None) -> AlarmPlan:
    return AlarmPlan(key, target, namespace, metric, comparison, round(threshold, 3), statistic, extended,
                     PERIOD_S, EVALUATION_PERIODS, DATAPOINTS_TO_ALARM, TREAT_MISSING_DATA, reason)


# RDS storage autoscaling grows the volume when less than 10% of the current allocation is free
# (RDS user guide, "Managing capacity automatically with Amazon RDS storage autoscaling").
AUTOSCALING_TRIGGER_PERCENT = 10


def free_storage_percent(free_percent: int, autoscaling: bool) -> float:
    """The share of the first allocation the storage alarm fires under. With autoscaling, at most half
    of RDS's own trigger: the allocation only grows and RDS keeps 10% of it free, so free space under
    5% of the first allocation means autoscaling has stopped helping (at the max_storage_gib ceiling,
    or growth above plan within its 6-hour cooldown), and a working autoscaling never fires it."""
    return min(free_percent, AUTOSCALING_TRIGGER_PERCENT / 2) if autoscaling else free_percent


def plan_alarms(alarms, *, memory_gib: float, max_connections: int, allocated_gib: int, max_allocated_gib: int,
                replicas: int, compute: str, ui_services: int = 1, aurora: bool = False) -> tuple[AlarmPlan, ...]:
    """Every alarm, from the environment's `alarms:` section (`alarms`) and the plan's figures. On
    Aurora `primary` is the writer instance; its storage grows by itself (no free-space alarm), and
    the readers' lag is the cluster's AuroraReplicaLagMaximum (milliseconds), which covers the
    readers autoscaling adds."""
    a = alarms
    storage_percent = free_storage_percent(a.db_free_storage_percent, max_allocated_gib > allocated_gib)
    planned = [
        _alarm("db-cpu", "primary", "AWS/RDS", "CPUUtilization", GREATER, a.db_cpu_percent, "Average",
               "database CPU high: undersized class or a missing index (mlflow-infra plan)"),
        _alarm("db-memory", "primary", "AWS/RDS", "FreeableMemory", LESS, memory_gib * GIB * a.db_free_memory_percent / 100,
               "Average", f"database memory below {a.db_free_memory_percent}% of {memory_gib:g} GiB: the hot set no longer fits in cache"),
        _alarm("db-connections", "primary", "AWS/RDS", "DatabaseConnections", GREATER,
               max_connections * a.db_connections_percent_of_budget / 100, "Maximum",
               f"connections near max_connections {max_connections}: pools are outgrowing the budget"),
        _alarm("db-storage", "primary", "AWS/RDS", "FreeStorageSpace", LESS, allocated_gib * GIB * storage_percent / 100,
               "Minimum", f"free storage below {storage_percent:g}% of the first {allocated_gib:,} GiB: storage autoscaling"
               f" (up to {max_allocated_gib:,} GiB) is not keeping up; raise database.max_storage_gib or shorten retention"),
        _alarm("db-disk-queue", "primary", "AWS/RDS", "DiskQueueDepth", GREATER, a.disk_queue_depth, "Average",
               "I/O queueing: gp3 IOPS or throughput below the write load"),
    ]
    if aurora:
        planned = [alarm for alarm in planned if alarm.key != "db-storage"]
        if replicas:
            planned.append(_alarm("readers-lag", "cluster", "AWS/RDS", "AuroraReplicaLagMaximum", GREATER,
                                  a.replica_lag_seconds * 1000, "Maximum", "reader lag: the UI shows stale runs"))
    else:
        planned += [_alarm(f"replica-{i}-lag", f"replica-{i}", "AWS/RDS", "ReplicaLag", GREATER, a.replica_lag_seconds,
                           "Maximum", "replica lag: the UI shows stale runs") for i in range(replicas)]
    planned += [_alarm(f"{role}-5xx", f"{role}-lb", "AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", GREATER,
                       a.load_balancer_5xx_per_minute, "Sum", f"{role} servers answer 5xx") for role in ("api", "ui")]
    planned.append(_alarm("api-latency-p99", "api-lb", "AWS/ApplicationELB", "TargetResponseTime", GREATER,
                          a.api_p99_latency_ms / 1000, None, "API p99 latency: logging calls queue", extended="p99"))
    # one CPU alarm per service: the UI has one per replica, each autoscaled on its own
    fleets = [*service_names("api", 1), *service_names("ui", ui_services)]
    planned += [_alarm(f"{fleet}-cpu", f"{fleet}-fleet", FLEET_CPU_NAMESPACE[compute], "CPUUtilization", GREATER,
                       a.service_cpu_percent, "Average", f"{fleet} servers CPU high: autoscaling at its maximum?")
                for fleet in fleets]
    if replicas:
        # a UI task fails its readiness when its replica cannot answer: the load balancer routes around
        # it, and this says so instead of leaving the loss invisible
        planned.append(_alarm("ui-unhealthy-targets", "ui-tg", "AWS/ApplicationELB", "UnHealthyHostCount", GREATER, 0,
                              "Maximum", "UI tasks fail their readiness: a read replica cannot answer (the others serve)"))
    return tuple(planned)
