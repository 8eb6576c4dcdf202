"""The policy rules: plain functions over resource inputs, shared by the CrossGuard pack
(policies/__main__.py) and the offline checker (`mlflow-infra policy check`).

A resource rule sees one resource (`Res`); a stack rule sees them all. Each returns the messages of
its violations; an empty list is compliant. No Pulumi imports here: the pack adapts its arguments.

Unknown values
--------------
During `pulumi preview` an input computed from an output of a resource not created yet (an id, an
ARN, a parameter group's name, user data or container definitions built from outputs) has no value.
The adapters (pack.py for CrossGuard, check.py for `pulumi preview --json` documents) put the
`UNKNOWN` marker there, and no rule is ever skipped because of one. `Rule.on_unknown` says how a rule
treats it:

* ``fail-closed`` (the default): the rule reads inputs with `Res.get`, which raises `UnknownInput`
  on an input that is, or holds, `UNKNOWN`; the rule then reports one violation naming that input
  ("cannot be verified during preview: containerDefinitions is unknown until apply"). Such a rule
  never sees `UNKNOWN`. Its plain inputs are known in a preview, so there it is checked as usual.
* ``check-known``: the rule may read inputs with `Res.partial`, which keeps `UNKNOWN` markers
  in place, judges what is known and works around the rest in a documented way (a property
  dependency, a logical-name convention, the fact that a violation needs a value that is known). What
  it still cannot decide it reports itself, in the same words, so it too fails closed.

`Res.is_set(key)` (an input is given, known or not) is known in a preview and allowed in both.

=================================  ============  ==================================================================
rule                               on_unknown    inputs and what an unknown one does (first preview of the shipped stacks)
=================================  ============  ==================================================================
rds-storage-encrypted              fail-closed   storageEncrypted (plain: checked)
rds-not-public                     fail-closed   publiclyAccessible (plain: checked)
rds-backup-retention               fail-closed   backupRetentionPeriod (plain: checked); replicateSourceDb is_set only
rds-deletion-protection            fail-closed   deletionProtection (plain: checked)
rds-multi-az                       fail-closed   multiAz (plain: checked); replicateSourceDb is_set only
rds-performance-insights           fail-closed   performanceInsightsEnabled (plain: checked)
rds-enhanced-monitoring            fail-closed   monitoringInterval (plain: checked); monitoringRoleArn is_set only (a role is attached)
rds-storage-type                   fail-closed   storageType (plain: checked); replicateSourceDb is_set only
rds-custom-parameter-group         check-known   parameterGroupName (unknown): the group it depends on, else `<instance>` / `<instance>` less `-N`
                                                 (Aurora: `<cluster>-cluster`, members' `<stem>-instances`: parameter_group_of)
rds-no-burstable-production        fail-closed   instanceClass (plain: checked)
aurora-reader-in-second-zone       check-known   cluster members' availabilityZone (plain: checked; unknown: reported); members by
                                                 clusterIdentifier's value, else its dependency, else by name (cluster_members);
                                                 a Global Database's secondary cluster is not judged
pg-stat-statements                 check-known   parameters[shared_preload_libraries] (plain: checked; unknown: reported)
pg-never-unsafe                    check-known   parameters[fsync, full_page_writes] (plain: checked; unknown: reported)
pg-synchronous-commit              check-known   parameters[synchronous_commit] (plain: checked; unknown: reported)
pg-force-ssl                       check-known   parameters[rds.force_ssl] (plain: checked; unknown: reported)
pg-replica-hot-standby-feedback    check-known   replica parameterGroupName (unknown): group found as for rds-custom-parameter-group
connection-budget                  check-known   primary parameterGroupName (unknown): group found as above; max_connections (plain)
open-files-limit                   fail-closed   containerDefinitions / userData (unknown: REPORTED, the limits cannot be read)
no-plain-credentials               fail-closed   containerDefinitions / userData (unknown: REPORTED, absence of credentials unprovable)
container-logging                  fail-closed   containerDefinitions (unknown: REPORTED)
imdsv2                             fail-closed   metadataOptions (plain: checked)
ebs-encrypted                      check-known   blockDeviceMappings[].ebs.encrypted (plain: checked; unknown: reported)
lb-internet-facing                 check-known   internal, listener protocol/defaultActions[0].type (plain: checked); certificateArn is_set;
                                                 a listener belongs to the load balancer its loadBalancerArn depends on, else `<lb>-*`
lb-deletion-protection             fail-closed   enableDeletionProtection (plain: checked)
lb-access-logs (advisory)          check-known   accessLogs.enabled (plain: checked; the bucket may be unknown)
sg-no-open-database-or-servers     check-known   ingress[].cidrBlocks/ipv6CidrBlocks/protocol/ports (plain: checked); unknown
                                                 securityGroups ignored; an unknown one that could open the ports: reported
s3-closed-encrypted-versioned      check-known   settings' bucket (unknown): the bucket it depends on, else `<component>-*` names
placement-training-zones           check-known   subnet ids (unknown when created here): the subnets they depend on, else every
                                                 subnet the stack creates, judged by availabilityZone; none to judge: reported
replicas-for-ui-reads              check-known   containerDefinitions (unknown): passes if the stack has replicas, else reported
every-replica-read                 check-known   containerDefinitions / userData (unknown): passes if the stack has no replica,
                                                 else reported (the replica hosts they read are not known yet)
tags-environment-owner             check-known   tags (plain: checked); an unknown required tag value: reported
=================================  ============  ==================================================================

On a shipped stack's first preview this leaves exactly open-files-limit, no-plain-credentials and
container-logging reporting each task definition (open-files-limit and no-plain-credentials each launch
template with compute: ec2), replicas-for-ui-reads each task definition of a stack without replicas
(dev), and every-replica-read each task definition (launch template) of a stack with replicas: container definitions and user data embed ARNs, URLs and hosts of resources created in the
same update. An update preview of a deployed stack knows them (tests/test_policy_preview.py).
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Mapping

from ..endpoints import DATABASE_PORT as DB_PORT, SECRETS_ENV, TRACKING_PORT
from ..spec.checks import burstable_class, synchronous_commit_off_allowed
from ..planning.server_command import MIN_NOFILE

RDS_INSTANCE = "aws:rds/instance:Instance"
RDS_CLUSTER = "aws:rds/cluster:Cluster"                            # Aurora PostgreSQL
CLUSTER_INSTANCE = "aws:rds/clusterInstance:ClusterInstance"       # an Aurora writer or reader
PARAMETER_GROUP = "aws:rds/parameterGroup:ParameterGroup"
CLUSTER_PARAMETER_GROUP = "aws:rds/clusterParameterGroup:ClusterParameterGroup"
RDS_PROXY = "aws:rds/proxy:Proxy"
TASK_DEFINITION = "aws:ecs/taskDefinition:TaskDefinition"
ECS_SERVICE = "aws:ecs/service:Service"
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

FAIL_CLOSED = "fail-closed"
CHECK_KNOWN = "check-known"


# ---------------------------------------------------------------------------------------------
# unknown values
# ---------------------------------------------------------------------------------------------

class _Unknown:
    """The one marker of a value Pulumi cannot know until apply. It has no truth value: a rule that
    meets it must decide explicitly (`is_unknown`), never by accident."""

    _instance: "_Unknown | None" = None

    def __new__(cls) -> "_Unknown":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNKNOWN"

    def __bool__(self) -> bool:
        raise TypeError("UNKNOWN has no truth value: test is_unknown() first, or read the input with Res.get (fail closed)")

    def __copy__(self) -> "_Unknown":
        return self

    def __deepcopy__(self, memo) -> "_Unknown":
        return self

    def __reduce__(self) -> str:
        return "UNKNOWN"


UNKNOWN = _Unknown()


def is_unknown(value: Any) -> bool:
    return value is UNKNOWN


def unknown_path(value: Any, path: str = "") -> str | None:
    """The path of the first `UNKNOWN` in `value` (`path` itself if it is unknown), else None."""
    if value is UNKNOWN:
        return path
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = unknown_path(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = unknown_path(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None


UNVERIFIABLE = "cannot be verified during preview"


def cannot_verify(path: str, detail: str = "") -> str:
    """The message of a violation a rule reports because an input it needs is unknown."""
    return f"{UNVERIFIABLE}: {path} is unknown until apply" + (f" ({detail})" if detail else "")


class UnknownInput(Exception):
    """Raised by `Res.get` on an unknown input; `evaluate` and the pack report it as a violation."""

    def __init__(self, resource: "Res", path: str, detail: str = ""):
        super().__init__(f"{resource.name}: {path}")
        self.resource = resource
        self.path = path
        self.message = cannot_verify(path, detail)


@dataclass(frozen=True)
class Res:
    """A resource as policies see it: its type, logical name and input properties (any of which may be,
    or hold, `UNKNOWN`), its URN, and which resources each property depends on (URNs, from CrossGuard's
    property dependencies or a document's propertyDependencies; absent when not known)."""

    type: str
    name: str
    props: dict[str, Any]
    urn: str = ""
    deps: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    tolerant: bool = field(default=False, compare=False, repr=False)   # set for check-known rules only

    def get(self, key: str, default: Any = None) -> Any:
        """The input, fully known; raises `UnknownInput` naming the unknown part otherwise."""
        value = self.props.get(key, default)
        path = unknown_path(value, key)
        if path is not None:
            raise UnknownInput(self, path)
        return value

    def partial(self, key: str, default: Any = None) -> Any:
        """The input with any `UNKNOWN` markers left in place: for check-known rules. A fail-closed
        rule's resources answer as `get` does, so such a rule cannot see an unknown."""
        return self.props.get(key, default) if self.tolerant else self.get(key, default)

    def is_set(self, key: str) -> bool:
        """Whether the input is given (an unknown value will be one at apply): known in a preview."""
        value = self.props.get(key)
        return True if value is UNKNOWN else value not in (None, "", [], {}, False)

    def depends_on(self, key: str) -> tuple[str, ...] | None:
        """URNs the property depends on, or None when the dependencies are not known."""
        found = self.deps.get(key)
        return None if found is None else tuple(found)

    def for_rule(self, rule_: "Rule") -> "Res":
        tolerant = rule_.on_unknown == CHECK_KNOWN
        return self if self.tolerant == tolerant else replace(self, tolerant=tolerant)


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
    on_unknown: str = FAIL_CLOSED  # see the module docstring

    @property
    def stack(self) -> bool:
        return not self.resource_types

    @property
    def level(self) -> str:
        return "mandatory" if self.mandatory else "advisory"

    def applies(self, config: "PolicyConfig") -> bool:
        return config.production or not self.production_only


RULES: list[Rule] = []


def rule(name: str, family: str, description: str, reason: str, remediation: str, types: Iterable[str] = (),
         mandatory: bool = True, production_only: bool = False, on_unknown: str = FAIL_CLOSED):
    if on_unknown not in (FAIL_CLOSED, CHECK_KNOWN):
        raise ValueError(f"rule {name}: on_unknown {on_unknown!r} is not {FAIL_CLOSED!r} or {CHECK_KNOWN!r}")

    def register(fn):
        RULES.append(Rule(name, family, description, reason, remediation, fn, tuple(types), mandatory, production_only,
                          on_unknown))
        return fn
    return register


# ---------------------------------------------------------------------------------------------
# running a rule: the one place an unknown input becomes a violation (evaluate and the pack use these)
# ---------------------------------------------------------------------------------------------

def run_resource_rule(rule_: Rule, resource: Res, config: PolicyConfig) -> list[str]:
    try:
        return list(rule_.check(resource.for_rule(rule_), config))
    except UnknownInput as unknown:
        return [unknown.message]


def run_stack_rule(rule_: Rule, resources: list[Res], config: PolicyConfig) -> list[tuple[Res, str]]:
    try:
        return list(rule_.check([r.for_rule(rule_) for r in resources], config))
    except UnknownInput as unknown:
        return [(unknown.resource, unknown.message)]


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def is_replica(r: Res) -> bool:
    return r.is_set("replicateSourceDb")  # known in a preview even when the source's identifier is not


def truthy(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "on", "true", "yes")


def parameters(group: Res) -> dict[str, Any]:
    """The group's parameters by name; a value may be `UNKNOWN` (check-known rules), a name may not."""
    listed = group.partial("parameters")
    if listed is UNKNOWN:
        raise UnknownInput(group, "parameters")
    found: dict[str, Any] = {}
    for i, p in enumerate(listed or []):
        if p is UNKNOWN or p.get("name") is UNKNOWN:
            raise UnknownInput(group, f"parameters[{i}]" + ("" if p is UNKNOWN else ".name"))
        value = p.get("value")
        found[p.get("name")] = UNKNOWN if value is UNKNOWN else str(value)
    return found


def parameter(group: Res, params: dict[str, Any], name: str, default: Any = None) -> Any:
    """One parameter's value, known: raises `UnknownInput` naming it otherwise."""
    value = params.get(name, default)
    if value is UNKNOWN:
        raise UnknownInput(group, f"parameters[{name}].value")
    return value


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


def _or(value: Any, default: Any) -> Any:
    """`value or default`, keeping `UNKNOWN` (which has no truth value)."""
    return value if value is UNKNOWN else (value or default)


def _known_str(value: Any) -> str | None:
    return None if value is None or value is UNKNOWN else str(value)


def linked(holder: Res, key: str, candidates: list[Res], conventional: Callable[[Res], bool]) -> list[Res]:
    """The candidates `holder`'s input `key` refers to when its value is unknown: those it depends on
    (CrossGuard's property dependencies, a document's propertyDependencies), else, when dependencies
    are not known, those the naming convention `conventional` picks."""
    deps = holder.depends_on(key)
    if deps is not None:
        return [c for c in candidates if c.urn and c.urn in deps]
    return [c for c in candidates if conventional(c)]


def is_global_secondary(cluster: Res) -> bool:
    """An Aurora Global Database's secondary cluster: it joins a global cluster without a master user
    of its own (the primary's replicates to it); the component's primary joins by the global
    cluster's source instead, so it never names one."""
    return cluster.is_set("globalClusterIdentifier") and not cluster.is_set("masterUsername")


def refers_to(holder: Res, key: str, candidates: list[Res], conventional: Callable[[Res], bool]) -> list[Res]:
    """The candidates `holder`'s input `key` names: by the known value (a candidate's known `name` or
    its id as the mocks give it, `<name>-id`), else as `linked` finds them."""
    value = holder.partial(key)
    if value is UNKNOWN:
        return linked(holder, key, candidates, conventional)
    return [c for c in candidates if value in (_known_str(c.partial("name")), c.name, f"{c.name}-id",
                                               _known_str(c.partial("clusterIdentifier")))]


def cluster_members(cluster: Res, resources: list[Res]) -> list[Res]:
    """An Aurora cluster's instances; with neither values nor dependencies known, the primary takes
    every instance but the secondary's (named after it by the component's convention)."""
    secondaries = [c.name for c in of_type(resources, RDS_CLUSTER) if is_global_secondary(c)]

    def by_name(instance: Res) -> bool:
        owner = next((name for name in secondaries if instance.name.startswith(f"{name}-")), None)
        return owner == cluster.name if is_global_secondary(cluster) else owner is None

    return [i for i in of_type(resources, CLUSTER_INSTANCE) if refers_to(i, "clusterIdentifier", [cluster], lambda _, i=i: by_name(i))]


def global_secondary_parts(resources: list[Res]) -> tuple[set[str], set[str]]:
    """Names of what the Global Database's secondary uses in the second region: its subnet groups
    and its instances (placed there by design, outside the training zones)."""
    groups, members = set(), set()
    for cluster in filter(is_global_secondary, of_type(resources, RDS_CLUSTER)):
        groups |= {g.name for g in refers_to(cluster, "dbSubnetGroupName", of_type(resources, SUBNET_GROUP),
                                             lambda g: g.name.startswith(f"{cluster.name}-"))}
        members |= {m.name for m in cluster_members(cluster, resources)}
    return groups, members


# the input naming a database's parameter group, and the group's type: RDS instances, Aurora cluster
# members (their instance group), Aurora clusters (their cluster group)
GROUP_INPUT = {RDS_INSTANCE: ("parameterGroupName", PARAMETER_GROUP),
               CLUSTER_INSTANCE: ("dbParameterGroupName", PARAMETER_GROUP),
               RDS_CLUSTER: ("dbClusterParameterGroupName", CLUSTER_PARAMETER_GROUP)}


def snake(key: str) -> str:
    """An input's name as pulumi-aws's Python argument: parameterGroupName -> parameter_group_name."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def parameter_group_of(instance: Res, resources: list[Res]) -> tuple[Res | None, str | None]:
    """The parameter group an instance (or Aurora cluster) uses, and the reason when it cannot be
    found. By the name the instance gives (a group's physical name, else its logical name); while
    that name is unknown, by property dependency, else by the component's convention: the primary's
    group has its logical name, a replica's its logical name less `-<n>`; an Aurora cluster's is its
    name or `<name>-cluster`, its members' `<stem>-instances` (the stem their name less `-writer`,
    `-reader-<n>` or `-<n>`)."""
    key, group_type = GROUP_INPUT[instance.type]
    name = instance.partial(key)
    groups = of_type(resources, group_type)
    if name is not UNKNOWN:
        by_name = {_known_str(g.partial("name")): g for g in groups}
        by_name.update({g.name: g for g in groups})
        by_name.pop(None, None)
        return (by_name.get(str(name)) if name else None), None
    stems = {instance.name, re.sub(r"-\d+$", "", instance.name), f"{instance.name}-cluster",
             re.sub(r"-(writer|reader-\d+|\d+)$", "", instance.name) + "-instances"}
    found = linked(instance, key, groups, lambda g: g.name in stems)
    if len(found) == 1:
        return found[0], None
    return None, cannot_verify(key, "no parameter group of this stack matches it"
                               if not found else f"{len(found)} parameter groups match it")


# ---------------------------------------------------------------------------------------------
# RDS
# ---------------------------------------------------------------------------------------------

@rule("rds-storage-encrypted", "rds", "RDS storage is encrypted", "snapshots and volumes of run data must not be readable at rest",
      "nothing to set: MlflowTracking encrypts with its own KMS key; do not override storage_encrypted", [RDS_INSTANCE, RDS_CLUSTER])
def rds_storage_encrypted(r: Res, c: PolicyConfig) -> list[str]:
    return [] if r.get("storageEncrypted") is True else ["storage_encrypted is not true"]


@rule("rds-not-public", "rds", "RDS instances are not publicly accessible", "the tracking database is reached from the servers only",
      "nothing to set: the component keeps the database private", [RDS_INSTANCE, CLUSTER_INSTANCE])
def rds_not_public(r: Res, c: PolicyConfig) -> list[str]:
    return ["publicly_accessible is true"] if r.get("publiclyAccessible") is True else []


@rule("rds-backup-retention", "rds", "backups kept at least 7 days in production and 1 elsewhere",
      "point-in-time recovery after a bad migration or a deleted experiment",
      "database.backup_retention_days: 7 or more (production)", [RDS_INSTANCE, RDS_CLUSTER])
def rds_backup_retention(r: Res, c: PolicyConfig) -> list[str]:
    if is_replica(r):
        return []  # replicas restore from the primary's backups
    need = c.min_backup_retention_days_production if c.production else c.min_backup_retention_days
    days = int(r.get("backupRetentionPeriod") or 0)
    return [] if days >= need else [f"backup_retention_period {days} < {need} days"]


@rule("rds-deletion-protection", "rds", "production databases have deletion protection",
      "a stray destroy must not drop the tracking database", "database.deletion_protection: true", [RDS_INSTANCE, RDS_CLUSTER],
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
      "nothing to set: the component enables it (retention: database.performance_insights_retention_days)",
      [RDS_INSTANCE, CLUSTER_INSTANCE])
def rds_performance_insights(r: Res, c: PolicyConfig) -> list[str]:
    return [] if r.get("performanceInsightsEnabled") is True else ["performance_insights_enabled is not true"]


@rule("rds-enhanced-monitoring", "rds", "enhanced monitoring is on", "OS-level CPU, memory and I/O per process",
      "database.monitoring_interval_seconds: 1-60", [RDS_INSTANCE, CLUSTER_INSTANCE])
def rds_enhanced_monitoring(r: Res, c: PolicyConfig) -> list[str]:
    interval = int(r.get("monitoringInterval") or 0)
    # the role's ARN is unknown until the role exists; that a role is attached is known
    return [] if interval > 0 and r.is_set("monitoringRoleArn") else [f"monitoring_interval {interval} (off) or no monitoring role"]


@rule("rds-storage-type", "rds", "no gp2 or magnetic storage", "gp2 ties IOPS to size and magnetic cannot carry a logging load",
      "nothing to set: the plan sizes gp3 IOPS and throughput", [RDS_INSTANCE])
def rds_storage_type(r: Res, c: PolicyConfig) -> list[str]:
    kind = r.get("storageType")
    if kind is None and is_replica(r):
        return []
    return [] if kind in ("gp3", "io1", "io2") else [f"storage_type {kind!r}"]


@rule("rds-custom-parameter-group", "rds", "a non-default parameter group is attached", "default groups are untuned (README bottleneck 3)",
      "nothing to set: the plan's parameter groups are attached", on_unknown=CHECK_KNOWN)
def rds_custom_parameter_group(resources: list[Res], c: PolicyConfig) -> list[tuple[Res, str]]:
    """A stack rule so that an instance whose parameterGroupName is unknown (the group is created in
    the same update) is judged by the group it refers to; AWS reserves `default.*` for its own groups."""
    found = []
    for instance in [*of_type(resources, RDS_INSTANCE), *of_type(resources, CLUSTER_INSTANCE), *of_type(resources, RDS_CLUSTER)]:
        key = GROUP_INPUT[instance.type][0]
        name = instance.partial(key)
        if name is UNKNOWN:
            group, unverifiable = parameter_group_of(instance, resources)
            if group is None:
                found.append((instance, unverifiable))
            elif str(_known_str(group.partial("name")) or "").startswith("default."):
                found.append((instance, f"parameter group {group.name} is named {group.partial('name')!r}"))
        elif not name or str(name).startswith("default."):
            found.append((instance, f"{snake(key)} {name!r}"))
    return found


@rule("aurora-reader-in-second-zone", "rds", "a production Aurora cluster has instances in at least two zones",
      "a zone outage must not stop all logging: Aurora fails over to a reader in another zone",
      "database.multi_az: true (the plan then keeps a reader in a second training zone)", production_only=True,
      on_unknown=CHECK_KNOWN)
def aurora_reader_in_second_zone(resources: list[Res], c: PolicyConfig) -> list[tuple[Res, str]]:
    """RDS's Multi-AZ for an Aurora cluster: its writer and at least one reader in different zones."""
    found = []
    for cluster in of_type(resources, RDS_CLUSTER):
        if is_global_secondary(cluster):
            continue  # the copy in the second region: one instance the region's failover promotes
        members = cluster_members(cluster, resources)
        zones = [m.partial("availabilityZone") for m in members]
        if any(z is UNKNOWN for z in zones):
            found.append((cluster, cannot_verify("availabilityZone of its instances")))
        elif len({z for z in zones if z}) < 2:
            found.append((cluster, f"{len(members)} instance(s) in {len({z for z in zones if z})} zone(s)"))
    return found


@rule("rds-no-burstable-production", "rds", "no burstable class in production", "burst credits run out under sustained logging",
      "database.instance_class: a db.m* or db.r* class, or unset to let the plan choose", [RDS_INSTANCE, CLUSTER_INSTANCE],
      production_only=True)
def rds_no_burstable_production(r: Res, c: PolicyConfig) -> list[str]:
    cls = str(r.get("instanceClass") or "")
    return [f"instance_class {cls}"] if burstable_class(cls) else []


# ---------------------------------------------------------------------------------------------
# Parameter groups (check-known: one unknown parameter value leaves the others checkable)
# ---------------------------------------------------------------------------------------------

@rule("pg-stat-statements", "parameter-groups", "pg_stat_statements is preloaded", "slow-query analysis reads it",
      "nothing to set: the plan preloads it", [PARAMETER_GROUP], on_unknown=CHECK_KNOWN)
def pg_stat_statements(r: Res, c: PolicyConfig) -> list[str]:
    libraries = parameter(r, parameters(r), "shared_preload_libraries", "")
    return [] if "pg_stat_statements" in [x.strip() for x in libraries.split(",")] else ["shared_preload_libraries lacks pg_stat_statements"]


@rule("pg-never-unsafe", "parameter-groups", "fsync and full_page_writes are never off", "either off can corrupt the database on a crash",
      "remove any fsync/full_page_writes override", [PARAMETER_GROUP, CLUSTER_PARAMETER_GROUP], on_unknown=CHECK_KNOWN)
def pg_never_unsafe(r: Res, c: PolicyConfig) -> list[str]:
    params = parameters(r)
    found = []
    for name in ("fsync", "full_page_writes"):
        if params.get(name) is UNKNOWN:
            found.append(cannot_verify(f"parameters[{name}].value"))
        elif name in params and not truthy(params[name]):
            found.append(f"{name} is off")
    return found


@rule("pg-synchronous-commit", "parameter-groups", "synchronous_commit off only with relaxed durability, never in production",
      "with it off an acknowledged log call can be lost on a crash", "database.durability: strict",
      [PARAMETER_GROUP, CLUSTER_PARAMETER_GROUP], on_unknown=CHECK_KNOWN)
def pg_synchronous_commit(r: Res, c: PolicyConfig) -> list[str]:
    value = parameter(r, parameters(r), "synchronous_commit")
    if value is None or value in ("on", "remote_write", "remote_apply", "local", "1"):
        return []
    if synchronous_commit_off_allowed(c.production, c.durability):
        return []
    return [f"synchronous_commit {value} in production" if c.production else f"synchronous_commit {value} with durability {c.durability}"]


@rule("pg-force-ssl", "parameter-groups", "rds.force_ssl = 1", "credentials and run data never cross the network in clear text",
      "nothing to set: the plan forces TLS", [PARAMETER_GROUP, CLUSTER_PARAMETER_GROUP], on_unknown=CHECK_KNOWN)
def pg_force_ssl(r: Res, c: PolicyConfig) -> list[str]:
    if r.type == PARAMETER_GROUP and str(r.get("family") or "").startswith("aurora-"):
        return []  # on Aurora rds.force_ssl is a cluster parameter: the cluster group carries it
    return [] if parameter(r, parameters(r), "rds.force_ssl") == "1" else ["rds.force_ssl is not 1"]


@rule("pg-replica-hot-standby-feedback", "parameter-groups", "replicas have hot_standby_feedback",
      "UI searches on a replica are not cancelled by vacuum on the primary", "nothing to set: the replica group sets it",
      on_unknown=CHECK_KNOWN)
def pg_replica_hot_standby_feedback(resources: list[Res], c: PolicyConfig) -> list[tuple[Res, str]]:
    found = []
    for replica in filter(is_replica, of_type(resources, RDS_INSTANCE)):
        group, unverifiable = parameter_group_of(replica, resources)
        if unverifiable:
            found.append((replica, unverifiable))
            continue
        try:
            ok = group is not None and truthy(parameter(group, parameters(group), "hot_standby_feedback", "0"))
        except UnknownInput as unknown:
            found.append((unknown.resource, unknown.message))
            continue
        if not ok:
            shown = replica.partial("parameterGroupName")
            shown = group.name if shown is UNKNOWN and group else repr(shown)
            found.append((replica, f"parameter group {shown} lacks hot_standby_feedback=1"))
    return found


# ---------------------------------------------------------------------------------------------
# Connection budget (stack)
# ---------------------------------------------------------------------------------------------

@rule("connection-budget", "connection-budget", "at maximum autoscale the fleets' pools fit in max_connections minus the reserve",
      "an exhausted max_connections refuses connections to every server (README: 'Connection refused')",
      "lower tracking.*.max_count or workers, choose a larger database.instance_class, or database.rds_proxy: auto",
      on_unknown=CHECK_KNOWN)
def connection_budget(resources: list[Res], c: PolicyConfig) -> list[tuple[Res, str]]:
    """The plan's budget (fleet connections at maximum autoscale, from the policy config) against the
    max_connections the primary's parameter group really sets. In a first preview the primary's
    parameterGroupName is unknown: the group is the one it depends on, else the one of its name."""
    if of_type(resources, RDS_PROXY):
        return []  # the proxy multiplexes the pools
    # an RDS primary, or an Aurora cluster's member: writer and readers share one instance group
    primary = next((r for r in [*of_type(resources, RDS_INSTANCE), *of_type(resources, CLUSTER_INSTANCE)] if not is_replica(r)), None)
    if primary is None:
        return []
    group, unverifiable = parameter_group_of(primary, resources)
    if unverifiable:
        return [(primary, unverifiable)]
    max_connections = int(parameter(group, parameters(group), "max_connections", 0)) if group else 0
    if not max_connections:
        return [(primary, "no max_connections in the primary's parameter group to budget against")]
    if c.fleet_connections + c.connection_reserve > max_connections:
        return [(primary, (f"fleets open {c.fleet_connections} connections at maximum autoscale + reserve {c.connection_reserve}"
                          f" > max_connections {max_connections}"))]
    return []


# ---------------------------------------------------------------------------------------------
# ECS and EC2 (fail-closed: container definitions and user data built from outputs are unknown in a
# first preview, and nothing else shows what they hold)
# ---------------------------------------------------------------------------------------------

@rule("open-files-limit", "ecs-ec2", "tracking servers run with at least 65,536 open files",
      "\"Too many open files\" under many concurrent clients (README bottleneck table)",
      "nothing to set: the plan sets nofile from the fleet's sockets", [TASK_DEFINITION, LAUNCH_TEMPLATE])
def open_files_limit(r: Res, c: PolicyConfig) -> list[str]:
    if r.type == LAUNCH_TEMPLATE:
        # the server container's `docker run --ulimit nofile=SOFT:HARD`, as its ECS definition's ulimits
        limits = [min(int(s), int(h)) for s, h in re.findall(r"\bnofile=(\d+):(\d+)", user_data_text(r))]
        return [] if limits and min(limits) >= c.min_nofile else [f"nofile {limits or 'unset'} < {c.min_nofile}"]
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
            if SECRET_NAME.search(key) and not key.endswith("_ARN") and key != SECRETS_ENV:  # references, not values
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
      "nothing to set: the launch template encrypts its volumes", [LAUNCH_TEMPLATE], on_unknown=CHECK_KNOWN)
