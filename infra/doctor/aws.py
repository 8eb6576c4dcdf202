"""The AWS sources of `mlflow-infra doctor ENV`: RDS, CloudWatch, ECS (or the EC2 Auto Scaling
groups) and the load balancers, read through boto3 in the plan's region.

The stack's resources are found by their tags, never by name (Pulumi adds a random suffix to every
name): `mlflow-infra:environment` is the environment on every resource, `mlflow-infra:target` names
what a resource is to the plan's alarms (`primary`, `replica-0`, `api-lb`, `ui-tg`, `api-fleet`,
`ui-2-fleet`, ...). So the doctor evaluates the plan's own alarms over a window (default the last
24 h) instead of a second set of thresholds, and compares what RDS and ECS describe with the plan.

Each check is a pure function from what the API returned to findings; `read_*` functions make the
calls. Nothing here changes a resource: `db apply-pending` (pending.py) is the one that does.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..endpoints import ENVIRONMENT_TAG, TARGET_TAG
from ..planning.alarms import GREATER, AlarmPlan
from ..planning.plan import CapacityPlan
from .database import normalise
from .findings import Finding

# CloudWatch keeps 5-minute datapoints for 63 days; 288 of them cover a day in one request.
WINDOW_PERIOD_S = 300
DEFAULT_WINDOW_HOURS = 24
# An alarm condition held for 3 periods (15 min) of the window is a trend, not a blip (the alarms
# themselves page on 3 of 5 one-minute points); held for a tenth of the window it is the normal state.
BREACH_MIN_PERIODS = 3
BREACH_HIGH_SHARE = 0.1
# Provisioned gp3 IOPS or throughput used above this share in a period: the volume is the limit.
STORAGE_USE_SHARE = 0.9
MIB = 1024**2
# describe_services takes at most 10 services a call, describe_tags 20 load balancers or groups.
ECS_DESCRIBE_MAX = 10
ELB_TAGS_MAX = 20
# The remedy of each bottleneck an alarm belongs to, as a change to the environment file.
ALARM_BOTTLENECK = (
    ("db-connections", "connections"), ("db-", "instance"), ("replica-", "replicas"), ("ui-unhealthy", "replicas"),
    ("", "server"),
)
REMEDIES = {
    "instance": "check the top statements for a missing index first; then a larger class: database.instance_class in"
                " stacks/{env}.yaml (or higher workload figures), pulumi up",
    "storage": "raise database.max_storage_gib in stacks/{env}.yaml, or shorten the retention; pulumi up",
    "connections": "lower tracking.api.max_count / workers, or set database.rds_proxy: on in stacks/{env}.yaml; pulumi up",
    "replicas": "look for long queries on the replica or a write burst; a larger replica class if it persists",
    "server": "raise tracking.{role}.max_count or tracking.{role}.vcpu in stacks/{env}.yaml; pulumi up",
    "drift": "pulumi up --stack {env}: the stack sets the planned value (changes wait for the maintenance window)",
    "apply-pending": "mlflow-infra db apply-pending {env}",
}


def tag_map(tags: Iterable[Mapping] | None) -> dict[str, str]:
    """RDS and ELB spell tags Key/Value, ECS key/value."""
    return {t.get("Key", t.get("key")): t.get("Value", t.get("value")) for t in tags or ()}


def arn_suffix(arn: str, marker: str) -> str:
    """CloudWatch's dimension value of a load balancer (`app/NAME/ID`) or target group (`targetgroup/NAME/ID`)."""
    return arn.split(marker, 1)[1] if marker in arn else arn


@dataclass
class Deployment:
    """What runs for one environment, by the plan's target names."""

    databases: dict[str, dict] = field(default_factory=dict)
    """`primary`, `replica-0`, ...: describe_db_instances entries."""
    services: dict[str, dict] = field(default_factory=dict)
    """`api-fleet`, `ui-fleet`, `ui-2-fleet`, ...: describe_services entries (ECS) or Auto Scaling groups (EC2)."""
    dimensions: dict[str, dict[str, str]] = field(default_factory=dict)
    """Every alarm target's CloudWatch dimensions."""


# ---------------------------------------------------------------------------------------------
# reading

