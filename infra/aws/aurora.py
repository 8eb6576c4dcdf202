"""The tracking database on Aurora PostgreSQL, for a workload that outgrows one RDS primary and a few
instance replicas (the plan's `database.engine`): one cluster on shared storage that grows by itself,
a writer and readers spread over the training zones, reader autoscaling on CPU, the tuned parameters
in the cluster and instance groups Aurora takes them in, and RDS Proxy with a read-only endpoint
when the connection budget needs one. Encrypted with the stack's key, private, monitored, and
protected in production, as TrackingDatabase is. Rules it relies on: docs/aws-constraints.md."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from .database import LOG_EXPORTS_AURORA, ProxySettings, enhanced_monitoring_role, key_and_secrets, rds_proxy
from .iam import assume_role_policy
from .keys import in_region, kms_key
from .parameter_group import ParameterGroupArgs, ParameterSetting, check_parameter_group, parameter_group, settings
from ..endpoints import DATABASE_NAME, DATABASE_PORT, DATABASE_USERNAME, TARGET_TAG

ENGINE = "aurora-postgresql"
MAX_READERS = 15          # "one primary DB instance and up to 15 Aurora Replicas" (aurora-replicas-adding.html)
STORAGE_TYPES = ("", "aurora-iopt1")  # Standard ("": the API never echoes "aurora") or I/O-Optimized
SCALING_COOLDOWN_S = 300  # Application Auto Scaling's default for Aurora replicas
BACKUP_SCHEDULE = "cron(0 5 * * ? *)"  # daily, after the cluster's own backup window (03:00-04:00 UTC)
BACKUP_ROLE_POLICY = "arn:aws:iam::aws:policy/service-role/AWSBackupServiceRolePolicyForBackup"


@dataclass
class GlobalSecondary:
    """An Aurora Global Database secondary cluster in a second region: private subnets (two zones or
    more) of a VPC there, and its CIDR, the only source allowed to reach 5432."""

    region: str
    vpc_id: str
    cidr: str
    subnet_ids: list[str]


@dataclass
class AuroraArgs:
    """The tracking database as an Aurora PostgreSQL cluster: plain values, each with a safe default
    where one exists. `MlflowTracking` fills them from the plan; alone, pass what your environment needs."""

    subnet_ids: pulumi.Input[list[str]]
    """Private subnets in at least two zones."""
    security_group_ids: list[pulumi.Input[str]]
    """Security groups of the instances: allow 5432 from the servers (and the proxy) only."""
    instance_class: str = "db.r7g.large"
    """The writer's class; readers run the same, as the ones autoscaling adds do."""
    engine_version: str = "17"
    storage_type: str = ""
    """"" for Aurora Standard, "aurora-iopt1" for I/O-Optimized (no charge per I/O)."""
    writer_zone: str | None = None
    reader_zones: list[str] = field(default_factory=list)
    """One reader per entry, in that zone: the readers the cluster keeps at least (failover targets)."""
    readers_max: int = 0
    """Reader autoscaling's ceiling (on the readers' average CPU); at most 15. 0 or len(reader_zones): none."""
    reader_target_cpu_percent: int = 60
    cluster_parameters: list[ParameterSetting] = field(default_factory=list)
    instance_parameters: list[ParameterSetting] = field(default_factory=list)
    backup_retention_days: int = 7
    deletion_protection: bool = True
    protect: bool = True
    """Pulumi's protect: a change that would replace or delete the cluster fails instead."""
    monitoring_interval_seconds: int = 60
    performance_insights_retention_days: int = 7
    proxy: ProxySettings | None = None
    proxy_security_group_ids: list[pulumi.Input[str]] = field(default_factory=list)
    restore_from: str | None = None
    """What the cluster starts from instead of an empty database: a DB cluster snapshot ARN, or a DB
    cluster ARN in this region (such as a promoted Global Database secondary), cloned copy-on-write
    at its latest restorable time."""
    backup_copy_region: str | None = None
    """A second region AWS Backup copies a daily snapshot of the cluster to (Aurora has no automated
    backup replication); kept `backup_retention_days` days there. None: no copy."""
    global_secondary: GlobalSecondary | None = None
    """A Global Database: the cluster becomes its primary, and a secondary cluster with one instance of
    `instance_class` (memory optimized) follows it in another region. None: none."""
    tags: dict[str, str] = field(default_factory=dict)