def ebs_encrypted(r: Res, c: PolicyConfig) -> list[str]:
    mappings = r.partial("blockDeviceMappings")
    if mappings is UNKNOWN:
        return [cannot_verify("blockDeviceMappings")]
    found = []
    for i, m in enumerate(mappings or []):
        ebs = UNKNOWN if m is UNKNOWN else m.get("ebs")
        encrypted = UNKNOWN if ebs is UNKNOWN else (ebs or {}).get("encrypted")
        device = m.get("deviceName") if m is not UNKNOWN else UNKNOWN
        if encrypted is UNKNOWN:  # a KMS key id may be unknown; whether the volume is encrypted must not be
            found.append(cannot_verify(f"blockDeviceMappings[{i}].ebs.encrypted"))
        elif not truthy(encrypted):
            found.append(f"unencrypted volume {f'[{i}]' if device is UNKNOWN else device}")
    return found + ([] if mappings else ["no block device mapping (root volume unencrypted by default)"])


# ---------------------------------------------------------------------------------------------
# Load balancers
# ---------------------------------------------------------------------------------------------

def _listeners_of(lb: Res, listeners: list[Res]) -> list[Res]:
    """A load balancer's listeners: those whose loadBalancerArn is its ARN or depends on it, else
    (dependencies not known, ARN unknown) the component's convention, `<lb>-*` names."""
    arn = _known_str(lb.partial("arn"))
    mine = []
    for x in listeners:
        ref = x.partial("loadBalancerArn")
        if ref is not UNKNOWN and ref is not None and arn is not None:
            hit = str(ref) == arn
        elif ref is UNKNOWN and x.depends_on("loadBalancerArn") is not None:
            hit = bool(lb.urn) and lb.urn in (x.depends_on("loadBalancerArn") or ())
        else:
            hit = x.name.startswith(lb.name + "-")
        if hit:
            mine.append(x)
    return mine


