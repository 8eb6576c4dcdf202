"""The policy rules: plain functions over resource inputs, shared by the CrossGuard pack
(policies/__main__.py) and the offline checker (`mlflow-infra policy check`).

A resource rule sees one resource (`Res`); a stack rule sees them all. Each returns the messages of
its violations; an empty list is compliant. No Pulumi imports here: the pack adapts its arguments.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from ..endpoints import DATABASE_PORT as DB_PORT, TRACKING_PORT
from ..spec.checks import burstable_class, synchronous_commit_off_allowed
from ..planning.server_command import MIN_NOFILE

RDS_INSTANCE = "aws:rds/instance:Instance"
PARAMETER_GROUP = "aws:rds/parameterGroup:ParameterGroup"
RDS_PROXY = "aws:rds/proxy:Proxy"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
ECS_SERVICE = "aws:ecs/service:Service"
SCALING_TARGET = "aws:appautoscaling/target:Target"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
ASG = "aws:autoscaling/group:Group"
LOAD_BALANCER = "aws:lb/loadBalancer:LoadBalancer"
LISTENER = "aws:lb/listener:Listener"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SUBNET = "aws:ec2/subnet:Subnet"
SUBNET_GROUP = "aws:rds/subnetGroup:SubnetGroup"
BUCKET = "aws:s3/bucket:Bucket"
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BUCKET_ENCRYPTION = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
BUCKET_VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"

SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|ACCESS_KEY|PRIVATE_KEY)", re.I)
URI_WITH_PASSWORD = re.compile(r"[a-z+]+://[^/\s:@]+:[^@\s]+@")


@dataclass(frozen=True)
class Res:
    """A resource as policies see it: its type, logical name and input properties."""

    type: str
    name: str
    props: dict[str, Any]
    urn: str = ""

    def get(self, key: str, default: Any = None) -> Any:
        return self.props.get(key, default)


@dataclass(frozen=True)
class PolicyConfig:
    """Thresholds and facts about the environment (policies/config/<env>.json, from the plan)."""

    environment: str = ""
    production: bool = False
    durability: str = "strict"
    min_backup_retention_days: int = 1
    min_backup_retention_days_production: int = 7
    min_nofile: int = MIN_NOFILE
    connection_reserve: int = 15
    fleet_connections: int = 0     # the plan's: every pool on the primary at maximum autoscale
    training_availability_zones: tuple[str, ...] = ()
    training_subnet_ids: tuple[str, ...] = ()
    required_tags: tuple[str, ...] = ("environment", "owner")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PolicyConfig":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("training_availability_zones", "training_subnet_ids", "required_tags"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)


# JSON schema of the config above: what `pulumi preview --policy-pack-config` may set.
CONFIG_SCHEMA: dict[str, dict[str, Any]] = {
    "environment": {"type": "string"},
    "production": {"type": "boolean", "description": "production-only rules apply"},
    "durability": {"type": "string", "enum": ["strict", "relaxed"]},
    "min_backup_retention_days": {"type": "integer", "minimum": 1, "maximum": 35},
    "min_backup_retention_days_production": {"type": "integer", "minimum": 1, "maximum": 35},
    "min_nofile": {"type": "integer", "minimum": 1024},
    "connection_reserve": {"type": "integer", "minimum": 0},
    "fleet_connections": {"type": "integer", "minimum": 0},
    "training_availability_zones": {"type": "array", "items": {"type": "string"}},
    "training_subnet_ids": {"type": "array", "items": {"type": "string"}},
    "required_tags": {"type": "array", "items": {"type": "string"}},
}


@dataclass(frozen=True)
class Rule:
    name: str
    family: str
    description: str
    reason: str
    remediation: str              # what to change in the environment file
    check: Callable[..., list[str]]
    resource_types: tuple[str, ...] = ()   # empty: a stack rule over all resources
    mandatory: bool = True
    production_only: bool = False

    @property
    def stack(self) -> bool:
        return not self.resource_types

    @property
    def level(self) -> str:
        return "mandatory" if self.mandatory else "advisory"


RULES: list[Rule] = []


def rule(name: str, family: str, description: str, reason: str, remediation: str, types: Iterable[str] = (),
         mandatory: bool = True, production_only: bool = False):
    def register(fn):
        RULES.append(Rule(name, family, description, reason, remediation, fn, tuple(types), mandatory, production_only))
        return fn
    return register


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def is_replica(r: Res) -> bool:
    return bool(r.get("replicateSourceDb"))


def truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "on", "true", "yes")


def parameters(group: Res) -> dict[str, str]:
    return {p.get("name"): str(p.get("value")) for p in group.get("parameters") or []}


def containers(task: Res) -> list[dict]:
    raw = task.get("containerDefinitions")
    if not raw:
        return []
    return json.loads(raw) if isinstance(raw, str) else list(raw)


def is_tracking_container(c: dict) -> bool:
    command = c.get("command") or []
    return "mlflow" in command and "server" in command


def user_data_text(template: Res) -> str:
    raw = template.get("userData") or ""
    try:
        return base64.b64decode(raw).decode()
    except (ValueError, UnicodeDecodeError):
        return raw


def of_type(resources: list[Res], typ: str) -> list[Res]:
    return [r for r in resources if r.type == typ]


def parameter_groups(resources: list[Res]) -> dict[str, Res]:
    """Parameter groups by the name instances refer to them with (physical name, else logical)."""
    groups = {g.get("name", g.name): g for g in of_type(resources, PARAMETER_GROUP)}
    groups.update({g.name: g for g in of_type(resources, PARAMETER_GROUP)})
    return groups


# ---------------------------------------------------------------------------------------------
# RDS
# ---------------------------------------------------------------------------------------------

@rule("rds-storage-encrypted", "rds", "RDS storage is encrypted", "snapshots and volumes of run data must not be readable at rest",
      "nothing to set: MlflowTracking encrypts with its own KMS key; do not override storage_encrypted", [RDS_INSTANCE])
def rds_storage_encrypted(r: Res, c: PolicyConfig) -> list[str]:
    return [] if r.get("storageEncrypted") is True else ["storage_encrypted is not true"]


@rule("rds-not-public", "rds", "RDS instances are not publicly accessible", "the tracking database is reached from the servers only",
      "nothing to set: the component keeps the database private", [RDS_INSTANCE])
def rds_not_public(r: Res, c: PolicyConfig) -> list[str]:
    return ["publicly_accessible is true"] if r.get("publiclyAccessible") is True else []


@rule("rds-backup-retention", "rds", "backups kept at least 7 days in production and 1 elsewhere",
      "point-in-time recovery after a bad migration or a deleted experiment",
      "database.backup_retention_days: 7 or more (production)", [RDS_INSTANCE])
def rds_backup_retention(r: Res, c: PolicyConfig) -> list[str]:
    if is_replica(r):
        return []  # replicas restore from the primary's backups
    need = c.min_backup_retention_days_production if c.production else c.min_backup_retention_days
    days = int(r.get("backupRetentionPeriod") or 0)
    return [] if days >= need else [f"backup_retention_period {days} < {need} days"]


@rule("rds-deletion-protection", "rds", "production databases have deletion protection",
      "a stray destroy must not drop the tracking database", "database.deletion_protection: true", [RDS_INSTANCE],
      production_only=True)
def rds_deletion_protection(r: Res, c: PolicyConfig) -> list[str]:
    return [] if r.get("deletionProtection") is True else ["deletion_protection is not true"]


@rule("rds-multi-az", "rds", "the production primary is Multi-AZ", "a zone outage must not stop all logging",
      "database.multi_az: true", [RDS_INSTANCE], production_only=True)
def rds_multi_az(r: Res, c: PolicyConfig) -> list[str]:
    if is_replica(r):
        return []
    return [] if r.get("multiAz") is True else ["multi_az is not true"]


@rule("rds-performance-insights", "rds", "Performance Insights is on", "shows what the database waits on when logging slows",
      "nothing to set: the component enables it (retention: database.performance_insights_retention_days)", [RDS_INSTANCE])
def rds_performance_insights(r: Res, c: PolicyConfig) -> list[str]:
    return [] if r.get("performanceInsightsEnabled") is True else ["performance_insights_enabled is not true"]


@rule("rds-enhanced-monitoring", "rds", "enhanced monitoring is on", "OS-level CPU, memory and I/O per process",
      "database.monitoring_interval_seconds: 1-60", [RDS_INSTANCE])
def rds_enhanced_monitoring(r: Res, c: PolicyConfig) -> list[str]:
    interval = int(r.get("monitoringInterval") or 0)
    return [] if interval > 0 and r.get("monitoringRoleArn") else [f"monitoring_interval {interval} (off) or no monitoring role"]


@rule("rds-storage-type", "rds", "no gp2 or magnetic storage", "gp2 ties IOPS to size and magnetic cannot carry a logging load",
      "nothing to set: the plan sizes gp3 IOPS and throughput", [RDS_INSTANCE])
def rds_storage_type(r: Res, c: PolicyConfig) -> list[str]:
    kind = r.get("storageType")
    if kind is None and is_replica(r):
        return []
    return [] if kind in ("gp3", "io1", "io2") else [f"storage_type {kind!r}"]


@rule("rds-custom-parameter-group", "rds", "a non-default parameter group is attached", "default groups are untuned (README bottleneck 3)",
      "nothing to set: the plan's parameter groups are attached", [RDS_INSTANCE])
def rds_custom_parameter_group(r: Res, c: PolicyConfig) -> list[str]:
    name = r.get("parameterGroupName")
    return [] if name and not str(name).startswith("default.") else [f"parameter_group_name {name!r}"]


@rule("rds-no-burstable-production", "rds", "no burstable class in production", "burst credits run out under sustained logging",
      "database.instance_class: a db.m* or db.r* class, or unset to let the plan choose", [RDS_INSTANCE], production_only=True)
def rds_no_burstable_production(r: Res, c: PolicyConfig) -> list[str]:
    cls = str(r.get("instanceClass") or "")
    return [f"instance_class {cls}"] if burstable_class(cls) else []


# ---------------------------------------------------------------------------------------------
# Parameter groups
# ---------------------------------------------------------------------------------------------

@rule("pg-stat-statements", "parameter-groups", "pg_stat_statements is preloaded", "slow-query analysis reads it",
      "nothing to set: the plan preloads it", [PARAMETER_GROUP])
def pg_stat_statements(r: Res, c: PolicyConfig) -> list[str]:
    libraries = parameters(r).get("shared_preload_libraries", "")
    return [] if "pg_stat_statements" in [x.strip() for x in libraries.split(",")] else ["shared_preload_libraries lacks pg_stat_statements"]


@rule("pg-never-unsafe", "parameter-groups", "fsync and full_page_writes are never off", "either off can corrupt the database on a crash",
      "remove any fsync/full_page_writes override", [PARAMETER_GROUP])
def pg_never_unsafe(r: Res, c: PolicyConfig) -> list[str]:
    params = parameters(r)
    return [f"{name} is off" for name in ("fsync", "full_page_writes") if name in params and not truthy(params[name])]


@rule("pg-synchronous-commit", "parameter-groups", "synchronous_commit off only with relaxed durability, never in production",
      "with it off an acknowledged log call can be lost on a crash", "database.durability: strict", [PARAMETER_GROUP])
def pg_synchronous_commit(r: Res, c: PolicyConfig) -> list[str]:
    value = parameters(r).get("synchronous_commit")
    if value is None or value in ("on", "remote_write", "remote_apply", "local", "1"):
        return []
    if synchronous_commit_off_allowed(c.production, c.durability):
        return []
    return [f"synchronous_commit {value} in production" if c.production else f"synchronous_commit {value} with durability {c.durability}"]


@rule("pg-force-ssl", "parameter-groups", "rds.force_ssl = 1", "credentials and run data never cross the network in clear text",
      "nothing to set: the plan forces TLS", [PARAMETER_GROUP])
def pg_force_ssl(r: Res, c: PolicyConfig) -> list[str]:
    return [] if parameters(r).get("rds.force_ssl") == "1" else ["rds.force_ssl is not 1"]


@rule("pg-replica-hot-standby-feedback", "parameter-groups", "replicas have hot_standby_feedback",
      "UI searches on a replica are not cancelled by vacuum on the primary", "nothing to set: the replica group sets it")
def pg_replica_hot_standby_feedback(resources: list[Res], c: PolicyConfig) -> list[tuple[Res, str]]:
    groups = parameter_groups(resources)
    found = []
    for replica in filter(is_replica, of_type(resources, RDS_INSTANCE)):
        group = groups.get(replica.get("parameterGroupName"))
        if group is None or not truthy(parameters(group).get("hot_standby_feedback", "0")):
            found.append((replica, f"parameter group {replica.get('parameterGroupName')!r} lacks hot_standby_feedback=1"))
    return found


# ---------------------------------------------------------------------------------------------
# Connection budget (stack)
# ---------------------------------------------------------------------------------------------

@rule("connection-budget", "connection-budget", "at maximum autoscale the fleets' pools fit in max_connections minus the reserve",
      "an exhausted max_connections refuses connections to every server (README: 'Connection refused')",
      "lower tracking.*.max_count or workers, choose a larger database.instance_class, or database.rds_proxy: auto")
def connection_budget(resources: list[Res], c: PolicyConfig) -> list[tuple[Res, str]]:
    """The plan's budget (fleet connections at maximum autoscale, from the policy config) against the
    max_connections the primary's parameter group really sets."""
    if of_type(resources, RDS_PROXY):
        return []  # the proxy multiplexes the pools
    primary = next((r for r in of_type(resources, RDS_INSTANCE) if not is_replica(r)), None)
    if primary is None:
        return []
    groups = parameter_groups(resources)
    group = groups.get(primary.get("parameterGroupName"))
    max_connections = int(parameters(group).get("max_connections", 0)) if group else 0
    if not max_connections:
        return [(primary, "no max_connections in the primary's parameter group to budget against")]
    if c.fleet_connections + c.connection_reserve > max_connections:
        return [(primary, f"fleets open {c.fleet_connections} connections at maximum autoscale + reserve {c.connection_reserve}"
                          f" > max_connections {max_connections}")]
    return []


