"""plan(spec) -> CapacityPlan: every sizing decision, pure and deterministic, with its reason.

Everything that realizes or checks an environment (the Pulumi component, the local topology, the
policy pack, the CLI) reads this plan; nothing recomputes sizing. No Pulumi or AWS imports here.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
from dataclasses import dataclass
from typing import Any

from . import catalogue
from ..endpoints import LOAD_BALANCER_IDLE_TIMEOUT_S
from .alarms import AlarmPlan, plan_alarms
from .client import client_environment
from .recovery import RecoveryPlan, plan_recovery
from .connections import ConnectionBudget, Pool, plan_connection_budget, pool_for
from .cost import CostEstimate, estimate, instance_hourly, prices_for
from .demand import Coefficients, Demand, coefficients, demand
from .aurora_parameters import aurora_parameters, left_to_aurora
from .engine import (AURORA_MIN_BILLED_GIB, EngineDecision, aurora_io_per_month, aurora_readers, decide, engine_costs,
                     memory_optimized, on_aurora, triggers as engine_triggers)
from .indexes import IndexMigration, index_migration
from .parameters import Parameter, ParameterInputs, primary_parameters, replica_parameters, scaled_to
from .server_command import REQUESTS_PER_WORKER, SERVER_STACK, ServerSettings, server_settings
from .sizing import (
    SERVER_TARGET_CPU,
    DatabaseClass,
    INITIAL_GROWTH_DAYS,
    FleetPlan,
    ReplicaPlan,
    StoragePlan,
    choose_database_class,
    database_need,
    plan_fleet,
    plan_replicas,
    plan_storage,
    isolation_replicas,
    replicas_by_load,
    storage_need,
    service_names,
    spread_over_replicas,
    ui_reads_on_primary,
)
from ..spec.model import EnvironmentSpec

PLAN_FORMAT = 5  # 2: tier plans (pool, server, scaling), alarms, artifacts, placement zones and subnets;
# 3: UI services per replica (services, read_fallback), migrations on the API only, the readiness port;
# 4: client_environment (the training jobs' MLflow client settings) and its reason;
# 5: database.engine (RDS or Aurora, its reason, both monthly costs, Aurora's readers and storage type);
#    recovery (losing the region: mode, second region, recovery point and time, monthly cost)
# Slow-query logging threshold: production logs fewer, development sees more.
LOG_MIN_DURATION_MS = {"production": 500, "staging": 250, "development": 250}
# What tasks in private subnets reach without NAT: image pulls, logs, the database secret.
INTERFACE_ENDPOINT_SERVICES = ("ecr.api", "ecr.dkr", "logs", "secretsmanager")
# A new VPC's subnets: 1/16 of it each (a /20 in a /16: room for thousands of Fargate ENIs), at most /28.
SUBNET_PREFIX_STEP = 4
SMALLEST_SUBNET_PREFIX = 28


@dataclass(frozen=True)
class Decision:
    value: Any
    reason: str


@dataclass(frozen=True)
class RestorePlan:
    # replicated automated backups, a DB snapshot, a DB cluster snapshot or a DB cluster (cloned);
    # the kind is arn.split(":")[5]; None: created empty
    arn: str | None
    time: str | None     # a point-in-time restore's time; None: the latest restorable time
    reason: str


@dataclass(frozen=True)
class DatabasePlan:
    engine: EngineDecision
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
    """RDS: the primary's group; Aurora: the instance group of the writer and every reader."""
    replica_parameters: tuple[Parameter, ...]
    cluster_parameters: tuple[Parameter, ...] = ()
    """Aurora only: the DB cluster parameter group."""
    restore: RestorePlan = RestorePlan(None, None, "created empty")
    """What the database starts from: empty, or an ARN restored (and to when)."""
    left_to_engine: tuple[tuple[str, str], ...] = ()
    """Aurora only: planned parameters Aurora does not take, each with why."""

    def scaled_to(self, memory_bytes: int, vcpu: int) -> tuple[tuple[Parameter, ...], tuple[Parameter, ...]]:
        """The primary's and replicas' parameter sets for another machine (the local topology): memory-
        and CPU-derived values follow the box, every workload-derived choice stays the plan's."""
        inputs = scaled_to(self.parameter_inputs, memory_bytes, vcpu)
        return tuple(primary_parameters(inputs)), tuple(replica_parameters(inputs))