def _first_action_type(listener: Res) -> Any:
    actions = listener.partial("defaultActions")
    if actions is UNKNOWN:
        return UNKNOWN
    first = (actions or [{}])[0]
    return UNKNOWN if first is UNKNOWN else first.get("type")  # its target group ARN may be unknown, its type is not


@rule("lb-internet-facing", "load-balancers", "internet-facing only for the UI, and only with HTTPS and a redirect from HTTP",
      "training traffic stays in the VPC; people reach the UI over TLS only",
      "tracking.ui.internet_facing with tracking.ui.certificate_arn, or false", on_unknown=CHECK_KNOWN)
def lb_internet_facing(resources: list[Res], c: PolicyConfig) -> list[tuple[Res, str]]:
    found = []
    listeners = of_type(resources, LISTENER)
    for lb in of_type(resources, LOAD_BALANCER):
        internal = lb.partial("internal")
        if internal is UNKNOWN:
            found.append((lb, cannot_verify("internal")))
            continue
        if internal is not False:
            continue
        if not lb.name.endswith("-ui"):
            found.append((lb, "an internet-facing load balancer that is not the UI's"))
            continue
        mine = _listeners_of(lb, listeners)
        unknown = [(x, "protocol") for x in mine if x.partial("protocol") is UNKNOWN]
        unknown += [(x, "defaultActions[0].type") for x in mine
                    if x.partial("protocol") == "HTTP" and _first_action_type(x) is UNKNOWN]
        if unknown:
            found += [(x, cannot_verify(p)) for x, p in unknown]
            continue
        https = [x for x in mine if x.partial("protocol") == "HTTPS" and x.is_set("certificateArn")]
        plain = [x for x in mine if x.partial("protocol") == "HTTP"]
        redirects = all(_first_action_type(x) == "redirect" for x in plain)
        if not https or not redirects:
            found.append((lb, "internet-facing without an HTTPS listener, or with HTTP that does not redirect"))
    return found