# ---------------------------------------------------------------------------------------------
# ECS and EC2
# ---------------------------------------------------------------------------------------------

@rule("open-files-limit", "ecs-ec2", "tracking servers run with at least 65,536 open files",
      "\"Too many open files\" under many concurrent clients (README bottleneck table)",
      "nothing to set: the plan sets nofile from the fleet's sockets", [TASK_DEFINITION, LAUNCH_TEMPLATE])
def open_files_limit(r: Res, c: PolicyConfig) -> list[str]:
    if r.type == LAUNCH_TEMPLATE:
        limits = [int(x) for x in re.findall(r"^LimitNOFILE=(\d+)", user_data_text(r), re.M)]
        return [] if limits and min(limits) >= c.min_nofile else [f"LimitNOFILE {limits or 'unset'} < {c.min_nofile}"]
    found = []
    for container in containers(r):
        if not is_tracking_container(container):
            continue
        nofile = [u for u in container.get("ulimits") or [] if u.get("name") == "nofile"]
        if not nofile or min(int(nofile[0]["softLimit"]), int(nofile[0]["hardLimit"])) < c.min_nofile:
            found.append(f"container {container.get('name')}: nofile {nofile or 'unset'} < {c.min_nofile}")
    return found


@rule("no-plain-credentials", "ecs-ec2", "no credentials in plain environment variables or command lines",
      "task definitions and user data are readable by anyone with describe permissions",
      "nothing to set: credentials come from Secrets Manager (ECS secrets / the instance role)", [TASK_DEFINITION, LAUNCH_TEMPLATE])
