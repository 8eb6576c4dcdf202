"""The tracking database (README bottlenecks 1-3: instance size, reads against writes, tuning): the
plan's class, gp3 storage and IOPS, tuned parameter groups with each parameter's apply method, read
replicas, and RDS Proxy when the connection budget needs it. Encrypted, private, monitored, and
protected in production."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from .credentials import DatabaseSecret
from .iam import assume_role_policy, secret_read_policy
from .keys import in_region, kms_key
from .parameter_group import ParameterGroupArgs, ParameterSetting, parameter_group
from ..endpoints import APP_DATABASE_USERNAME, DATABASE_NAME, DATABASE_USERNAME, MASTER_SECRET_TARGET, TARGET_TAG

LOG_EXPORTS = ["postgresql", "upgrade"]  # slow statements (log_min_duration_statement) reach CloudWatch
LOG_EXPORTS_AURORA = ["postgresql"]      # Aurora PostgreSQL exports instance | postgresql | iam-db-auth-error: no "upgrade"


@dataclass(frozen=True)
class ProxySettings:
    """RDS Proxy in front of the primary (the plan's `connection_budget.proxy`)."""

    max_connections_percent: int = 90
    """Share of the database's max_connections the proxy may open."""
    max_idle_connections_percent: int = 50
    """Share it keeps open while idle, so a burst finds warm connections."""
    idle_client_timeout_seconds: int = 1_800
    """A client connection idle this long is closed; pools should recycle theirs before."""
    require_tls: bool = True


@dataclass
class DatabaseArgs:
    """The tracking database: plain values, each with a safe default where one exists.
    `MlflowTracking` fills them from the plan; alone, pass what your environment needs."""

    subnet_ids: pulumi.Input[list[str]]
    """Private subnets in at least two zones (an RDS subnet group needs two)."""
    security_group_ids: list[pulumi.Input[str]]
    """Security groups of the instances: allow 5432 from the servers (and the proxy) only."""
    instance_class: str = "db.r7g.large"
    engine_version: str = "17"
    allocated_storage_gib: int = 20
    max_allocated_storage_gib: int = 100
    """Storage autoscaling ceiling (gp3)."""
    iops: int | None = None
    """Provisioned gp3 IOPS; None keeps the gp3 baseline (only 400 GiB and up may provision more)."""
    storage_throughput_mibps: int | None = None
    multi_az: bool = True
    primary_zone: str | None = None
    """Single-AZ only: the primary's zone (put it where the training compute runs)."""
    replica_zones: list[str] = field(default_factory=list)
    """One read replica per entry, in that zone."""
    primary_parameters: list[ParameterSetting] = field(default_factory=list)
    replica_parameters: list[ParameterSetting] = field(default_factory=list)
    backup_retention_days: int = 7
    deletion_protection: bool = True
    protect: bool = True
    """Pulumi's protect: a change that would replace or delete the database fails instead."""
    monitoring_interval_seconds: int = 60
    performance_insights_retention_days: int = 7
    proxy: ProxySettings | None = None
    proxy_security_group_ids: list[pulumi.Input[str]] = field(default_factory=list)
    restore_from: str | None = None
    """Start from replicated automated backups (an `auto-backup` ARN: a point-in-time restore to
    `restore_time`, else the latest restorable time) or a DB snapshot ARN instead of an empty database."""
    restore_time: str | None = None
    backup_replication_region: str | None = None
    """A second region RDS replicates the primary's automated backups (snapshots and transaction logs)
    to, for a point-in-time restore there after losing this region; None: none."""
    tags: dict[str, str] = field(default_factory=dict)


class TrackingDatabase(pulumi.ComponentResource):
    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-infra:database:TrackingDatabase", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = args.tags
        if not args.multi_az and args.primary_zone is None:
            raise ValueError("DatabaseArgs.primary_zone: None is not allowed with multi_az false; expected the training compute's zone")
        keep = pulumi.ResourceOptions(parent=self, protect=args.protect)

        self.key, self.master_secret, self.app_secret = key_and_secrets(name, tags, child, keep)
        subnet_group = aws.rds.SubnetGroup(f"{name}-subnets", subnet_ids=args.subnet_ids, tags=tags, opts=child)
        family = f"postgres{args.engine_version.split('.')[0]}"
        self.primary_parameter_group = parameter_group(f"{name}-primary", ParameterGroupArgs(
            family, args.primary_parameters, f"{name} primary: tuned by mlflow-infra", tags), child)
        monitoring_role = enhanced_monitoring_role(name, tags, child)

        common = dict(
            instance_class=args.instance_class,
            vpc_security_group_ids=args.security_group_ids,
            publicly_accessible=False,
            storage_encrypted=True,
            performance_insights_enabled=True,
            performance_insights_kms_key_id=self.key.arn,
            performance_insights_retention_period=args.performance_insights_retention_days,
            monitoring_interval=args.monitoring_interval_seconds,
            monitoring_role_arn=monitoring_role.arn,
            enabled_cloudwatch_logs_exports=LOG_EXPORTS,
            auto_minor_version_upgrade=True,
            copy_tags_to_snapshot=True,
            deletion_protection=args.deletion_protection,
            # parameter and class changes wait for the maintenance window instead of restarting now
            apply_immediately=False,
        )
        self.primary = aws.rds.Instance(
            f"{name}-primary",
            engine="postgres",
            engine_version=args.engine_version,
            **restore_arguments(name, args),
            password=self.master_secret.password,
            db_subnet_group_name=subnet_group.name,
            parameter_group_name=self.primary_parameter_group.name,
            multi_az=args.multi_az,
            availability_zone=None if args.multi_az else args.primary_zone,
            storage_type="gp3",
            allocated_storage=args.allocated_storage_gib,
            max_allocated_storage=args.max_allocated_storage_gib,
            iops=args.iops,
            storage_throughput=args.storage_throughput_mibps,
            backup_retention_period=args.backup_retention_days,
            backup_window="03:00-04:00",
            maintenance_window="sun:04:30-sun:05:30",
            # a protected database leaves a final snapshot if it is ever deleted on purpose
            skip_final_snapshot=not args.protect,
            final_snapshot_identifier=f"{name}-final" if args.protect else None,
            # replicas in the same region are encrypted with the source's key and must not name one
            kms_key_id=self.key.arn,
            tags={**tags, TARGET_TAG: "primary"},
            **common,
            opts=keep,
        )
        self.secret_arn = self.app_secret.arn
        """The servers' secret (the application role): ECS injects it, EC2 reads it, RDS Proxy authenticates it."""
        self.master_secret_arn = self.master_secret.arn
        """The master user's secret: only the migrate step reads it."""

        self.replicas: list[aws.rds.Instance] = []
        self.replica_parameter_group = None
        if args.replica_zones:
            self.replica_parameter_group = parameter_group(f"{name}-replica", ParameterGroupArgs(
                family, args.replica_parameters or args.primary_parameters, f"{name} read replicas: tuned by mlflow-infra", tags), child)
            for i, zone in enumerate(args.replica_zones):
                self.replicas.append(aws.rds.Instance(
                    f"{name}-replica-{i}",
                    replicate_source_db=self.primary.identifier,
                    parameter_group_name=self.replica_parameter_group.name,
                    availability_zone=zone,
                    storage_type="gp3",
                    iops=args.iops,
                    storage_throughput=args.storage_throughput_mibps,
                    max_allocated_storage=args.max_allocated_storage_gib,
                    backup_retention_period=0,
                    skip_final_snapshot=True,
                    tags={**tags, TARGET_TAG: f"replica-{i}"},
                    **common,
                    opts=keep,
                ))

        self.backup_replication = None
        if args.backup_replication_region:
            self._replicate_backups(name, args)
        self.proxy = None
        if args.proxy is not None:
            self._proxy(name, args, args.proxy, child)
        self.endpoint = self.proxy.endpoint if self.proxy is not None else self.primary.address
        self.replica_endpoints = [r.address for r in self.replicas]
        self.register_outputs({"endpoint": self.endpoint, "primary_address": self.primary.address,
                               "replica_addresses": self.replica_endpoints, "secret_arn": self.secret_arn,
                               "master_secret_arn": self.master_secret_arn})

    def _replicate_backups(self, name: str, args: DatabaseArgs) -> None:
        """Declared in the second region (the API call is made there) with a key of that region: an
        encrypted source's backups are re-encrypted with it (docs/aws-constraints.md)."""
        there = in_region(self, f"{name}-backup-region", args.backup_replication_region)
        self.backup_key = kms_key(f"{name}-backup-key", f"{name}: replicated backups in {args.backup_replication_region}",
                                  args.tags, there)
        self.backup_replication = aws.rds.InstanceAutomatedBackupsReplication(
            f"{name}-backups", source_db_instance_arn=self.primary.arn, kms_key_id=self.backup_key.arn,
            retention_period=args.backup_retention_days, opts=there)

    def _proxy(self, name: str, args: DatabaseArgs, proxy: ProxySettings, child) -> None:
        """RDS Proxy multiplexes the fleet's pools onto the database's max_connections (TLS only). It
        authenticates the application role with the app secret; the migrate step bypasses it and logs
        in to the primary as the master user, whom the proxy does not know."""
        self.proxy = rds_proxy(name, proxy, self.secret_arn, self.key.arn, args.subnet_ids, args.proxy_security_group_ids,
                               args.tags, child)
        aws.rds.ProxyTarget(f"{name}-proxy", db_proxy_name=self.proxy.name, target_group_name="default",
                            db_instance_identifier=self.primary.identifier, opts=child)


def restore_arguments(name: str, args: DatabaseArgs) -> dict:
    """A new database, or one restored: the name and master user come from the source then, and the
    stack's password is set on it once restored; a point-in-time restore needs the new instance's
    identifier (pulumi-aws `rds.Instance.restore_to_point_in_time`)."""
    if args.restore_from is None:
        return {"db_name": DATABASE_NAME, "username": DATABASE_USERNAME}
    if ":auto-backup:" in args.restore_from:
        point = {"source_db_instance_automated_backups_arn": args.restore_from,
                 **({"restore_time": args.restore_time} if args.restore_time else {"use_latest_restorable_time": True})}
        return {"identifier": f"{name}-primary", "restore_to_point_in_time": point}
    return {"snapshot_identifier": args.restore_from}


def key_and_secrets(name: str, tags: dict[str, str], child: pulumi.ResourceOptions, keep: pulumi.ResourceOptions):
    """The database's KMS key (storage, Performance Insights, secrets) and the stack's own credentials
    (see credentials.py): the master user's secret, tagged for doctor, and the application role's."""
    key = kms_key(f"{name}-key", f"{name}: RDS storage, Performance Insights and the master secret", tags, child)
    # a replica cannot be made of an instance whose master password RDS manages, and RDS would
    # rotate that one under running tasks
    master = DatabaseSecret(
        f"{name}-master", DATABASE_USERNAME,
        f"{name}: PostgreSQL master user (JSON username, password); read by the migrate step and mlflow-infra doctor",
        key.arn, {**tags, TARGET_TAG: MASTER_SECRET_TARGET}, keep)
    app = DatabaseSecret(
        f"{name}-app", APP_DATABASE_USERNAME,
        f"{name}: PostgreSQL application role of the MLflow servers (JSON username, password);"
        " the migrate step sets the role's password to this value",
        key.arn, tags, keep)
    return key, master, app


def enhanced_monitoring_role(name: str, tags: dict[str, str], child: pulumi.ResourceOptions) -> aws.iam.Role:
    return aws.iam.Role(
        f"{name}-monitoring",
        assume_role_policy=assume_role_policy("monitoring.rds.amazonaws.com"),
        managed_policy_arns=["arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"],
        tags=tags, opts=child)


def rds_proxy(name: str, proxy: ProxySettings, secret_arn, key_arn, subnet_ids, security_group_ids, tags: dict[str, str],
              child: pulumi.ResourceOptions) -> aws.rds.Proxy:
    """The proxy, its role reading the app secret, and its default target group's pool settings;
    the caller registers the target (an instance, or an Aurora cluster)."""
    role = aws.iam.Role(f"{name}-proxy", assume_role_policy=assume_role_policy("rds.amazonaws.com"), tags=tags, opts=child)
    aws.iam.RolePolicy(f"{name}-proxy-secret", role=role.id, policy=secret_read_policy(secret_arn, key_arn), opts=child)
    created = aws.rds.Proxy(
        f"{name}-proxy", engine_family="POSTGRESQL", require_tls=proxy.require_tls, role_arn=role.arn,
        idle_client_timeout=proxy.idle_client_timeout_seconds, vpc_subnet_ids=subnet_ids,
        vpc_security_group_ids=security_group_ids,
        auths=[{"auth_scheme": "SECRETS", "secret_arn": secret_arn, "iam_auth": "DISABLED",
                "client_password_auth_type": "POSTGRES_SCRAM_SHA_256"}],
        tags=tags, opts=child)
    aws.rds.ProxyDefaultTargetGroup(
        f"{name}-proxy", db_proxy_name=created.name,
        connection_pool_config={"max_connections_percent": proxy.max_connections_percent,
                                "max_idle_connections_percent": proxy.max_idle_connections_percent},
        opts=child)
    return created