@rule("lb-deletion-protection", "load-balancers", "production load balancers have deletion protection",
      "the tracking URI that every training job uses must not vanish", "nothing to set in production",
      [LOAD_BALANCER], production_only=True)
def lb_deletion_protection(r: Res, c: PolicyConfig) -> list[str]:
    return [] if r.get("enableDeletionProtection") is True else ["enable_deletion_protection is not true"]


@rule("lb-access-logs", "load-balancers", "load balancers write access logs", "who called the API, when, how slowly",
      "an access-log bucket is not provisioned yet: add one to the stack", [LOAD_BALANCER], mandatory=False,
      on_unknown=CHECK_KNOWN)
def lb_access_logs(r: Res, c: PolicyConfig) -> list[str]:
    logs = r.partial("accessLogs")
    enabled = UNKNOWN if logs is UNKNOWN else (logs or {}).get("enabled")  # the bucket may be one created here
    if enabled is UNKNOWN:
        return [cannot_verify("accessLogs.enabled")]
    return [] if enabled is True else ["access_logs not enabled"]


# ---------------------------------------------------------------------------------------------
# Security groups
# ---------------------------------------------------------------------------------------------

def _known_items(value: Any) -> tuple[list, bool]:
    """The known items of a list input, and whether any (or the whole list) is unknown."""
    if value is UNKNOWN:
        return [], True
    return [x for x in value or [] if x is not UNKNOWN], any(x is UNKNOWN for x in value or [])


