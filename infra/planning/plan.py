"""plan(spec) -> CapacityPlan: every sizing decision, pure and deterministic, with its reason.

Everything that realizes or checks an environment (the Pulumi component, the local topology, the
policy pack, the CLI) reads this plan; nothing recomputes sizing. No Pulumi or AWS imports here.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any

from . import catalogue
from .connections import ConnectionBudget, plan_connection_budget
from .cost import CostEstimate, estimate, instance_hourly
from .demand import Coefficients, Demand, coefficients, demand
from .indexes import IndexMigration, index_migration
from .parameters import Parameter, ParameterInputs, primary_parameters, replica_parameters
from .server_command import ServerSettings, server_settings
from .sizing import (
    DatabaseClass,
    FleetPlan,
    ReplicaPlan,
    StoragePlan,
    choose_database_class,
    database_need,
    plan_fleet,
    plan_replicas,
    plan_storage,
    ui_reads_on_primary,
)
from ..spec.model import EnvironmentSpec

PLAN_FORMAT = 1
# Slow-query logging threshold: production logs fewer, development sees more.
LOG_MIN_DURATION_MS = {"production": 500, "staging": 250, "development": 250}


@dataclass(frozen=True)
class Decision:
    value: Any
    reason: str


@dataclass(frozen=True)
class DatabasePlan:
    engine_version: str
    instance: DatabaseClass
    storage: StoragePlan
    replicas: ReplicaPlan
    multi_az: Decision
    backup_retention_days: Decision
    deletion_protection: Decision
    monitoring_interval_seconds: int
    performance_insights_retention_days: int
    durability: Decision
    parameter_inputs: ParameterInputs
    primary_parameters: tuple[Parameter, ...]
    replica_parameters: tuple[Parameter, ...]


@dataclass(frozen=True)
class TrackingPlan:
    compute: str
    mlflow_version: str
    api: FleetPlan
    ui: FleetPlan
    api_server: ServerSettings
    ui_server: ServerSettings
    ui_reads_from_replica: Decision


@dataclass(frozen=True)
class PlacementPlan:
    tracking_vpc: str
    availability_zones: tuple[str, ...]
    training_availability_zones: tuple[str, ...]
    peering: Decision
    nat_gateway: bool
    interface_endpoints: Decision
    reason: str


@dataclass(frozen=True)
class CapacityPlan:
    format: int
    environment: str
    tier: str
    region: str
    source_file: str
    coefficients: Coefficients
    load: Demand
    database: DatabasePlan
    connection_budget: ConnectionBudget
    tracking: TrackingPlan
    placement: PlacementPlan
    indexes: IndexMigration
    cost: CostEstimate
    tags: dict[str, str]
    warnings: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def _plain(value: Any) -> Any:
    """asdict leaves tuples and floats with float noise; JSON wants lists and stable numbers."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else None
    return value


def _placement(spec: EnvironmentSpec) -> PlacementPlan:
    p = spec.placement
    zones = spec.availability_zones
    training_zones = spec.training_availability_zones
    peering = p.tracking_vpc == "new" and p.training_vpc is not None
    if p.tracking_vpc == "training":
        why = (f"API servers, the API load balancer and the database primary sit in the training VPC"
               f" ({p.training_vpc.vpc_id}) in {', '.join(zones)}: no extra network hop per log call")
    elif peering:
        why = (f"a new VPC {p.new_vpc.cidr} in {', '.join(zones)}, peered with the training VPC"
               f" {p.training_vpc.vpc_id} ({p.training_vpc.cidr}) so training traffic stays private")
    else:
        why = f"a new VPC {p.new_vpc.cidr} in {', '.join(zones)}; no training VPC given, so clients reach the API over its internal load balancer"
    nat = spec.nat_gateway
    return PlacementPlan(
        tracking_vpc=p.tracking_vpc,
        availability_zones=zones,
        training_availability_zones=training_zones,
        peering=Decision(peering, "the tracking VPC differs from the training VPC" if peering else "one VPC: no peering needed"),
        nat_gateway=nat,
        interface_endpoints=Decision(not nat, "no NAT: ECR, CloudWatch Logs and Secrets Manager through interface endpoints"
                                     if not nat else "NAT reaches AWS APIs; an S3 gateway endpoint still keeps artifact traffic off it"),
        reason=why,
    )