def no_plain_credentials(r: Res, c: PolicyConfig) -> list[str]:
    found = []
    if r.type == LAUNCH_TEMPLATE:
        text = user_data_text(r)
        for key, value in re.findall(r"^(\w+)=(.*)$", text, re.M):
            if SECRET_NAME.search(key) and not key.endswith("_ARN"):
                found.append(f"user data sets {key}")
        if URI_WITH_PASSWORD.search(text):
            found.append("user data holds a URI with a password")
        return found
    for container in containers(r):
        for env in container.get("environment") or []:
            if SECRET_NAME.search(env.get("name", "")) and not env["name"].endswith("_ARN"):
                found.append(f"container {container.get('name')}: environment {env['name']}")
            if URI_WITH_PASSWORD.search(str(env.get("value", ""))):
                found.append(f"container {container.get('name')}: environment {env['name']} holds a URI with a password")
        if URI_WITH_PASSWORD.search(" ".join(map(str, container.get("command") or []))):
            found.append(f"container {container.get('name')}: command holds a URI with a password")
    return found


@rule("container-logging", "ecs-ec2", "every container sends its logs somewhere", "a crashed server must leave its reason",
      "nothing to set: the component configures awslogs", [TASK_DEFINITION])
def container_logging(r: Res, c: PolicyConfig) -> list[str]:
    return [f"container {x.get('name')}: no logConfiguration" for x in containers(r) if not x.get("logConfiguration")]