def _covers(rule_: dict, port: int) -> bool:
    if str(rule_.get("protocol")) in ("-1", "all"):
        return True
    return int(rule_.get("fromPort", 0)) <= port <= int(rule_.get("toPort", 0))


@rule("sg-no-open-database-or-servers", "security-groups", "no ingress from 0.0.0.0/0 or ::/0 to 5432 or the tracking port",
      "the database and servers are reached through the load balancers and the client security group only",
      "nothing to set: only an internet-facing UI load balancer opens 80/443 to the world", [SECURITY_GROUP],
      on_unknown=CHECK_KNOWN)
def sg_no_open(r: Res, c: PolicyConfig) -> list[str]:
    """Ingress from other security groups (ids unknown in a first preview) never opens to the world:
    only the CIDR blocks, protocol and ports are needed, and an unknown one of those is reported."""
    ingress = r.partial("ingress")
    if ingress is UNKNOWN:
        return [cannot_verify("ingress")]
    found = []
    for i, entry in enumerate(ingress or []):
        if entry is UNKNOWN:
            found.append(cannot_verify(f"ingress[{i}]"))
            continue
        v4, unknown_v4 = _known_items(entry.get("cidrBlocks"))
        v6, unknown_v6 = _known_items(entry.get("ipv6CidrBlocks"))
        world = sorted(({"0.0.0.0/0"} & set(v4)) | ({"::/0"} & set(v6)))
        if not world and not (unknown_v4 or unknown_v6):
            continue
        unknown = [] if world else [f"ingress[{i}].{k}" for k, u in (("cidrBlocks", unknown_v4), ("ipv6CidrBlocks", unknown_v6)) if u]
        unknown += [f"ingress[{i}].{k}" for k in ("protocol", "fromPort", "toPort") if entry.get(k) is UNKNOWN]
        for port in (DB_PORT, TRACKING_PORT):
            if unknown:
                if any(entry.get(k) is UNKNOWN for k in ("protocol", "fromPort", "toPort")) or _covers(entry, port):
                    found.append(cannot_verify(", ".join(unknown), f"it could open port {port} to the world"))
            elif _covers(entry, port):
                found.append(f"ingress from {world[0]} covers port {port}")
    return found