@dataclass(frozen=True)
class TierPlan(FleetPlan):
    """One tier of MLflow servers (api or ui): its fleet, pool, server command and scaling."""

    pool: Pool
    server: ServerSettings
    scaling_target_cpu_percent: int
    task_cpu_units: int           # Fargate: 1024 per vCPU
    task_memory_mib: int
    reads_from_replica: bool
    writes_artifacts: bool        # the API writes the bucket; the UI only reads it
    runs_migrations: bool = False  # the API's tasks run the migrate step (once per deploy upgrades); the UI's wait
    services: int = 1             # the UI with replicas: one service per replica, each reading its own
    read_fallback: bool = False   # a single replica: its reads go to the primary while it is down

    @property
    def service_min_count(self) -> int:
        return self.min_count // self.services

    @property
    def service_max_count(self) -> int:
        return self.max_count // self.services

    @property
    def service_names(self) -> tuple[str, ...]:
        return service_names(self.role, self.services)


@dataclass(frozen=True)
class TrackingPlan:
    compute: str
    mlflow_version: str
    api: TierPlan
    ui: TierPlan
    ui_reads_from_replica: Decision

    @property
    def tiers(self) -> tuple[TierPlan, TierPlan]:
        return (self.api, self.ui)


@dataclass(frozen=True)
class PlacementPlan:
    tracking_vpc: str
    availability_zones: tuple[str, ...]
    training_availability_zones: tuple[str, ...]
    peering: Decision
    nat_gateway: bool
    interface_endpoints: Decision
    interface_endpoint_services: tuple[str, ...]   # empty when NAT reaches the AWS APIs
    primary_zone: str | None                       # None with Multi-AZ: RDS picks the standby's zone
    replica_zones: tuple[str, ...]                 # one per replica, spread so a zone outage leaves one
    private_subnet_cidrs: tuple[str, ...]          # a new VPC's subnets, one per zone; empty in the training VPC
    public_subnet_cidrs: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class ArtifactsPlan:
    expire_after_days: Decision
    noncurrent_version_expire_days: int
    bucket_name: str | None
    force_destroy: bool


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
    artifacts: ArtifactsPlan
    alarms: tuple[AlarmPlan, ...]
    indexes: IndexMigration
    cost: CostEstimate
    tags: dict[str, str]
    warnings: tuple[str, ...]
    client_environment: dict[str, str]
    """What training jobs set: MLflow's asynchronous, buffered logging, its timeout and retries."""
    client_environment_reason: str
    recovery: RecoveryPlan
    """Losing the region: what is copied where, the recovery point and time, the monthly cost."""

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