# an Aurora cluster's members by the plan's node names: its writer is the primary, reader-<i> replica-<i>
AURORA_NODES = {"writer": "primary"}


def node_name(target: str) -> str:
    return AURORA_NODES.get(target, target.replace("reader-", "replica-", 1) if target.startswith("reader-") else target)


def read_databases(rds, environment: str) -> dict[str, dict]:
    """The environment's RDS instances (Aurora members included) by the plan's node: `primary`, `replica-<i>`."""
    found = {}
    for page in rds.get_paginator("describe_db_instances").paginate():
        for db in page["DBInstances"]:
            tags = tag_map(db.get("TagList"))
            if tags.get(ENVIRONMENT_TAG) == environment and tags.get(TARGET_TAG):
                found[node_name(tags[TARGET_TAG])] = db
    return found


def read_cluster(rds, environment: str) -> dict | None:
    """The environment's Aurora cluster (tagged `cluster`), or None on RDS for PostgreSQL."""
    for page in rds.get_paginator("describe_db_clusters").paginate():
        for cluster in page["DBClusters"]:
            tags = tag_map(cluster.get("TagList"))
            if tags.get(ENVIRONMENT_TAG) == environment and tags.get(TARGET_TAG) == "cluster":
                return cluster
    return None


def read_cluster_parameters(rds, group: str) -> dict[str, str]:
    values = {}
    for page in rds.get_paginator("describe_db_cluster_parameters").paginate(DBClusterParameterGroupName=group, Source="user"):
        values.update({p["ParameterName"]: p.get("ParameterValue", "") for p in page["Parameters"]})
    return values


def read_parameters(rds, group: str) -> dict[str, str]:
    values = {}
    for page in rds.get_paginator("describe_db_parameters").paginate(DBParameterGroupName=group, Source="user"):
        values.update({p["ParameterName"]: p.get("ParameterValue", "") for p in page["Parameters"]})
    return values


def read_load_balancers(elbv2) -> dict[str, dict[str, str]]:
    """{target: dimensions} of the tagged load balancers (`api-lb`) and target groups (`ui-tg`)."""
    lbs = [lb["LoadBalancerArn"] for page in elbv2.get_paginator("describe_load_balancers").paginate()
           for lb in page["LoadBalancers"]]
    groups = [(g["TargetGroupArn"], g.get("LoadBalancerArns", []))
              for page in elbv2.get_paginator("describe_target_groups").paginate() for g in page["TargetGroups"]]
    tags = {}
    arns = [*lbs, *(arn for arn, _ in groups)]
    for i in range(0, len(arns), ELB_TAGS_MAX):
        for d in elbv2.describe_tags(ResourceArns=arns[i:i + ELB_TAGS_MAX])["TagDescriptions"]:
            tags[d["ResourceArn"]] = tag_map(d.get("Tags"))
    return {"lbs": {arn: tags.get(arn, {}) for arn in lbs},
            "groups": {arn: (tags.get(arn, {}), lb_arns) for arn, lb_arns in groups}}


def load_balancer_dimensions(found: Mapping, environment: str) -> dict[str, dict[str, str]]:
    dims = {}
    for arn, tags in found["lbs"].items():
        if tags.get(ENVIRONMENT_TAG) == environment and tags.get(TARGET_TAG):
            dims[tags[TARGET_TAG]] = {"LoadBalancer": arn_suffix(arn, ":loadbalancer/")}
    for arn, (tags, lb_arns) in found["groups"].items():
        if tags.get(ENVIRONMENT_TAG) == environment and tags.get(TARGET_TAG):
            group = {"TargetGroup": arn.rsplit(":", 1)[1]}
            if lb_arns:
                group["LoadBalancer"] = arn_suffix(lb_arns[0], ":loadbalancer/")
            dims[tags[TARGET_TAG]] = group
    return dims