# ---------------------------------------------------------------------------------------------
# S3 (stack: the settings are separate resources)
# ---------------------------------------------------------------------------------------------

def _settings_of(bucket: Res, resources: list[Res], typ: str) -> list[Res]:
    """The settings resources of type `typ` for `bucket`: those whose `bucket` is one of its names
    (its id, its bucket name; `<name>-id` under the mocks), or, when that is unknown during a preview,
    those that depend on it, else (dependencies not known) those named after the same component."""
    keys = {_known_str(bucket.partial("id")), _known_str(bucket.partial("bucket")), f"{bucket.name}-id"} - {None, ""}
    prefixes = {b.name: b.name.removesuffix("-bucket") + "-" for b in of_type(resources, BUCKET)}
    prefix = prefixes[bucket.name]

    def named_after(setting: Res) -> bool:
        """`<component>-<setting>` of this bucket, not of another whose name is longer (`<component>-replica-...`)."""
        matching = [p for p in prefixes.values() if setting.name.startswith(p)]
        return setting.name.startswith(prefix) and max(matching, key=len, default=prefix) == prefix

    found = []
    for setting in of_type(resources, typ):
        ref = setting.partial("bucket")
        if ref is not UNKNOWN:
            hit = str(ref) in keys
        else:
            hit = bool(linked(setting, "bucket", [bucket], lambda b, s=setting: named_after(s)))
        if hit:
            found.append(setting)
    return found