def subnet_cidrs(vpc_cidr: str, zones: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A new VPC's private subnets first, its public ones after, one of each per zone."""
    network = ipaddress.ip_network(vpc_cidr)
    blocks = [str(b) for b in network.subnets(new_prefix=min(network.prefixlen + SUBNET_PREFIX_STEP, SMALLEST_SUBNET_PREFIX))]
    return tuple(blocks[:zones]), tuple(blocks[zones:2 * zones])


def replica_zones(zones: tuple[str, ...], replicas: int) -> tuple[str, ...]:
    """Replica i goes to the zone after the primary's (the first), round the list: a zone outage
    leaves the UI a replica to read from."""
    return tuple(zones[(i + 1) % len(zones)] for i in range(replicas)) if zones else ()


def _placement(spec: EnvironmentSpec, replicas: int) -> PlacementPlan:
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
    private, public = subnet_cidrs(p.new_vpc.cidr, len(zones)) if p.tracking_vpc == "new" else ((), ())
    return PlacementPlan(
        tracking_vpc=p.tracking_vpc,
        availability_zones=zones,
        training_availability_zones=training_zones,
        peering=Decision(peering, "the tracking VPC differs from the training VPC" if peering else "one VPC: no peering needed"),
        nat_gateway=nat,
        interface_endpoints=Decision(not nat, "no NAT: ECR, CloudWatch Logs and Secrets Manager through interface endpoints"
                                     if not nat else "NAT reaches AWS APIs; an S3 gateway endpoint still keeps artifact traffic off it"),
        interface_endpoint_services=() if nat else INTERFACE_ENDPOINT_SERVICES,
        primary_zone=None if spec.multi_az else training_zones[0],
        replica_zones=replica_zones(training_zones, replicas),
        private_subnet_cidrs=private,
        public_subnet_cidrs=public,
        reason=why,
    )


def _tier(role: str, spec: EnvironmentSpec, fleet: FleetPlan, pool: Pool, engines: int, replicas: int = 0,
          app_fallback: bool = True) -> TierPlan:
    """`app_fallback`: a single replica's UI falls back to the primary itself (RDS); Aurora's reader
    endpoint does that on its own."""
    reads_from_replica = replicas > 0
    return TierPlan(
        **{f.name: getattr(fleet, f.name) for f in dataclasses.fields(FleetPlan)},
        pool=pool,
        server=server_settings(role, spec, fleet, pool, engines, reads_from_replica),
        scaling_target_cpu_percent=round(SERVER_TARGET_CPU * 100),
        task_cpu_units=int(fleet.vcpu * 1024),
        task_memory_mib=int(fleet.memory_gib * 1024),
        reads_from_replica=reads_from_replica,
        writes_artifacts=role == "api",
        runs_migrations=role == "api",
        services=max(1, replicas),
        read_fallback=replicas == 1 and app_fallback,
    )


def ui_reads_reason(replicas: int, aurora: bool = False) -> str:
    if aurora and replicas:
        return (f"the UI tier reads through the cluster's reader endpoint, which spreads its connections over the"
                f" readers ({replicas} at least, more as autoscaling adds them) and answers from the writer while"
                " there is none; writes stay on the writer")
    if replicas == 0:
        return "no replica: the UI reads from the primary"
    if replicas == 1:
        return ("the UI tier passes --read-replica-backend-store-uri; writes stay on the primary; while the replica"
                " cannot be reached its reads go to the primary")
    return (f"one UI service per replica ({replicas}), each reading its own; a task whose replica cannot answer"
            " fails its health check and the load balancer serves from the others")


def _artifacts(spec: EnvironmentSpec) -> ArtifactsPlan:
    a = spec.artifacts
    expire = (Decision(a.expire_after_days, "set in the environment file (artifacts.expire_after_days)") if a.expire_after_days
              else Decision(spec.workload.retention_days, "the runs' retention (workload.retention_days): artifacts go with their runs"))
    return ArtifactsPlan(expire, a.noncurrent_version_expire_days, a.bucket_name,
                         force_destroy=not spec.production)


def restore_decision(arn: str | None, time: str | None, engine: str, source_file: str) -> RestorePlan:
    """What the database starts from. An RDS instance restores from replicated automated backups (to
    `time`, else the latest restorable time) or a DB snapshot; an Aurora cluster from a cluster
    snapshot. The stack's own master password replaces the source's once restored, and the migrate
    step resets the application role's password, so the new stack's secrets open it."""
    from ..spec import SpecError, SpecInvalid

    if arn is None:
        return RestorePlan(None, None, "created empty")
    kind = arn.split(":")[5]
    if engine == "aurora" and kind not in ("cluster-snapshot", "cluster"):
        raise SpecInvalid([SpecError(source_file, "database.restore_from",
                                     f"'{arn}' is not allowed for this plan: it restores an RDS instance but the plan chose Aurora;"
                                     " expected database.engine rds, or a DB cluster snapshot or DB cluster")])
    how = {"auto-backup": f"a point-in-time restore of replicated automated backups to {time or 'the latest restorable time'}",
           "snapshot": "a restore of a DB snapshot", "cluster-snapshot": "a restore of a DB cluster snapshot",
           "cluster": "a copy-on-write clone of a DB cluster at its latest restorable time (the promoted Global Database secondary)"}[kind]
    return RestorePlan(arn, time if kind == "auto-backup" else None,
                       f"{how}; the stack's master password replaces the source's once restored, and the migrate step"
                       " sets the application role's password from the new stack's secret")


def plan(spec: EnvironmentSpec, k: Coefficients | None = None) -> CapacityPlan:
    """Turn a validated environment into every sizing decision. Raises SpecInvalid for a workload
    the catalogue cannot carry or a connection budget that cannot fit with rds_proxy: off."""
    k = k or coefficients()
    d = demand(spec.workload, k)
    db_spec = spec.database
    warnings: list[str] = []

    global_database = spec.disaster_recovery == "global"
    by_load = replicas_by_load(d.ui_read_requests_per_s, k)
    need_iops, need_mibps = storage_need(d)
    found = engine_triggers(readers_by_load=by_load, need_iops=need_iops, need_mibps=need_mibps,
                            storage_at_retention_gib=d.storage_at_retention_gib, max_failover_s=db_spec.max_failover_seconds,
                            global_database=global_database)
    aurora = db_spec.engine == "aurora" or (db_spec.engine == "auto" and bool(found))
    replicas = rds_replicas = plan_replicas(d.ui_read_requests_per_s, spec.tier, db_spec.read_replicas, k)
    readers = aurora_readers(isolation_replicas(spec.tier), by_load, spec.multi_az)
    if db_spec.read_replicas is not None:
        readers = (db_spec.read_replicas, max(readers[1], db_spec.read_replicas))
    if aurora:
        replicas = ReplicaPlan(readers[0], f"Aurora readers {readers[0]}-{readers[1]} (autoscaling on CPU): {replicas.reason}")
    # the UI reads one endpoint per instance replica on RDS; on Aurora one reader endpoint, which
    # the writer answers while the cluster has no reader
    read_endpoints = min(1, replicas.count) if aurora else replicas.count
    # each Aurora reader is budgeted for the UI's share with one reader lost (the endpoint moves its
    # connections to the others); with a single reader, the writer takes them all while it is gone
    budget_readers = max(1, replicas.count - 1) if aurora and replicas.count else replicas.count
    need = database_need(d, ui_reads_on_primary(d.ui_read_requests_per_s, spec.tier, replicas.count, k), k)
    rds_class = choose_database_class(need, spec.tier, db_spec.instance_class, instance_hourly(spec.region), spec.source_file)
    # the class an Aurora writer and its readers run: Aurora's nearest, memory-optimized for a Global Database
    aurora_instance = memory_optimized(on_aurora(rds_class)) if global_database else on_aurora(rds_class)
    instance = aurora_instance if aurora else rds_class
    warnings.extend(instance.warnings)
    storage = plan_storage(d, spec.workload.retention_days, db_spec.storage_gib, db_spec.max_storage_gib, spec.source_file)
    prices_region, prices = prices_for(spec.region)
    data_gib = max(AURORA_MIN_BILLED_GIB, d.storage_growth_gib_per_day * min(INITIAL_GROWTH_DAYS, spec.workload.retention_days))
    io_per_month = aurora_io_per_month(d.write_requests_per_s, d.wal_bytes_per_s, spec.workload.logging_hours_per_day)
    hours = catalogue.price_table()["hours_per_month"]
    costs = engine_costs(prices=prices, hours=hours, rds_class=rds_class.instance_class,
                         multi_az=spec.multi_az, replicas=rds_replicas.count, storage=storage,
                         aurora_instance_class=aurora_instance.instance_class, aurora_instances=1 + readers[0],
                         data_gib=data_gib, io_per_month=io_per_month)
    engine = decide(db_spec.engine, found, costs, aurora_instance.instance_class, readers)
    warnings.extend(engine.warnings)
    restore = restore_decision(db_spec.restore_from, db_spec.restore_time, engine.engine, spec.source_file)
    recovery = plan_recovery(mode=spec.disaster_recovery, region=spec.region, secondary_region=spec.secondary_region,
                             engine=engine.engine, named=db_spec.secondary_region is not None, production=spec.production,
                             data_gib=data_gib, growth_gib_per_month=d.storage_growth_gib_per_day * 30,
                             instance_class=instance.instance_class, prices=prices,
                             hours=hours, io_per_month=io_per_month,
                             retention_days=spec.backup_retention_days)
    if spec.production and recovery.mode == "none":
        warnings.append("production with disaster_recovery none: a region outage stops all logging until the region returns")

    api = plan_fleet("api", d.write_requests_per_s, spec.workload.metrics_per_call, spec.tier,
                     spec.tracking.compute, spec.tracking.api, k)
    ui = spread_over_replicas(plan_fleet("ui", d.ui_read_requests_per_s, spec.workload.metrics_per_call, spec.tier,
                                         spec.tracking.compute, spec.tracking.ui, k), read_endpoints)
    cls = catalogue.instance_class(instance.instance_class)
    # the burst lands on the servers that are already running: the minimum fleet
    api_pool = pool_for("api", spec.workload.concurrent_training_jobs, api.min_count * api.workers,
                        requests_per_worker=REQUESTS_PER_WORKER[SERVER_STACK["api"]])
    ui_pool = pool_for("ui", spec.workload.concurrent_ui_users, ui.min_count * ui.workers, read_fallback=replicas.count == 1,
                       requests_per_worker=REQUESTS_PER_WORKER[SERVER_STACK["ui"]])
    budget = plan_connection_budget(api_max=api.max_count, api_workers=api.workers, api_pool=api_pool,
                                    ui_max=ui.max_count, ui_workers=ui.workers, ui_pool=ui_pool,
                                    replicas=budget_readers, memory_bytes=cls.memory_bytes,
                                    proxy_mode=db_spec.rds_proxy, auth=spec.tracking.auth,
                                    source_file=spec.source_file, instance_class=cls.name)

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
        api=_tier("api", spec, api, api_pool, budget.engines_per_worker),
        ui=_tier("ui", spec, ui, ui_pool, budget.engines_per_worker, read_endpoints, app_fallback=not aurora),
        ui_reads_from_replica=Decision(ui_on_replica, ui_reads_reason(replicas.count, aurora)),
    )
    database = DatabasePlan(
        engine=engine,
        engine_version=db_spec.engine_version,
        instance=instance,
        storage=storage,
        replicas=replicas,
        multi_az=Decision(spec.multi_az, "set in the environment file" if db_spec.multi_az is not None
                          else (("production: a reader in a second zone takes over in about 30 s" if aurora else
                                 "production: a standby in a second zone takes over in ~1-2 min") if spec.production
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
        primary_parameters=tuple(aurora_parameters("instance", inputs) if aurora else primary_parameters(inputs)),
        replica_parameters=tuple(replica_parameters(inputs)) if replicas.count and not aurora else (),
        cluster_parameters=tuple(aurora_parameters("cluster", inputs)) if aurora else (),
        restore=restore,
        left_to_engine=tuple(left_to_aurora(inputs)) if aurora else (),
    )
    placement = _placement(spec, replicas.count)
    client_variables, client_reason = client_environment(spec.workload.concurrent_training_jobs, api,
                                                         spec.alarms.api_p99_latency_ms, LOAD_BALANCER_IDLE_TIMEOUT_S)
    alarms = plan_alarms(spec.alarms, memory_gib=cls.memory_gib, max_connections=budget.max_connections,
                         allocated_gib=storage.allocated_gib, max_allocated_gib=storage.max_allocated_gib,
                         replicas=replicas.count, compute=spec.tracking.compute, ui_services=max(1, read_endpoints), aurora=aurora)
    cost = estimate(region=spec.region, db=instance, multi_az=spec.multi_az, replicas=replicas.count, storage=storage, engine=engine,
                    recovery=recovery,
                    budget=budget, api=api, ui=ui, availability_zones=len(placement.availability_zones),
                    nat_gateway=placement.nat_gateway, creates_vpc=spec.placement.tracking_vpc == "new",
                    interface_endpoints=len(placement.interface_endpoint_services), alarms=len(alarms))
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
        artifacts=_artifacts(spec),
        alarms=alarms,
        indexes=index_migration(),
        cost=cost,
        tags=spec.resource_tags,
        warnings=tuple(warnings),
        client_environment=client_variables,
        client_environment_reason=client_reason,
        recovery=recovery,
    )