def read_ecs_services(ecs, environment: str) -> dict[str, dict]:
    clusters = [arn for page in ecs.get_paginator("list_clusters").paginate() for arn in page["clusterArns"]]
    ours = []
    for i in range(0, len(clusters), 100):
        for c in ecs.describe_clusters(clusters=clusters[i:i + 100], include=["TAGS"])["clusters"]:
            if tag_map(c.get("tags")).get(ENVIRONMENT_TAG) == environment:
                ours.append(c["clusterArn"])
    found = {}
    for cluster in ours:
        arns = [arn for page in ecs.get_paginator("list_services").paginate(cluster=cluster) for arn in page["serviceArns"]]
        for i in range(0, len(arns), ECS_DESCRIBE_MAX):
            for s in ecs.describe_services(cluster=cluster, services=arns[i:i + ECS_DESCRIBE_MAX], include=["TAGS"])["services"]:
                target = tag_map(s.get("tags")).get(TARGET_TAG)
                if target:
                    found[target] = {**s, "clusterName": cluster.rsplit("/", 1)[1]}
    return found


def read_autoscaling_groups(autoscaling, environment: str) -> dict[str, dict]:
    found = {}
    pages = autoscaling.get_paginator("describe_auto_scaling_groups").paginate(
        Filters=[{"Name": f"tag:{ENVIRONMENT_TAG}", "Values": [environment]}])
    for page in pages:
        for g in page["AutoScalingGroups"]:
            target = tag_map(g.get("Tags")).get(TARGET_TAG)
            if target:
                found[target] = g
    return found


def service_dimensions(services: Mapping[str, dict]) -> dict[str, dict[str, str]]:
    return {target: ({"ClusterName": s["clusterName"], "ServiceName": s["serviceName"]} if "serviceName" in s
                     else {"AutoScalingGroupName": s["AutoScalingGroupName"]}) for target, s in services.items()}