@rule("imdsv2", "ecs-ec2", "EC2 instances require IMDSv2", "blocks SSRF-style theft of the instance role's credentials",
      "nothing to set: the launch template requires tokens", [LAUNCH_TEMPLATE])
def imdsv2(r: Res, c: PolicyConfig) -> list[str]:
    return [] if (r.get("metadataOptions") or {}).get("httpTokens") == "required" else ["metadata_options.http_tokens is not required"]


@rule("ebs-encrypted", "ecs-ec2", "EC2 volumes are encrypted", "server disks hold logs and temporary artifacts",
      "nothing to set: the launch template encrypts its volumes", [LAUNCH_TEMPLATE])
def ebs_encrypted(r: Res, c: PolicyConfig) -> list[str]:
    mappings = r.get("blockDeviceMappings") or []
    bad = [m.get("deviceName") for m in mappings if not truthy((m.get("ebs") or {}).get("encrypted"))]
    return [f"unencrypted volume {d}" for d in bad] + ([] if mappings else ["no block device mapping (root volume unencrypted by default)"])


# ---------------------------------------------------------------------------------------------
# Load balancers
# ---------------------------------------------------------------------------------------------

@rule("lb-internet-facing", "load-balancers", "internet-facing only for the UI, and only with HTTPS and a redirect from HTTP",
      "training traffic stays in the VPC; people reach the UI over TLS only",
      "tracking.ui.internet_facing with tracking.ui.certificate_arn, or false")