def check_aurora(args: AuroraArgs) -> None:
    """Bad arguments raise before anything is declared: one message naming the field, value and what is allowed."""
    if args.storage_type not in STORAGE_TYPES:
        raise ValueError(f"AuroraArgs.storage_type: {args.storage_type!r} is not allowed; expected '' (Standard) or 'aurora-iopt1'")
    if len(args.reader_zones) > MAX_READERS:
        raise ValueError(f"AuroraArgs.reader_zones: {len(args.reader_zones)} given; expected at most {MAX_READERS} readers")
    if args.readers_max and not len(args.reader_zones) <= args.readers_max <= MAX_READERS:
        raise ValueError(f"AuroraArgs.readers_max: {args.readers_max} is not allowed; expected 0 or from"
                         f" len(reader_zones) ({len(args.reader_zones)}) to {MAX_READERS}")
    g = args.global_secondary
    if g is not None:
        if args.instance_class.startswith("db.t"):
            raise ValueError(f"AuroraArgs.instance_class: {args.instance_class!r} is not allowed with global_secondary;"
                             " expected a memory optimized class such as db.r7g.large (an Aurora Global Database requires them)")
        if args.backup_copy_region:
            raise ValueError(f"AuroraArgs.backup_copy_region: {args.backup_copy_region!r} is not allowed with global_secondary;"
                             " expected None (the secondary cluster is the copy in the second region)")
        if len(g.subnet_ids) < 2:
            raise ValueError(f"AuroraArgs.global_secondary.subnet_ids: {len(g.subnet_ids)} given; expected subnets in two zones or more")
    if not 10 <= args.reader_target_cpu_percent <= 90:
        raise ValueError(f"AuroraArgs.reader_target_cpu_percent: {args.reader_target_cpu_percent} is not allowed; expected 10 to 90")


def cluster_restore_arguments(restore_from: str | None) -> dict:
    """A new cluster's name and master user, or the restore that brings the source's (the stack's
    master password is set on it once restored: pulumi-aws modifies the cluster after the restore)."""
    if restore_from is None:
        return {"database_name": DATABASE_NAME, "master_username": DATABASE_USERNAME}
    if restore_from.split(":")[5] == "cluster":
        return {"restore_to_point_in_time": {"source_cluster_identifier": restore_from, "restore_type": "copy-on-write",
                                             "use_latest_restorable_time": True}}
    return {"snapshot_identifier": restore_from}


def cluster_settings(args: AuroraArgs, final_snapshot: str) -> dict:
    """What the primary cluster and a Global Database's secondary share: engine, encryption,
    storage, backups and maintenance windows, protection, log exports; a final snapshot named
    `final_snapshot` when protected."""
    return dict(
        engine=ENGINE,
        engine_version=args.engine_version,
        storage_encrypted=True,
        storage_type=args.storage_type,
        backup_retention_period=args.backup_retention_days,
        preferred_backup_window="03:00-04:00",
        preferred_maintenance_window="sun:04:30-sun:05:30",
        deletion_protection=args.deletion_protection,
        skip_final_snapshot=not args.protect,
        final_snapshot_identifier=final_snapshot if args.protect else None,
        copy_tags_to_snapshot=True,
        enabled_cloudwatch_logs_exports=LOG_EXPORTS_AURORA,
        apply_immediately=False,
    )


def cluster_parameter_group(name: str, args: ParameterGroupArgs, opts: pulumi.ResourceOptions) -> aws.rds.ClusterParameterGroup:
    return aws.rds.ClusterParameterGroup(name, family=args.family, description=args.description,
                                         parameters=settings(args), tags=args.tags, opts=opts)


