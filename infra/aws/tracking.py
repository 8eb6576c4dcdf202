"""MlflowTracking: the whole platform an environment file describes, composed from the child
components (network, database, artifacts, service, monitoring), each usable on its own."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi

from ..planning.plan import CapacityPlan, plan as make_plan
from ..spec import EnvironmentSpec, SpecInvalid, load_environment
from .artifacts import ArtifactsArgs, ArtifactStore
from .aurora import AuroraArgs, GlobalSecondary, TrackingAuroraCluster
from .database import DatabaseArgs, ProxySettings, TrackingDatabase
from .monitoring import MonitoringArgs, TrackingMonitoring, target_dimensions
from .network import NetworkArgs, TrackingNetwork
from .parameter_group import ParameterSetting
from .service import FleetResources, ServiceArgs, TrackingService


@dataclass
class MlflowTrackingArgs:
    """An environment (validated spec) and, optionally, its plan; the plan is computed if absent."""

    spec: EnvironmentSpec
    plan: CapacityPlan | None = None

    @classmethod
    def from_file(cls, path: str | Path) -> "MlflowTrackingArgs":
        """Load and validate an environment file; a bad file raises pulumi.RunError with one line per problem."""
        try:
            return cls(spec=load_environment(path, Path(path).parent))
        except SpecInvalid as exc:
            raise pulumi.RunError(str(exc)) from None


def network_args(spec: EnvironmentSpec, plan: CapacityPlan) -> NetworkArgs:
    p, pl = spec.placement, plan.placement
    training = p.training_vpc
    common = dict(region=plan.region, availability_zones=list(pl.availability_zones), nat_gateway=pl.nat_gateway,
                  interface_endpoint_services=list(pl.interface_endpoint_services),
                  internet_facing_ui=spec.tracking.ui.internet_facing, public_subnets=spec.tracking.ui.internet_facing,
                  tracking_port=plan.tracking.api.server.port, ready_port=plan.tracking.ui.server.ready_port, tags=plan.tags)
    training_fields = dict(training_vpc_id=training.vpc_id, training_cidr=training.cidr,
                           training_subnet_ids=[s.id for s in training.subnets],
                           training_route_table_ids=list(training.route_table_ids)) if training else {}
    if p.tracking_vpc == "training":
        return NetworkArgs(**common, **training_fields)
    return NetworkArgs(**common, **training_fields, new_vpc_cidr=p.new_vpc.cidr,
                       private_subnet_cidrs=list(pl.private_subnet_cidrs), public_subnet_cidrs=list(pl.public_subnet_cidrs))


def shared_database_args(plan: CapacityPlan, network: TrackingNetwork) -> dict:
    """What DatabaseArgs and AuroraArgs take alike from the plan: placement, class and version,
    backups, protection, monitoring, the proxy, the source restored, tags."""
    db, proxy = plan.database, plan.connection_budget.proxy
    return dict(
        subnet_ids=network.private_subnet_ids, security_group_ids=[network.db_sg.id],
        instance_class=db.instance.instance_class, engine_version=db.engine_version,
        backup_retention_days=db.backup_retention_days.value, deletion_protection=db.deletion_protection.value,
        protect=plan.tier == "production", monitoring_interval_seconds=db.monitoring_interval_seconds,
        performance_insights_retention_days=db.performance_insights_retention_days,
        proxy=ProxySettings(proxy.max_connections_percent, proxy.max_idle_connections_percent,
                            proxy.idle_client_timeout_seconds, proxy.require_tls) if proxy else None,
        proxy_security_group_ids=[network.proxy_sg.id], restore_from=db.restore.arn, tags=plan.tags)


def backups_region(plan: CapacityPlan) -> str | None:
    """The second region the backups go to (disaster_recovery backups), else None."""
    return plan.recovery.secondary_region if plan.recovery.mode == "backups" else None


def database_args(plan: CapacityPlan, network: TrackingNetwork) -> DatabaseArgs:
    db, storage = plan.database, plan.database.storage
    return DatabaseArgs(
        **shared_database_args(plan, network),
        allocated_storage_gib=storage.allocated_gib, max_allocated_storage_gib=storage.max_allocated_gib,
        iops=storage.iops if storage.iops_provisioned else None,
        storage_throughput_mibps=storage.throughput_mibps if storage.iops_provisioned else None,
        multi_az=db.multi_az.value, primary_zone=plan.placement.primary_zone, replica_zones=list(plan.placement.replica_zones),
        primary_parameters=ParameterSetting.from_plan(db.primary_parameters),
        replica_parameters=ParameterSetting.from_plan(db.replica_parameters),
        backup_replication_region=backups_region(plan), restore_time=db.restore.time)


def aurora_args(plan: CapacityPlan, network: TrackingNetwork, spec: EnvironmentSpec) -> AuroraArgs:
    db, engine = plan.database, plan.database.engine
    placed = spec.database.secondary_placement
    secondary = (GlobalSecondary(plan.recovery.secondary_region, placed.vpc_id, placed.cidr, [s.id for s in placed.subnets])
                 if plan.recovery.mode == "global" and placed is not None and plan.recovery.secondary_region else None)
    return AuroraArgs(
        **shared_database_args(plan, network), storage_type=engine.aurora_storage_type,
        writer_zone=plan.placement.training_availability_zones[0] if plan.placement.training_availability_zones else None,
        reader_zones=list(plan.placement.replica_zones), readers_max=engine.readers_max,
        cluster_parameters=ParameterSetting.from_plan(db.cluster_parameters),
        instance_parameters=ParameterSetting.from_plan(db.primary_parameters),
        backup_copy_region=backups_region(plan), global_secondary=secondary)


class MlflowTracking(pulumi.ComponentResource):
    """Provision the tracking platform for one environment.

    Outputs: `tracking_uri` (the API for training jobs), `ui_url`, `primary_endpoint`,
    `replica_endpoints`, `client_security_group_id` (attach it to training compute),
    `artifact_bucket`, `image_repository` (push the Dockerfile's image here), `client_environment`
    (what training jobs set: the plan's client_environment and MLFLOW_TRACKING_URI), `plan_summary`,
    `monthly_cost_usd`.
    """

    def __init__(self, name: str, args: MlflowTrackingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-infra:index:MlflowTracking", name, None, opts)
        spec = args.spec
        plan = args.plan or make_plan(spec)
        self.plan = plan
        child = pulumi.ResourceOptions(parent=self)
        tags = plan.tags

        self.network = TrackingNetwork(f"{name}-net", network_args(spec, plan), opts=child)
        aurora = plan.database.engine.engine == "aurora"
        if aurora:
            self.database = TrackingAuroraCluster(f"{name}-db", aurora_args(plan, self.network, spec), opts=child)
            writer, writer_address = self.database.writer, self.database.cluster.endpoint
            snapshot_arn, cluster_id = self.database.cluster.arn, self.database.cluster.cluster_identifier
            reader_ids = []  # the readers' lag is the cluster's alarm (autoscaled readers included)
        else:
            self.database = TrackingDatabase(f"{name}-db", database_args(plan, self.network), opts=child)
            writer, writer_address = self.database.primary, self.database.primary.address
            snapshot_arn, cluster_id = self.database.primary.arn, None
            reader_ids = [r.identifier for r in self.database.replicas]
        a = plan.artifacts
        self.artifacts = ArtifactStore(f"{name}-artifacts", ArtifactsArgs(
            expire_after_days=a.expire_after_days.value, noncurrent_version_expire_days=a.noncurrent_version_expire_days,
            bucket_name=a.bucket_name, force_destroy=a.force_destroy, replica_region=plan.recovery.secondary_region,
            tags=tags), opts=child)
        self.service = TrackingService(f"{name}-svc", ServiceArgs(
            tiers=list(plan.tracking.tiers), compute=plan.tracking.compute, mlflow_version=plan.tracking.mlflow_version,
            environment=plan.environment, vpc_id=self.network.vpc_id, private_subnet_ids=self.network.private_subnet_ids,
            public_subnet_ids=self.network.public_subnet_ids, tasks_security_group_id=self.network.tasks_sg.id,
            api_lb_security_group_id=self.network.api_lb_sg.id, ui_lb_security_group_id=self.network.ui_lb_sg.id,
            db_endpoint=self.database.endpoint, replica_endpoints=self.database.replica_endpoints,
            secret_arn=self.database.secret_arn, master_secret_arn=self.database.master_secret_arn,
            db_primary_address=writer_address, db_instance_identifier=writer.identifier,
            db_instance_arn=snapshot_arn, db_cluster_identifier=cluster_id, kms_key_arn=self.database.key.arn,
            bucket_arn=self.artifacts.bucket.arn, artifacts_destination=self.artifacts.destination,
            image=spec.tracking.image, ui_internet_facing=spec.tracking.ui.internet_facing,
            ui_certificate_arn=spec.tracking.ui.certificate_arn,
            production=plan.tier == "production", tags=tags), opts=child)
        fleets = self.service.fleets
        self.monitoring = TrackingMonitoring(f"{name}-mon", MonitoringArgs(
            alarms=list(plan.alarms), region=plan.region, email=list(spec.alarms.email), tags=tags,
            dimensions=target_dimensions(
                writer.identifier, reader_ids,
                {role: f.load_balancer.arn_suffix for role, f in fleets.items()},
                {name: dims for f in fleets.values() for name, dims in fleet_dimensions(self.service, f).items()},
                {role: f.target_group.arn_suffix for role, f in fleets.items()}, cluster=cluster_id)), opts=child)

        self.tracking_uri = self.service.api_url
        self.ui_url = self.service.ui_url
        self.primary_endpoint = writer_address
        self.replica_endpoints = pulumi.Output.all(*self.database.replica_endpoints)
        self.client_security_group_id = self.network.client_sg.id
        self.artifact_bucket = self.artifacts.bucket.bucket
        self.image_repository = self.service.repository.repository_url
        self.plan_summary = plan_summary(plan)
        self.client_environment = self.tracking_uri.apply(lambda url: {**plan.client_environment, "MLFLOW_TRACKING_URI": url})
        self.monthly_cost_usd = plan.cost.total_monthly_usd
        self.register_outputs({
            "tracking_uri": self.tracking_uri, "ui_url": self.ui_url, "primary_endpoint": self.primary_endpoint,
            "replica_endpoints": self.replica_endpoints, "client_security_group_id": self.client_security_group_id,
            "artifact_bucket": self.artifact_bucket, "image_repository": self.image_repository, "plan_summary": self.plan_summary,
            "client_environment": self.client_environment,
            "monthly_cost_usd": self.monthly_cost_usd,
        })


def fleet_dimensions(service: TrackingService, fleet: FleetResources) -> dict[str, dict]:
    """CloudWatch dimensions of each service's CPU (the ECS service, or the Auto Scaling group), by
    service: `api`, `ui`, and `ui-2`, `ui-3`, ... for the UI services of further replicas."""
    if fleet.services:
        return {n: {"ClusterName": service.cluster.name, "ServiceName": s.name} for n, s in zip(fleet.service_names, fleet.services)}
    return {n: {"AutoScalingGroupName": g.name} for n, g in zip(fleet.service_names, fleet.autoscaling_groups)}


def plan_summary(plan: CapacityPlan) -> dict:
    db, t, b = plan.database, plan.tracking, plan.connection_budget
    e = db.engine
    aurora = e.engine == "aurora"
    return {
        "environment": plan.environment, "tier": plan.tier, "engine": e.engine,
        "database": (f"Aurora {db.instance.instance_class} writer + {e.readers_min}-{e.readers_max} reader(s)" if aurora else
                     f"{db.instance.instance_class}{' Multi-AZ' if db.multi_az.value else ''} + {db.replicas.count} replica(s)"),
        "storage": (f"Aurora {'I/O-Optimized' if e.aurora_storage_type else 'Standard'}, grows by itself" if aurora else
                    f"{db.storage.allocated_gib} GiB gp3 (autoscaling to {db.storage.max_allocated_gib}), {db.storage.iops} IOPS"),
        "api": f"{t.api.min_count}-{t.api.max_count} x {t.api.vcpu:g} vCPU / {t.api.memory_gib:g} GiB, {t.api.workers} workers",
        "ui": f"{t.ui.min_count}-{t.ui.max_count} x {t.ui.vcpu:g} vCPU / {t.ui.memory_gib:g} GiB, {t.ui.workers} workers",
        "max_connections": b.max_connections, "rds_proxy": b.rds_proxy,
        "monthly_cost_usd": plan.cost.total_monthly_usd,
    }