def lb_internet_facing(resources: list[Res], c: PolicyConfig) -> list[tuple[Res, str]]:
    found = []
    listeners = of_type(resources, LISTENER)
    for lb in of_type(resources, LOAD_BALANCER):
        if lb.get("internal") is not False:
            continue
        if not lb.name.endswith("-ui"):
            found.append((lb, "an internet-facing load balancer that is not the UI's"))
            continue
        mine = [x for x in listeners if x.name.startswith(lb.name + "-")]
        https = [x for x in mine if x.get("protocol") == "HTTPS" and x.get("certificateArn")]
        plain = [x for x in mine if x.get("protocol") == "HTTP"]
        redirects = all((x.get("defaultActions") or [{}])[0].get("type") == "redirect" for x in plain)
        if not https or not redirects:
            found.append((lb, "internet-facing without an HTTPS listener, or with HTTP that does not redirect"))
    return found


@rule("lb-deletion-protection", "load-balancers", "production load balancers have deletion protection",
      "the tracking URI that every training job uses must not vanish", "nothing to set in production",
      [LOAD_BALANCER], production_only=True)
def lb_deletion_protection(r: Res, c: PolicyConfig) -> list[str]:
    return [] if r.get("enableDeletionProtection") is True else ["enable_deletion_protection is not true"]


@rule("lb-access-logs", "load-balancers", "load balancers write access logs", "who called the API, when, how slowly",
      "an access-log bucket is not provisioned yet: add one to the stack", [LOAD_BALANCER], mandatory=False)
def lb_access_logs(r: Res, c: PolicyConfig) -> list[str]:
    return [] if (r.get("accessLogs") or {}).get("enabled") is True else ["access_logs not enabled"]


# ---------------------------------------------------------------------------------------------
# Security groups
# ---------------------------------------------------------------------------------------------