class TrackingAuroraCluster(pulumi.ComponentResource):
    """Outputs: `endpoint` (writes: the writer, or the proxy), `reader_endpoint` (the UI's reads: the
    cluster's reader endpoint, or the proxy's read-only one), `secret_arn`, `master_secret_arn`."""

    def __init__(self, name: str, args: AuroraArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-infra:database:TrackingAuroraCluster", name, None, opts)
        check_aurora(args)
        family = f"{ENGINE}{args.engine_version.split('.')[0]}"
        cluster_group_args = ParameterGroupArgs(family, args.cluster_parameters, f"{name} cluster: tuned by mlflow-infra", args.tags)
        check_parameter_group(cluster_group_args)
        child = pulumi.ResourceOptions(parent=self)
        keep = pulumi.ResourceOptions(parent=self, protect=args.protect)
        tags = args.tags

        self.key, self.master_secret, self.app_secret = key_and_secrets(name, tags, child, keep)
        subnet_group = aws.rds.SubnetGroup(f"{name}-subnets", subnet_ids=args.subnet_ids, tags=tags, opts=child)
        instance_group_args = ParameterGroupArgs(family, args.instance_parameters, f"{name} writer and readers: tuned by mlflow-infra", tags)
        self.cluster_parameter_group = cluster_parameter_group(f"{name}-cluster", cluster_group_args, child)
        self.instance_parameter_group = parameter_group(f"{name}-instances", instance_group_args, child)
        monitoring_role = enhanced_monitoring_role(name, tags, child)

        self.cluster = aws.rds.Cluster(
            f"{name}-cluster",
            # restored: the database name and master user are the source's
            **cluster_restore_arguments(args.restore_from),
            # the stack's own secret, as on RDS: the migrate step and doctor read it the same way
            master_password=self.master_secret.password,
            db_subnet_group_name=subnet_group.name,
            vpc_security_group_ids=args.security_group_ids,
            db_cluster_parameter_group_name=self.cluster_parameter_group.name,
            kms_key_id=self.key.arn,
            **cluster_settings(args, f"{name}-final"),
            tags={**tags, TARGET_TAG: "cluster"},
            # a Global Database made from this cluster names it later: the input stays unset
            opts=pulumi.ResourceOptions.merge(keep, pulumi.ResourceOptions(ignore_changes=["globalClusterIdentifier"]))
            if args.global_secondary else keep,
        )
        common = dict(
            cluster_identifier=self.cluster.id,
            engine=ENGINE,
            instance_class=args.instance_class,
            db_subnet_group_name=subnet_group.name,
            db_parameter_group_name=self.instance_parameter_group.name,
            publicly_accessible=False,
            performance_insights_enabled=True,
            performance_insights_kms_key_id=self.key.arn,
            performance_insights_retention_period=args.performance_insights_retention_days,
            monitoring_interval=args.monitoring_interval_seconds,
            monitoring_role_arn=monitoring_role.arn,
            auto_minor_version_upgrade=True,
            copy_tags_to_snapshot=True,
            apply_immediately=False,
        )
        # the cluster's first instance becomes its writer: the readers wait for it
        self.writer = aws.rds.ClusterInstance(
            f"{name}-writer", availability_zone=args.writer_zone, promotion_tier=0,
            tags={**tags, TARGET_TAG: "writer"}, **common, opts=keep)
        self.readers = [
            aws.rds.ClusterInstance(
                f"{name}-reader-{i}", availability_zone=zone, promotion_tier=1,
                tags={**tags, TARGET_TAG: f"reader-{i}"}, **common,
                opts=pulumi.ResourceOptions.merge(keep, pulumi.ResourceOptions(depends_on=[self.writer])))
            for i, zone in enumerate(args.reader_zones)]
        self.scaling_target = None
        if args.readers_max > len(args.reader_zones):
            self._reader_autoscaling(name, args, child)
        self.global_cluster = self.secondary = None
        if args.global_secondary is not None:
            self._global_secondary(name, args, args.global_secondary, (cluster_group_args, instance_group_args), common)
        self.backup_plan = None
        if args.backup_copy_region:
            self._copy_backups(name, args, child)

        self.secret_arn = self.app_secret.arn
        self.master_secret_arn = self.master_secret.arn
        self.proxy = None
        self.reader_endpoint = self.cluster.reader_endpoint
        if args.proxy is not None:
            self.proxy = rds_proxy(name, args.proxy, self.secret_arn, self.key.arn, args.subnet_ids,
                                   args.proxy_security_group_ids, tags, child)
            aws.rds.ProxyTarget(f"{name}-proxy", db_proxy_name=self.proxy.name, target_group_name="default",
                                db_cluster_identifier=self.cluster.cluster_identifier,
                                opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[self.writer])))
            if args.reader_zones:  # a read-only proxy endpoint refuses every request while the cluster has no reader
                self.proxy_reader = aws.rds.ProxyEndpoint(
                    f"{name}-proxy-ro", db_proxy_name=self.proxy.name, db_proxy_endpoint_name=f"{name}-ro",
                    vpc_subnet_ids=args.subnet_ids, vpc_security_group_ids=args.proxy_security_group_ids,
                    target_role="READ_ONLY", tags=tags, opts=child)
                self.reader_endpoint = self.proxy_reader.endpoint
        self.endpoint = self.proxy.endpoint if self.proxy is not None else self.cluster.endpoint
        self.replica_endpoints = [self.reader_endpoint] if args.reader_zones or args.readers_max else []
        self.register_outputs({"endpoint": self.endpoint, "reader_endpoint": self.reader_endpoint,
                               "writer_endpoint": self.cluster.endpoint, "secret_arn": self.secret_arn,
                               "master_secret_arn": self.master_secret_arn})

    def _global_secondary(self, name: str, args: AuroraArgs, g: GlobalSecondary,
                          groups: tuple[ParameterGroupArgs, ParameterGroupArgs], common: dict) -> None:
        """The cluster becomes the primary of a Global Database, and a secondary cluster follows it in
        the second region: its own key there, the same parameter groups, private subnets, 5432 from
        that VPC only, one instance the failover promotes. No master user (the secondary takes the
        primary's) and no reader autoscaling (Aurora offers none on a secondary). `groups`: the
        primary's cluster and instance parameter groups, declared again there."""
        tags = args.tags
        there = in_region(self, f"{name}-secondary-region", g.region)
        keep_there = pulumi.ResourceOptions.merge(there, pulumi.ResourceOptions(protect=args.protect))
        self.global_cluster = aws.rds.GlobalCluster(
            f"{name}-global", global_cluster_identifier=f"{name}-global", source_db_cluster_identifier=self.cluster.arn,
            force_destroy=True,  # pulumi-aws: required with source_db_cluster_identifier
            deletion_protection=args.deletion_protection, tags=tags,
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect, depends_on=[self.writer]))
        self.secondary_key = kms_key(f"{name}-secondary-key", f"{name}: the Global Database secondary in {g.region}", tags, there)
        subnets = aws.rds.SubnetGroup(f"{name}-secondary-subnets", subnet_ids=g.subnet_ids, tags=tags, opts=there)
        security_group = aws.ec2.SecurityGroup(
            f"{name}-secondary", vpc_id=g.vpc_id, description="MLflow tracking database (Global Database secondary): 5432 from the VPC",
            ingress=[{"protocol": "tcp", "from_port": DATABASE_PORT, "to_port": DATABASE_PORT, "cidr_blocks": [g.cidr],
                      "description": "servers in this region after a failover"}],
            tags={**tags, "Name": f"{name}-secondary"}, opts=there)
        cluster_group = cluster_parameter_group(f"{name}-secondary-cluster", groups[0], there)
        instance_group = parameter_group(f"{name}-secondary-instances", groups[1], there)
        self.secondary = aws.rds.Cluster(
            f"{name}-secondary",
            global_cluster_identifier=self.global_cluster.id,
            db_subnet_group_name=subnets.name,
            vpc_security_group_ids=[security_group.id],
            db_cluster_parameter_group_name=cluster_group.name,
            kms_key_id=self.secondary_key.arn,
            **cluster_settings(args, f"{name}-secondary-final"),
            tags={**tags, TARGET_TAG: "secondary-cluster"},
            # Aurora sets the replication source; the global cluster upgrades the engine (pulumi-aws)
            opts=pulumi.ResourceOptions.merge(keep_there, pulumi.ResourceOptions(
                depends_on=[self.global_cluster, self.writer], ignore_changes=["replicationSourceIdentifier", "engineVersion"])))
        self.secondary_instance = aws.rds.ClusterInstance(
            f"{name}-secondary-0", promotion_tier=0, tags={**tags, TARGET_TAG: "secondary-0"},
            **{**common, "cluster_identifier": self.secondary.id, "db_subnet_group_name": subnets.name,
               "db_parameter_group_name": instance_group.name, "performance_insights_kms_key_id": self.secondary_key.arn},
            opts=keep_there)

    def _copy_backups(self, name: str, args: AuroraArgs, child: pulumi.ResourceOptions) -> None:
        """AWS Backup: a daily snapshot of the cluster into a vault here (the stack's key) and a copy
        into a vault in the second region (a key of that region), both kept for the retention."""
        there = in_region(self, f"{name}-backup-region", args.backup_copy_region)
        self.backup_key = kms_key(f"{name}-backup-key", f"{name}: backup copies in {args.backup_copy_region}", args.tags, there)
        copies = aws.backup.Vault(f"{name}-backup-copies", kms_key_arn=self.backup_key.arn, tags=args.tags, opts=there)
        vault = aws.backup.Vault(f"{name}-backups", kms_key_arn=self.key.arn, tags=args.tags, opts=child)
        role = aws.iam.Role(f"{name}-backup", assume_role_policy=assume_role_policy("backup.amazonaws.com"),
                            managed_policy_arns=[BACKUP_ROLE_POLICY], tags=args.tags, opts=child)
        keep = {"delete_after": args.backup_retention_days}
        self.backup_plan = aws.backup.Plan(
            f"{name}-backups", rules=[{"rule_name": "daily-to-second-region", "target_vault_name": vault.name,
                                       "schedule": BACKUP_SCHEDULE, "lifecycle": keep,
                                       "copy_actions": [{"destination_vault_arn": copies.arn, "lifecycle": keep}]}],
            tags=args.tags, opts=child)
        aws.backup.Selection(f"{name}-backups", plan_id=self.backup_plan.id, iam_role_arn=role.arn, name=f"{name}-cluster",
                             resources=[self.cluster.arn], opts=child)

    def _reader_autoscaling(self, name: str, args: AuroraArgs, child: pulumi.ResourceOptions) -> None:
        """Application Auto Scaling adds readers (of the writer's class, promotion tier 15) above the
        managed ones while the readers' average CPU is over the target, and removes only its own."""
        after = pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[self.writer, *self.readers]))
        self.scaling_target = aws.appautoscaling.Target(
            f"{name}-readers", service_namespace="rds", scalable_dimension="rds:cluster:ReadReplicaCount",
            resource_id=self.cluster.cluster_identifier.apply(lambda c: f"cluster:{c}"),
            min_capacity=len(args.reader_zones), max_capacity=args.readers_max, tags=args.tags, opts=after)
        aws.appautoscaling.Policy(
            f"{name}-readers-cpu", policy_type="TargetTrackingScaling",
            service_namespace=self.scaling_target.service_namespace, scalable_dimension=self.scaling_target.scalable_dimension,
            resource_id=self.scaling_target.resource_id,
            target_tracking_scaling_policy_configuration={
                "predefined_metric_specification": {"predefined_metric_type": "RDSReaderAverageCPUUtilization"},
                "target_value": float(args.reader_target_cpu_percent),
                "scale_in_cooldown": SCALING_COOLDOWN_S, "scale_out_cooldown": SCALING_COOLDOWN_S},
            opts=child)
