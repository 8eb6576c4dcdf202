"""MlflowTracking: the whole platform an environment file describes, composed from the child
components (network, database, artifacts, service, monitoring), each usable on its own."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi

from ..spec import SpecInvalid
from ..planning.plan import CapacityPlan, plan as make_plan
from ..spec import EnvironmentSpec, load_environment
from .artifacts import ArtifactsArgs, ArtifactStore
from .database import DatabaseArgs, TrackingDatabase
from .monitoring import MonitoringArgs, TrackingMonitoring
from .network import NetworkArgs, TrackingNetwork
from .service import ServiceArgs, TrackingService


@dataclass
class MlflowTrackingArgs:
    """An environment (validated spec) and, optionally, its plan; the plan is computed if absent."""

    spec: EnvironmentSpec
    plan: CapacityPlan | None = None
    # what EC2 instances pip-install for the entrypoint (a wheel URL or "mlflow-infra==X")
    entrypoint_package: str = "mlflow-infra"

    @classmethod
    def from_file(cls, path: str | Path) -> "MlflowTrackingArgs":
        """Load and validate an environment file; a bad file raises pulumi.RunError with one line per problem."""
        try:
            return cls(spec=load_environment(path, Path(path).parent))
        except SpecInvalid as exc:
            raise pulumi.RunError(str(exc)) from None


def network_args(spec: EnvironmentSpec) -> NetworkArgs:
    p = spec.placement
    training = p.training_vpc
    common = dict(region=spec.region, availability_zones=list(spec.availability_zones), nat_gateway=spec.nat_gateway,
                  internet_facing_ui=spec.tracking.ui.internet_facing, public_subnets=spec.tracking.ui.internet_facing,
                  tags=spec.resource_tags)
    training_fields = dict(training_vpc_id=training.vpc_id, training_cidr=training.cidr,
                           training_subnet_ids=[s.id for s in training.subnets],
                           training_route_table_ids=list(training.route_table_ids)) if training else {}
    if p.tracking_vpc == "training":
        return NetworkArgs(**common, **training_fields)
    return NetworkArgs(**common, **training_fields, new_vpc_cidr=p.new_vpc.cidr)


class MlflowTracking(pulumi.ComponentResource):
    """Provision the tracking platform for one environment.

    Outputs: `tracking_uri` (the API for training jobs), `ui_url`, `primary_endpoint`,
    `replica_endpoints`, `client_security_group_id` (attach it to training compute),
    `artifact_bucket`, `image_repository` (push the Dockerfile's image here), `plan_summary`,
    `monthly_cost_usd`.
    """

    def __init__(self, name: str, args: MlflowTrackingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlflow-infra:index:MlflowTracking", name, None, opts)
        spec = args.spec
        plan = args.plan or make_plan(spec)
        self.plan = plan
        child = pulumi.ResourceOptions(parent=self)
        tags = spec.resource_tags

        self.network = TrackingNetwork(f"{name}-net", network_args(spec), opts=child)
        budget = plan.connection_budget
        self.database = TrackingDatabase(f"{name}-db", DatabaseArgs(
            database=plan.database, subnet_ids=self.network.private_subnet_ids,
            security_group_ids=[self.network.db_sg.id], availability_zones=list(plan.placement.training_availability_zones),
            production=spec.production, rds_proxy=budget.rds_proxy, proxy_security_group_ids=[self.network.proxy_sg.id],
            proxy_max_connections_percent=budget.proxy_max_connections_percent, tags=tags), opts=child)
        self.artifacts = ArtifactStore(f"{name}-artifacts", ArtifactsArgs(
            expire_after_days=spec.artifacts.expire_after_days or spec.workload.retention_days,
            noncurrent_version_expire_days=spec.artifacts.noncurrent_version_expire_days,
            bucket_name=spec.artifacts.bucket_name, force_destroy=not spec.production, tags=tags), opts=child)
        self.service = TrackingService(f"{name}-svc", ServiceArgs(
            plan=plan, vpc_id=self.network.vpc_id, private_subnet_ids=self.network.private_subnet_ids,
            public_subnet_ids=self.network.public_subnet_ids, tasks_security_group_id=self.network.tasks_sg.id,
            api_lb_security_group_id=self.network.api_lb_sg.id, ui_lb_security_group_id=self.network.ui_lb_sg.id,
            db_endpoint=self.database.endpoint, replica_endpoints=self.database.replica_endpoints,
            secret_arn=self.database.secret_arn, kms_key_arn=self.database.key.arn,
            bucket_arn=self.artifacts.bucket.arn, artifacts_destination=self.artifacts.destination,
            image=spec.tracking.image, ui_internet_facing=spec.tracking.ui.internet_facing,
            ui_certificate_arn=spec.tracking.ui.certificate_arn, entrypoint_package=args.entrypoint_package,
            tags=tags), opts=child)
        ecs = plan.tracking.compute == "ecs"
        self.monitoring = TrackingMonitoring(f"{name}-mon", MonitoringArgs(
            plan=plan, alarms=spec.alarms, primary_identifier=self.database.primary.identifier,
            replica_identifiers=[r.identifier for r in self.database.replicas],
            api_lb_suffix=self.service.load_balancers["api"].arn_suffix, ui_lb_suffix=self.service.load_balancers["ui"].arn_suffix,
            ecs_cluster_name=self.service.cluster.name if ecs else None,
            ecs_service_names={r: getattr(self.service, f"{r}_service").name for r in ("api", "ui")} if ecs else {},
            asg_names={} if ecs else {r: getattr(self.service, f"{r}_group").name for r in ("api", "ui")},
            tags=tags), opts=child)

        self.tracking_uri = self.service.api_url
        self.ui_url = self.service.ui_url
        self.primary_endpoint = self.database.primary.address
        self.replica_endpoints = pulumi.Output.all(*self.database.replica_endpoints)
        self.client_security_group_id = self.network.client_sg.id
        self.artifact_bucket = self.artifacts.bucket.bucket
        self.image_repository = self.service.repository.repository_url
        self.plan_summary = plan_summary(plan)
        self.monthly_cost_usd = plan.cost.total_monthly_usd
        self.register_outputs({
            "tracking_uri": self.tracking_uri, "ui_url": self.ui_url, "primary_endpoint": self.primary_endpoint,
            "replica_endpoints": self.replica_endpoints, "client_security_group_id": self.client_security_group_id,
            "artifact_bucket": self.artifact_bucket, "image_repository": self.image_repository, "plan_summary": self.plan_summary,
            "monthly_cost_usd": self.monthly_cost_usd,
        })


def plan_summary(plan: CapacityPlan) -> dict:
    db, t, b = plan.database, plan.tracking, plan.connection_budget
    return {
        "environment": plan.environment, "tier": plan.tier,
        "database": f"{db.instance.instance_class}{' Multi-AZ' if db.multi_az.value else ''} + {db.replicas.count} replica(s)",
        "storage": f"{db.storage.allocated_gib} GiB gp3 (autoscaling to {db.storage.max_allocated_gib}), {db.storage.iops} IOPS",
        "api": f"{t.api.min_count}-{t.api.max_count} x {t.api.vcpu:g} vCPU / {t.api.memory_gib:g} GiB, {t.api.workers} workers",
        "ui": f"{t.ui.min_count}-{t.ui.max_count} x {t.ui.vcpu:g} vCPU / {t.ui.memory_gib:g} GiB, {t.ui.workers} workers",
        "max_connections": b.max_connections, "rds_proxy": b.rds_proxy,
        "monthly_cost_usd": plan.cost.total_monthly_usd,
    }
