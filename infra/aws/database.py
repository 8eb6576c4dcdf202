"""The tracking database (reference text fixes 1-3): the plan's class, gp3 storage and IOPS,
tuned parameter groups with each parameter's apply method, read replicas, and RDS Proxy when the
connection budget needs it. Encrypted, private, monitored, and protected in production."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from ..planning.plan import DatabasePlan
from .rendering import DB_NAME, DB_USERNAME

LOG_EXPORTS = ["postgresql", "upgrade"]  # slow statements (log_min_duration_statement) reach CloudWatch


@dataclass
class DatabaseArgs:
    database: DatabasePlan
    subnet_ids: pulumi.Input[list[str]]
    security_group_ids: list[pulumi.Input[str]]
    availability_zones: list[str]          # the training zones: the primary goes in the first
    production: bool
    rds_proxy: bool = False
    proxy_security_group_ids: list[pulumi.Input[str]] = field(default_factory=list)
    proxy_max_connections_percent: int | None = None
    proxy_max_idle_percent: int = 50
    tags: dict[str, str] = field(default_factory=dict)


def parameter_family(engine_version: str) -> str:
    return f"postgres{engine_version.split('.')[0]}"


def group_parameters(parameters) -> list[dict]:
    return [{"name": p.name, "value": p.value, "apply_method": p.apply_method} for p in parameters]


class TrackingDatabase(pulumi.ComponentResource):
    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-infra:database:TrackingDatabase", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        db, tags = args.database, args.tags
        # a production database is never replaced or deleted by an accidental change
        keep = pulumi.ResourceOptions(parent=self, protect=args.production)

        self.key = aws.kms.Key(f"{name}-key", description=f"{name}: RDS storage, Performance Insights and the master secret",
                               enable_key_rotation=True, deletion_window_in_days=30, tags=tags, opts=child)
        subnet_group = aws.rds.SubnetGroup(f"{name}-subnets", subnet_ids=args.subnet_ids, tags=tags, opts=child)
        family = parameter_family(db.engine_version)
        self.primary_parameter_group = aws.rds.ParameterGroup(
            f"{name}-primary", family=family, description=f"{name} primary: tuned by mlflow-infra",
            parameters=group_parameters(db.primary_parameters), tags=tags, opts=child)
        monitoring_role = aws.iam.Role(
            f"{name}-monitoring",
            assume_role_policy=json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "monitoring.rds.amazonaws.com"}}]}),
            managed_policy_arns=["arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"],
            tags=tags, opts=child)

        storage = db.storage
        common = dict(
            instance_class=db.instance.instance_class,
            vpc_security_group_ids=args.security_group_ids,
            publicly_accessible=False,
            storage_encrypted=True,
            kms_key_id=self.key.arn,
            performance_insights_enabled=True,
            performance_insights_kms_key_id=self.key.arn,
            performance_insights_retention_period=db.performance_insights_retention_days,
            monitoring_interval=db.monitoring_interval_seconds,
            monitoring_role_arn=monitoring_role.arn,
            enabled_cloudwatch_logs_exports=LOG_EXPORTS,
            auto_minor_version_upgrade=True,
            copy_tags_to_snapshot=True,
            deletion_protection=db.deletion_protection.value,
            # parameter and class changes wait for the maintenance window instead of restarting now
            apply_immediately=False,
            tags=tags,
        )
        self.primary = aws.rds.Instance(
            f"{name}-primary",
            engine="postgres",
            engine_version=db.engine_version,
            db_name=DB_NAME,
            username=DB_USERNAME,
            manage_master_user_password=True,
            master_user_secret_kms_key_id=self.key.arn,
            db_subnet_group_name=subnet_group.name,
            parameter_group_name=self.primary_parameter_group.name,
            multi_az=db.multi_az.value,
            availability_zone=None if db.multi_az.value else args.availability_zones[0],
            storage_type="gp3",
            allocated_storage=storage.allocated_gib,
            max_allocated_storage=storage.max_allocated_gib,
            iops=storage.iops if storage.iops_provisioned else None,
            storage_throughput=storage.throughput_mibps if storage.iops_provisioned else None,
            backup_retention_period=db.backup_retention_days.value,
            backup_window="03:00-04:00",
            maintenance_window="sun:04:30-sun:05:30",
            skip_final_snapshot=not args.production,
            final_snapshot_identifier=f"{name}-final" if args.production else None,
            **common,
            opts=keep,
        )
        self.secret_arn = self.primary.master_user_secrets.apply(lambda secrets: secrets[0].secret_arn if secrets else "")

        self.replicas: list[aws.rds.Instance] = []
        if db.replicas.count:
            self.replica_parameter_group = aws.rds.ParameterGroup(
                f"{name}-replica", family=family, description=f"{name} read replicas: tuned by mlflow-infra",
                parameters=group_parameters(db.replica_parameters), tags=tags, opts=child)
            for i in range(db.replicas.count):
                self.replicas.append(aws.rds.Instance(
                    f"{name}-replica-{i}",
                    replicate_source_db=self.primary.identifier,
                    parameter_group_name=self.replica_parameter_group.name,
                    # spread over the zones: a zone outage leaves the UI a replica to read from
                    availability_zone=args.availability_zones[(i + 1) % len(args.availability_zones)],
                    storage_type="gp3",
                    iops=storage.iops if storage.iops_provisioned else None,
                    storage_throughput=storage.throughput_mibps if storage.iops_provisioned else None,
                    max_allocated_storage=storage.max_allocated_gib,
                    backup_retention_period=0,
                    skip_final_snapshot=True,
                    **common,
                    opts=keep,
                ))

        self.proxy = None
        if args.rds_proxy:
            self._proxy(name, args, child)
        self.endpoint = self.proxy.endpoint if self.proxy is not None else self.primary.address
        self.replica_endpoints = [r.address for r in self.replicas]
        self.register_outputs({"endpoint": self.endpoint, "primary_address": self.primary.address,
                               "replica_addresses": self.replica_endpoints, "secret_arn": self.secret_arn})

    def _proxy(self, name: str, args: DatabaseArgs, child) -> None:
        """RDS Proxy multiplexes the fleet's pools onto the database's max_connections (TLS only)."""
        role = aws.iam.Role(
            f"{name}-proxy",
            assume_role_policy=json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"Service": "rds.amazonaws.com"}}]}),
            tags=args.tags, opts=child)
        aws.iam.RolePolicy(
            f"{name}-proxy-secret", role=role.id,
            policy=pulumi.Output.all(self.secret_arn, self.key.arn).apply(lambda v: json.dumps({
                "Version": "2012-10-17", "Statement": [
                    {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": v[0]},
                    {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": v[1]}]})),
            opts=child)
        self.proxy = aws.rds.Proxy(
            f"{name}-proxy", engine_family="POSTGRESQL", require_tls=True, role_arn=role.arn,
            idle_client_timeout=1800, vpc_subnet_ids=args.subnet_ids,
            vpc_security_group_ids=args.proxy_security_group_ids,
            auths=[{"auth_scheme": "SECRETS", "secret_arn": self.secret_arn, "iam_auth": "DISABLED",
                    "client_password_auth_type": "POSTGRES_SCRAM_SHA_256"}],
            tags=args.tags, opts=child)
        aws.rds.ProxyDefaultTargetGroup(
            f"{name}-proxy", db_proxy_name=self.proxy.name,
            connection_pool_config={"max_connections_percent": args.proxy_max_connections_percent or 90,
                                    "max_idle_connections_percent": args.proxy_max_idle_percent},
            opts=child)
        aws.rds.ProxyTarget(f"{name}-proxy", db_proxy_name=self.proxy.name, target_group_name="default",
                            db_instance_identifier=self.primary.identifier, opts=child)