@rule("s3-closed-encrypted-versioned", "s3", "buckets block public access, are encrypted and versioned",
      "artifacts are models and data: never public, recoverable after an overwrite",
      "nothing to set: the component configures the artifact bucket", on_unknown=CHECK_KNOWN)
def s3_closed_encrypted_versioned(resources: list[Res], c: PolicyConfig) -> list[tuple[Res, str]]:
    found = []
    flags = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    for bucket in of_type(resources, BUCKET):
        blocks = _settings_of(bucket, resources, PUBLIC_ACCESS_BLOCK)
        unknown = [(b, flag) for b in blocks for flag in flags if b.partial(flag) is UNKNOWN]
        if unknown:
            found += [(b, cannot_verify(flag)) for b, flag in unknown]
        elif not any(all(b.partial(flag) is True for flag in flags) for b in blocks):
            found.append((bucket, "public access not fully blocked"))
        if not _settings_of(bucket, resources, BUCKET_ENCRYPTION):
            found.append((bucket, "no server-side encryption configuration"))
        statuses = [UNKNOWN if v.partial("versioningConfiguration") is UNKNOWN else (v.partial("versioningConfiguration") or {}).get("status")
                    for v in _settings_of(bucket, resources, BUCKET_VERSIONING)]
        if "Enabled" not in statuses:
            found.append((bucket, cannot_verify("versioningConfiguration.status") if UNKNOWN in statuses else "versioning not enabled"))
    return found


# ---------------------------------------------------------------------------------------------
# Placement (stack)
# ---------------------------------------------------------------------------------------------

@rule("placement-training-zones", "placement", "API servers and the database primary sit in the training zones",
      "every log call crossing zones or VPCs adds latency (README bottleneck 6)",
      "placement.training_vpc with the training subnets, or placement.new_vpc.availability_zones = the training zones",
      on_unknown=CHECK_KNOWN)
def placement_training_zones(resources: list[Res], c: PolicyConfig) -> list[tuple[Res, str]]:
    """Subnet ids are known for existing (training) subnets and unknown, in a first preview, for
    subnets the stack creates: those are judged by the availability zone of the subnets the input
    depends on, else (dependencies not known) of every subnet the stack creates."""
    if not c.training_availability_zones and not c.training_subnet_ids:
        return []
    subnets = of_type(resources, SUBNET)
    zone_of: dict[str, Any] = {}
    for s in subnets:
        for key in (f"{s.name}-id", _known_str(s.partial("id"))):  # the mocks' ids; a stack's real ones
            if key:
                zone_of[key] = s.partial("availabilityZone")
    zone_of.update({sid: None for sid in c.training_subnet_ids})
    allowed = set(c.training_availability_zones)

    def outside(holder: Res, key: str, ids: Any, path: str) -> list[str]:
        """Subnets outside the training zones among `ids` (holder's input `key`, at `path`); an
        `cannot_verify` message when one cannot be judged."""
        known, unknown = _known_items(ids)
        bad = []
        for sid in known:
            if sid in c.training_subnet_ids:
                continue
            if sid in zone_of:
                if zone_of[sid] is UNKNOWN:
                    bad.append(cannot_verify(f"{path} {sid}: availabilityZone"))
                elif zone_of[sid] not in allowed:
                    bad.append(f"{sid} ({zone_of[sid]})")
            else:
                bad.append(f"{sid} (not a training subnet)")  # an existing subnet the stack did not create
        if unknown:  # subnets created in this update
            created = linked(holder, key, subnets, lambda s: True)
            if not created:
                bad.append(cannot_verify(path, "no subnet of this stack to judge it by"))
            for s in created:
                zone = s.partial("availabilityZone")
                if zone is UNKNOWN:
                    bad.append(cannot_verify(f"{path}: subnet {s.name} availabilityZone"))
                elif zone not in allowed:
                    bad.append(f"{s.name} ({zone})")
        return bad

    def report(holder: Res, what: str, bad: list[str]) -> list[tuple[Res, str]]:
        unverifiable = [b for b in bad if b.startswith(UNVERIFIABLE)]
        outside_ = [b for b in bad if b not in unverifiable]
        return [(holder, b) for b in unverifiable] + ([(holder, f"{what} outside the training zones: {', '.join(outside_)}")] if outside_ else [])

    found = []
    for service in of_type(resources, ECS_SERVICE):
        if service.name.endswith("-api"):
            network = service.partial("networkConfiguration")
            ids = UNKNOWN if network is UNKNOWN else _or((network or {}).get("subnets"), [])
            found += report(service, "API tasks in subnets", outside(service, "networkConfiguration", ids, "networkConfiguration.subnets"))
    for group in of_type(resources, ASG):
        if group.name.endswith("-api"):
            ids = _or(group.partial("vpcZoneIdentifiers"), [])
            found += report(group, "API instances in subnets", outside(group, "vpcZoneIdentifiers", ids, "vpcZoneIdentifiers"))
    secondary_groups, secondary_members = global_secondary_parts(resources)
    for subnet_group in of_type(resources, SUBNET_GROUP):
        if subnet_group.name in secondary_groups:
            continue  # the Global Database's secondary, in the second region by design
        ids = _or(subnet_group.partial("subnetIds"), [])
        found += report(subnet_group, "database subnets", outside(subnet_group, "subnetIds", ids, "subnetIds"))
    for primary in (r for r in of_type(resources, RDS_INSTANCE) if not is_replica(r)):
        zone = primary.partial("availabilityZone")
        if zone is UNKNOWN:
            found.append((primary, cannot_verify("availabilityZone")))
        elif zone and allowed and zone not in allowed:
            found.append((primary, f"primary in {zone}, not a training zone"))
    for member in of_type(resources, CLUSTER_INSTANCE):  # Aurora: the writer and every reader
        if member.name in secondary_members:
            continue
        zone = member.partial("availabilityZone")
        if zone is UNKNOWN:
            found.append((member, cannot_verify("availabilityZone")))
        elif zone and allowed and zone not in allowed:
            found.append((member, f"Aurora instance in {zone}, not a training zone"))
    return found