def _covers(rule_: dict, port: int) -> bool:
    if str(rule_.get("protocol")) in ("-1", "all"):
        return True
    return int(rule_.get("fromPort", 0)) <= port <= int(rule_.get("toPort", 0))


@rule("sg-no-open-database-or-servers", "security-groups", "no ingress from 0.0.0.0/0 or ::/0 to 5432 or the tracking port",
      "the database and servers are reached through the load balancers and the client security group only",
      "nothing to set: only an internet-facing UI load balancer opens 80/443 to the world", [SECURITY_GROUP])
def sg_no_open(r: Res, c: PolicyConfig) -> list[str]:
    found = []
    for ingress in r.get("ingress") or []:
        world = set(ingress.get("cidrBlocks") or []) & {"0.0.0.0/0"} or set(ingress.get("ipv6CidrBlocks") or []) & {"::/0"}
        for port in (DB_PORT, TRACKING_PORT):
            if world and _covers(ingress, port):
                found.append(f"ingress from {sorted(world)[0]} covers port {port}")
    return found


# ---------------------------------------------------------------------------------------------
# S3 (stack: the settings are separate resources)
# ---------------------------------------------------------------------------------------------

def _bucket_settings(resources: list[Res], typ: str) -> dict[str, Res]:
    return {str(r.get("bucket")): r for r in of_type(resources, typ)}


@rule("s3-closed-encrypted-versioned", "s3", "buckets block public access, are encrypted and versioned",
      "artifacts are models and data: never public, recoverable after an overwrite",
      "nothing to set: the component configures the artifact bucket")