def metric_queries(alarms: Sequence[AlarmPlan], dimensions: Mapping[str, Mapping[str, str]], primary: str | None,
                   window_s: int) -> list[dict]:
    """One query per planned alarm whose target was found, and the primary's I/O (against gp3's provisioned figures)."""
    period = max(WINDOW_PERIOD_S, window_s // 1440 // 60 * 60)  # at most 1,440 points a query
    queries = []
    for i, alarm in enumerate(alarms):
        if alarm.target in dimensions:
            queries.append({"Id": f"a{i}", "Label": alarm.key, "MetricStat": {
                "Metric": {"Namespace": alarm.namespace, "MetricName": alarm.metric,
                           "Dimensions": [{"Name": k, "Value": v} for k, v in sorted(dimensions[alarm.target].items())]},
                "Period": period, "Stat": alarm.statistic or alarm.extended_statistic}})
    if primary:
        for j, metric in enumerate(("ReadIOPS", "WriteIOPS", "ReadThroughput", "WriteThroughput")):
            queries.append({"Id": f"io{j}", "Label": metric, "MetricStat": {
                "Metric": {"Namespace": "AWS/RDS", "MetricName": metric,
                           "Dimensions": [{"Name": "DBInstanceIdentifier", "Value": primary}]},
                "Period": period, "Stat": "Average"}})
    return queries


def read_metrics(cloudwatch, queries: Sequence[dict], end: dt.datetime, window_s: int) -> dict[str, list[tuple[dt.datetime, float]]]:
    """{label: [(timestamp, value)]}, every page of get_metric_data (at most 500 queries a call)."""
    series: dict[str, list] = {}
    for i in range(0, len(queries), 500):
        pages = cloudwatch.get_paginator("get_metric_data").paginate(
            MetricDataQueries=list(queries[i:i + 500]), StartTime=end - dt.timedelta(seconds=window_s), EndTime=end)
        for page in pages:
            for result in page["MetricDataResults"]:
                series.setdefault(result["Label"], []).extend(zip(result["Timestamps"], result["Values"]))
    return series


# ---------------------------------------------------------------------------------------------
# findings

def alarm_bottleneck(key: str) -> str:
    return next(b for prefix, b in ALARM_BOTTLENECK if key.startswith(prefix))


def alarm_remedy(alarm: AlarmPlan, env: str) -> str:
    bottleneck = alarm_bottleneck(alarm.key)
    if alarm.key == "db-storage":
        return REMEDIES["storage"].format(env=env)
    role = "ui" if alarm.target.startswith("ui") else "api"
    return REMEDIES[bottleneck].format(env=env, role=role)


def alarm_findings(alarms: Sequence[AlarmPlan], series: Mapping[str, Sequence[tuple]], window_hours: float,
                   env: str) -> list[Finding]:
    """A planned alarm's condition held in at least BREACH_MIN_PERIODS periods of the window."""
    findings = []
    for alarm in alarms:
        values = [v for _, v in series.get(alarm.key, ())]
        greater = alarm.comparison == GREATER
        breaching = [v for v in values if (v > alarm.threshold if greater else v < alarm.threshold)]
        if len(breaching) < BREACH_MIN_PERIODS:
            continue
        worst = max(breaching) if greater else min(breaching)
        stat = alarm.statistic or alarm.extended_statistic
        severity = "high" if len(breaching) >= BREACH_HIGH_SHARE * len(values) else "medium"
        findings.append(Finding(
            alarm_bottleneck(alarm.key), severity,
            f"{alarm.target}: {alarm.metric} ({stat}) {'above' if greater else 'below'} {alarm.threshold:g} in"
            f" {len(breaching)} of {len(values)} periods of the last {window_hours:g} h, worst {worst:,.4g}"
            f" (alarm {alarm.key}: {alarm.reason})", alarm_remedy(alarm, env), "cloudwatch"))
    return findings


def storage_findings(series: Mapping[str, Sequence[tuple]], iops: int, throughput_mibps: int, env: str) -> list[Finding]:
    """Read + write IOPS or throughput near the gp3 volume's provisioned figures."""
    def summed(a: str, b: str) -> list[float]:
        by_time: dict = {}
        for name in (a, b):
            for t, v in series.get(name, ()):
                by_time[t] = by_time.get(t, 0.0) + v
        return list(by_time.values())

    findings = []
    for (a, b), limit, unit, scale in ((("ReadIOPS", "WriteIOPS"), iops, "IOPS", 1),
                                       (("ReadThroughput", "WriteThroughput"), throughput_mibps, "MiB/s", MIB)):
        used = [v / scale for v in summed(a, b)]
        over = [v for v in used if v > limit * STORAGE_USE_SHARE]
        if limit and len(over) >= BREACH_MIN_PERIODS:
            findings.append(Finding("instance", "high" if len(over) >= BREACH_HIGH_SHARE * len(used) else "medium",
                                    f"primary: read + write {unit} above {STORAGE_USE_SHARE:.0%} of the provisioned"
                                    f" {limit:,} in {len(over)} of {len(used)} periods, worst {max(over):,.0f}",
                                    "raise the workload figures (the plan provisions gp3 IOPS and throughput from them),"
                                    f" or check the top statements for sequential scans; stacks/{env}.yaml, pulumi up",
                                    "cloudwatch"))
    return findings


def database_findings(databases: Mapping[str, dict], capacity: CapacityPlan) -> list[Finding]:
    """What RDS describes against the plan: classes, replicas, storage, placement, what waits."""
    env, db = capacity.environment, capacity.database
    drift = REMEDIES["drift"].format(env=env)
    findings = []
    planned_nodes = ["primary", *(f"replica-{i}" for i in range(db.replicas.count))]
    for node in planned_nodes:
        found = databases.get(node)
        if found is None:
            if node != "primary":
                findings.append(Finding("replicas", "high", f"{node}: no RDS instance tagged {TARGET_TAG}={node} in"
                                        f" {capacity.region}; the plan has {db.replicas.count} replica(s)", drift, "rds"))
            continue
        name = found["DBInstanceIdentifier"]
        if found.get("DBInstanceClass") != db.instance.instance_class:
            findings.append(Finding("instance", "high", f"{node} {name} runs {found.get('DBInstanceClass')}; the plan sizes"
                                    f" {db.instance.instance_class}", drift, "rds"))
        if found.get("DBInstanceStatus") == "storage-full":
            findings.append(Finding("instance", "high", f"{node} {name} is storage-full: writes fail",
                                    REMEDIES["storage"].format(env=env), "rds"))
        waiting = [g["DBParameterGroupName"] for g in found.get("DBParameterGroups", [])
                   if g.get("ParameterApplyStatus") == "pending-reboot"]
        if waiting:
            findings.append(Finding("parameters", "medium", f"{node} {name}: parameter group {', '.join(waiting)} is"
                                    " pending-reboot: static parameters have not taken effect",
                                    REMEDIES["apply-pending"].format(env=env), "rds"))
        pending = sorted(found.get("PendingModifiedValues") or {})
        if pending:
            findings.append(Finding("instance", "low", f"{node} {name}: {', '.join(pending)} pending until the maintenance"
                                    f" window {found.get('PreferredMaintenanceWindow', '?')} (apply_immediately is off)",
                                    "nothing, or apply now: aws rds modify-db-instance --apply-immediately with the same values",
                                    "rds"))
    primary = databases.get("primary")
    if primary is not None:
        # the plan's zone (single-AZ) or, with Multi-AZ (RDS picks the zone), any zone of the training compute
        placement = capacity.placement
        zone = primary.get("AvailabilityZone")
        expected = (placement.primary_zone,) if placement.primary_zone else placement.training_availability_zones
        if expected and zone and zone not in expected:
            failover = ("a Multi-AZ failover moves it back: aws rds reboot-db-instance --force-failover"
                        f" --db-instance-identifier {primary['DBInstanceIdentifier']}") if primary.get("MultiAZ") else drift
            findings.append(Finding("network", "medium", f"primary {primary['DBInstanceIdentifier']} runs in {zone}; the"
                                    f" training compute runs in {', '.join(expected)}: every logging call crosses zones",
                                    failover, "rds"))
        if db.engine.engine == "rds" and db.storage.iops_provisioned and (primary.get("Iops") or 0) < db.storage.iops:
            findings.append(Finding("instance", "medium", f"primary {primary['DBInstanceIdentifier']} has {primary.get('Iops')}"
                                    f" IOPS; the plan provisions {db.storage.iops:,}", drift, "rds"))
    return findings


def parameter_group_findings(values: Mapping[str, str], planned: Iterable, group: str, node: str, env: str) -> list[Finding]:
    """The plan's parameters (`Parameter`s) against the group's user-set values."""
    findings = []
    for p in planned:
        actual = values.get(p.name)
        if actual is None or normalise(actual) != normalise(p.value):
            shown = "not set" if actual is None else f"{actual}"
            findings.append(Finding("parameters", "medium", f"{node}: {p.name} is {shown} in parameter group {group};"
                                    f" the plan sets {p.value}{f' ({p.unit})' if p.unit else ''}",
                                    REMEDIES["drift"].format(env=env), "rds"))
    return findings


def service_findings(services: Mapping[str, dict], capacity: CapacityPlan) -> list[Finding]:
    """Every planned service exists, runs what it wants, and is not pinned at its autoscaling ceiling."""
    env, findings = capacity.environment, []
    ecs = capacity.tracking.compute == "ecs"
    kind, units, source = ("ECS service", "tasks", "ecs") if ecs else ("Auto Scaling group", "instances", "autoscaling")
    events = "aws ecs describe-services: the stopped tasks' reasons" if ecs else "aws autoscaling describe-scaling-activities"
    for tier in capacity.tracking.tiers:
        remedy = REMEDIES["server"].format(env=env, role=tier.role)
        for service in tier.service_names:
            target = f"{service}-fleet"
            found = services.get(target)
            if found is None:
                findings.append(Finding("server", "high", f"{service}: no {kind} tagged {TARGET_TAG}={target}",
                                        REMEDIES["drift"].format(env=env), source))
                continue
            if "serviceName" in found:
                name, running, desired = found["serviceName"], found.get("runningCount", 0), found.get("desiredCount", 0)
            else:
                name = found["AutoScalingGroupName"]
                running = sum(1 for i in found.get("Instances", []) if i.get("LifecycleState") == "InService")
                desired = found.get("DesiredCapacity", 0)
            if running < desired:
                findings.append(Finding("server", "high", f"{service} {name}: {running} of {desired} {units} running",
                                        f"look at the {kind}'s events ({events})", source))
            if desired >= tier.service_max_count:
                findings.append(Finding("server", "medium", f"{service} {name}: {desired} {units} wanted, the autoscaling"
                                        f" maximum {tier.service_max_count}: it cannot add servers", remedy, source))
    return findings