def plan(spec: EnvironmentSpec, k: Coefficients | None = None) -> CapacityPlan:
    """Turn a validated environment into every sizing decision. Raises SpecInvalid for a workload
    the catalogue cannot carry or a connection budget that cannot fit with rds_proxy: off."""
    k = k or coefficients()
    d = demand(spec.workload, k)
    db_spec = spec.database
    warnings: list[str] = []

    replicas = plan_replicas(d.ui_read_requests_per_s, spec.tier, db_spec.read_replicas, k)
    need = database_need(d, ui_reads_on_primary(d.ui_read_requests_per_s, spec.tier, replicas.count, k), k)
    instance = choose_database_class(need, spec.tier, db_spec.instance_class, instance_hourly(spec.region), spec.source_file)
    warnings.extend(instance.warnings)
    storage = plan_storage(d, spec.workload.retention_days, db_spec.storage_gib, db_spec.max_storage_gib, spec.source_file)

    api = plan_fleet("api", d.write_requests_per_s, spec.workload.metrics_per_call, spec.tier,
                     spec.tracking.compute, spec.tracking.api, k)
    ui = plan_fleet("ui", d.ui_read_requests_per_s, spec.workload.metrics_per_call, spec.tier,
                    spec.tracking.compute, spec.tracking.ui, k)
    cls = catalogue.instance_class(instance.instance_class)
    budget = plan_connection_budget(api_max=api.max_count, api_workers=api.workers, ui_max=ui.max_count,
                                    ui_workers=ui.workers, replicas=replicas.count, memory_bytes=cls.memory_bytes,
                                    proxy_mode=db_spec.rds_proxy, auth=spec.tracking.auth,
                                    api_clients=spec.workload.concurrent_training_jobs, api_min=api.min_count,
                                    ui_clients=spec.workload.concurrent_ui_users, ui_min=ui.min_count,
                                    source_file=spec.source_file,
                                    instance_class=cls.name)

    inputs = ParameterInputs(
        memory_bytes=cls.memory_bytes, vcpu=cls.vcpu, max_connections=budget.max_connections,
        engine_major=spec.engine_major, durability=db_spec.durability,
        wal_mib_per_s=d.wal_bytes_per_s / 1024**2,
        log_min_duration_ms=LOG_MIN_DURATION_MS[spec.tier])

    if spec.production and replicas.count == 0:
        warnings.append("production with read_replicas 0: UI searches compete with logging on the primary")
    if spec.production and not spec.multi_az:
        warnings.append("production with multi_az false: a zone outage stops all logging until a restore")
    ui_on_replica = replicas.count > 0

    tracking = TrackingPlan(
        compute=spec.tracking.compute,
        mlflow_version=spec.tracking.mlflow_version,
        api=api,
        ui=ui,
        api_server=server_settings("api", spec, api, budget, ui_on_replica),
        ui_server=server_settings("ui", spec, ui, budget, ui_on_replica),
        ui_reads_from_replica=Decision(ui_on_replica, "the UI tier passes --read-replica-backend-store-uri; writes stay on the primary"
                                       if ui_on_replica else "no replica: the UI reads from the primary"),
    )
    database = DatabasePlan(
        engine_version=db_spec.engine_version,
        instance=instance,
        storage=storage,
        replicas=replicas,
        multi_az=Decision(spec.multi_az, "set in the environment file" if db_spec.multi_az is not None
                          else ("production: a standby in a second zone takes over in ~1-2 min" if spec.production
                                else f"{spec.tier}: a single zone halves the instance cost")),
        backup_retention_days=Decision(spec.backup_retention_days, "set in the environment file" if db_spec.backup_retention_days is not None
                                       else ("production keeps two weeks of point-in-time recovery" if spec.production else "one week of point-in-time recovery")),
        deletion_protection=Decision(spec.deletion_protection, "set in the environment file" if db_spec.deletion_protection is not None
                                     else ("production: a stray destroy must not drop the tracking database" if spec.production
                                           else f"{spec.tier}: disposable")),
        monitoring_interval_seconds=db_spec.monitoring_interval_seconds,
        performance_insights_retention_days=db_spec.performance_insights_retention_days,
        durability=Decision(db_spec.durability, "synchronous_commit off: faster commits, the last writes may be lost on a crash"
                            if db_spec.durability == "relaxed" else "every acknowledged write is flushed to disk before the reply"),
        parameter_inputs=inputs,
        primary_parameters=tuple(primary_parameters(inputs)),
        replica_parameters=tuple(replica_parameters(inputs)) if replicas.count else (),
    )
    placement = _placement(spec)
    cost = estimate(region=spec.region, db=instance, multi_az=spec.multi_az, replicas=replicas.count, storage=storage,
                    budget=budget, api=api, ui=ui, availability_zones=len(placement.availability_zones),
                    nat_gateway=placement.nat_gateway, creates_vpc=spec.placement.tracking_vpc == "new")
    return CapacityPlan(
        format=PLAN_FORMAT,
        environment=spec.name,
        tier=spec.tier,
        region=spec.region,
        source_file=spec.source_file,
        coefficients=k,
        load=d,
        database=database,
        connection_budget=budget,
        tracking=tracking,
        placement=placement,
        indexes=index_migration(),
        cost=cost,
        tags=spec.resource_tags,
        warnings=tuple(warnings),
    )