def s3_closed_encrypted_versioned(resources: list[Res], c: PolicyConfig) -> list[tuple[Res, str]]:
    blocks = _bucket_settings(resources, PUBLIC_ACCESS_BLOCK)
    encryption = _bucket_settings(resources, BUCKET_ENCRYPTION)
    versioning = _bucket_settings(resources, BUCKET_VERSIONING)
    found = []
    for bucket in of_type(resources, BUCKET):
        keys = {bucket.get("id", ""), bucket.get("bucket", ""), f"{bucket.name}-id"} - {""}
        # during a preview the bucket id is unknown: settings named after the same component match
        prefix = bucket.name.removesuffix("-bucket") + "-"

        def setting(by_bucket: dict[str, Res], typ: str) -> Res | None:
            return next((by_bucket[k] for k in keys if k in by_bucket), None) or next(
                (r for r in of_type(resources, typ) if r.name.startswith(prefix) and str(r.get("bucket", "")) not in by_bucket.keys() - keys), None)

        block = setting(blocks, PUBLIC_ACCESS_BLOCK)
        if block is None or not all(block.get(x) is True for x in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")):
            found.append((bucket, "public access not fully blocked"))
        if setting(encryption, BUCKET_ENCRYPTION) is None:
            found.append((bucket, "no server-side encryption configuration"))
        v = setting(versioning, BUCKET_VERSIONING)
        if v is None or (v.get("versioningConfiguration") or {}).get("status") != "Enabled":
            found.append((bucket, "versioning not enabled"))
    return found


# ---------------------------------------------------------------------------------------------
# Placement (stack)
# ---------------------------------------------------------------------------------------------

@rule("placement-training-zones", "placement", "API servers and the database primary sit in the training zones",
      "every log call crossing zones or VPCs adds latency (README bottleneck 6)",
      "placement.training_vpc with the training subnets, or placement.new_vpc.availability_zones = the training zones")
def placement_training_zones(resources: list[Res], c: PolicyConfig) -> list[tuple[Res, str]]:
    if not c.training_availability_zones and not c.training_subnet_ids:
        return []
    zone_of = {f"{s.name}-id": s.get("availabilityZone") for s in of_type(resources, SUBNET)}
    zone_of.update({sid: None for sid in c.training_subnet_ids})
    allowed = set(c.training_availability_zones)

    def outside(subnets: list[str]) -> list[str]:
        bad = []
        for sid in subnets:
            if sid in c.training_subnet_ids:
                continue
            if sid in zone_of:
                if zone_of[sid] not in allowed:
                    bad.append(f"{sid} ({zone_of[sid]})")
            elif str(sid).startswith("subnet-"):
                bad.append(f"{sid} (not a training subnet)")  # an existing subnet the stack did not create
            # anything else is unknown until apply (a subnet created in this update): judged by its zone above
        return bad

    found = []
    for service in of_type(resources, ECS_SERVICE):
        if service.name.endswith("-api"):
            bad = outside((service.get("networkConfiguration") or {}).get("subnets") or [])
            if bad:
                found.append((service, f"API tasks in subnets outside the training zones: {', '.join(bad)}"))
    for group in of_type(resources, ASG):
        if group.name.endswith("-api"):
            bad = outside(group.get("vpcZoneIdentifiers") or [])
            if bad:
                found.append((group, f"API instances in subnets outside the training zones: {', '.join(bad)}"))
    for subnet_group in of_type(resources, SUBNET_GROUP):
        bad = outside(subnet_group.get("subnetIds") or [])
        if bad:
            found.append((subnet_group, f"database subnets outside the training zones: {', '.join(bad)}"))
    for primary in (r for r in of_type(resources, RDS_INSTANCE) if not is_replica(r)):
        zone = primary.get("availabilityZone")
        if zone and allowed and zone not in allowed:
            found.append((primary, f"primary in {zone}, not a training zone"))
    return found


@rule("replicas-for-ui-reads", "placement", "replicas exist when the UI reads from replicas",
      "a UI pointed at a missing replica fails every page", "database.read_replicas: 1 or more")
def replicas_for_ui_reads(resources: list[Res], c: PolicyConfig) -> list[tuple[Res, str]]:
    replicas = [r for r in of_type(resources, RDS_INSTANCE) if is_replica(r)]
    found = []
    for task in of_type(resources, TASK_DEFINITION):
        for container in containers(task):
            names = {e.get("name") for e in container.get("environment") or []}
            if "DB_REPLICA_HOST" in names and not replicas:
                found.append((task, "reads from a replica but the stack has none"))
    return found


# ---------------------------------------------------------------------------------------------
# Tags
# ---------------------------------------------------------------------------------------------

_TAGGABLE: dict[str, bool] = {}


def taggable(resource_type: str) -> bool:
    """Whether pulumi-aws gives this resource type a `tags` input (looked up once per type)."""
    if resource_type not in _TAGGABLE:
        _TAGGABLE[resource_type] = _has_tags_input(resource_type)
    return _TAGGABLE[resource_type]


def _has_tags_input(resource_type: str) -> bool:
    match = re.match(r"^aws:([\w]+)/(\w+):(\w+)$", resource_type)
    if not match:
        return False
    import importlib

    try:
        module = importlib.import_module(f"pulumi_aws.{match.group(1)}")
        cls = getattr(module, match.group(3))
    except (ImportError, AttributeError):
        return False
    return "tags" in getattr(cls, "_internal_init").__code__.co_varnames


@rule("tags-environment-owner", "tags", "every taggable resource carries environment and owner tags",
      "cost reports and incident owners are found by tag", "tags.owner (environment is set from the file name)")
def tags_environment_owner(resources: list[Res], c: PolicyConfig) -> list[tuple[Res, str]]:
    found = []
    for r in resources:
        if not r.type.startswith("aws:") or not taggable(r.type):
            continue
        tags = r.get("tags") or {}
        if isinstance(tags, list):  # autoscaling groups take [{key, value, propagate_at_launch}]
            tags = {t.get("key"): t.get("value") for t in tags}
        missing = [t for t in c.required_tags if not tags.get(t)]
        if missing:
            found.append((r, f"missing tags: {', '.join(missing)}"))
    return found


# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Violation:
    rule: Rule
    resource: str
    message: str


def evaluate(resources: list[Res], config: PolicyConfig, rules: list[Rule] | None = None) -> list[Violation]:
    """Run every rule (production-only ones only in production) over the stack's resources."""
    found: list[Violation] = []
    for r_ in rules or RULES:
        if r_.production_only and not config.production:
            continue
        if r_.stack:
            found += [Violation(r_, res.name, msg) for res, msg in r_.check(resources, config)]
        else:
            for res in resources:
                if res.type in r_.resource_types:
                    found += [Violation(r_, res.name, msg) for msg in r_.check(res, config)]
    return found