@rule("replicas-for-ui-reads", "placement", "replicas exist when the UI reads from replicas",
      "a UI pointed at a missing replica fails every page", "database.read_replicas: 1 or more", on_unknown=CHECK_KNOWN)
def replicas_for_ui_reads(resources: list[Res], c: PolicyConfig) -> list[tuple[Res, str]]:
    """Only a stack without replicas can break this, so unknown container definitions are reported
    only then."""
    if any(is_replica(r) for r in of_type(resources, RDS_INSTANCE)) or of_type(resources, RDS_CLUSTER):
        return []  # an Aurora cluster's reader endpoint always answers (from the writer while it has no reader)
    found = []
    for task in of_type(resources, TASK_DEFINITION):
        try:
            defined = containers(task)
        except UnknownInput as unknown:
            found.append((task, cannot_verify(unknown.path, "the stack has no replica to read from")))
            continue
        for container in defined:
            names = {e.get("name") for e in container.get("environment") or []}
            if "DB_REPLICA_HOST" in names:
                found.append((task, "reads from a replica but the stack has none"))
    return found


def replica_hosts_read(task_or_template: Res) -> set[str]:
    """The DB_REPLICA_HOST values a task definition's containers (or a launch template's env files) set."""
    if task_or_template.type == LAUNCH_TEMPLATE:
        return set(re.findall(r"^DB_REPLICA_HOST=(.+)$", user_data_text(task_or_template), re.MULTILINE))
    hosts = set()
    for container in containers(task_or_template):
        value = {e.get("name"): e.get("value") for e in container.get("environment") or []}.get("DB_REPLICA_HOST")
        if value:
            hosts.add(value)
    return hosts


@rule("every-replica-read", "placement", "every read replica is read by a UI service of its own",
      "a replica no UI task reads is paid for while another replica takes every UI read (and the budget's share per replica is wrong)",
      "one UI service per replica, each with its own DB_REPLICA_HOST (MlflowTracking builds them)", on_unknown=CHECK_KNOWN)
def every_replica_read(resources: list[Res], c: PolicyConfig) -> list[tuple[Res, str]]:
    """Counts the distinct replica hosts the UI's task definitions (launch templates) read against the
    replicas; the hosts are only known once the replicas exist, so on a first preview each task
    definition of a stack with replicas is reported."""
    replicas = [r for r in of_type(resources, RDS_INSTANCE) if is_replica(r)]
    if not replicas:
        return []
    hosts: set[str] = set()
    found = []
    for fleet in [*of_type(resources, TASK_DEFINITION), *of_type(resources, LAUNCH_TEMPLATE)]:
        try:
            hosts |= replica_hosts_read(fleet)
        except UnknownInput as unknown:
            found.append((fleet, cannot_verify(unknown.path, f"each of the {len(replicas)} replicas must be read by a UI service")))
    if found:
        return found
    if len(hosts) < len(replicas):
        return [(replicas[0], f"{len(replicas)} replica(s), but UI services read {len(hosts)}: {', '.join(sorted(hosts)) or 'none'}")]
    return []


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
      "cost reports and incident owners are found by tag", "tags.owner (environment is set from the file name)",
      on_unknown=CHECK_KNOWN)
def tags_environment_owner(resources: list[Res], c: PolicyConfig) -> list[tuple[Res, str]]:
    found = []
    for r in resources:
        if not r.type.startswith("aws:") or not taggable(r.type):
            continue
        tags = r.partial("tags")
        if tags is UNKNOWN:
            found.append((r, cannot_verify("tags")))
            continue
        tags = tags or {}
        if isinstance(tags, list):  # autoscaling groups take [{key, value, propagate_at_launch}]
            if any(t is UNKNOWN or t.get("key") is UNKNOWN for t in tags):
                found.append((r, cannot_verify("tags[].key")))
                continue
            tags = {t.get("key"): t.get("value") for t in tags}
        unknown = [t for t in c.required_tags if tags.get(t) is UNKNOWN]
        missing = [t for t in c.required_tags if t not in unknown and not tags.get(t)]
        found += [(r, cannot_verify(f"tags.{t}")) for t in unknown]
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
    """Run every rule (production-only ones only in production) over the stack's resources; an
    unknown input a rule needs is a violation (see the module docstring), never a skip."""
    found: list[Violation] = []
    for r_ in rules or RULES:
        if not r_.applies(config):
            continue
        if r_.stack:
            found += [Violation(r_, res.name, msg) for res, msg in run_stack_rule(r_, resources, config)]
        else:
            for res in resources:
                if res.type in r_.resource_types:
                    found += [Violation(r_, res.name, msg) for msg in run_resource_rule(r_, res, config)]
    return found
