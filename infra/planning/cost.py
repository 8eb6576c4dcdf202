"""Monthly cost estimate from the shipped price table (infra/data/prices.yaml), by component."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import catalogue
from .connections import ConnectionBudget
from .sizing import GP3_STRIPED_BASELINE, DatabaseClass, FleetPlan, StoragePlan

if TYPE_CHECKING:
    from .engine import EngineDecision
    from .recovery import RecoveryPlan

SECRETS = 2             # the database's master and application-role secrets (infra/aws/credentials.py)
KMS_KEYS = 2            # the database's (storage, Performance Insights, secret) and the alarm topic's
LOAD_BALANCERS = 2      # API (internal) and UI


@dataclass(frozen=True)
class CostLine:
    component: str
    monthly_usd: float
    detail: str


@dataclass(frozen=True)
class CostEstimate:
    region: str
    prices_region: str
    source: str
    recorded: str
    lines: tuple[CostLine, ...]
    total_monthly_usd: float
    at_max_autoscale_monthly_usd: float
    notes: tuple[str, ...]


def prices_for(region: str) -> tuple[str, dict]:
    table = catalogue.price_table()["regions"]
    if region in table:
        return region, table[region]
    return "us-east-1", table["us-east-1"]


def instance_hourly(region: str) -> dict[str, float]:
    return prices_for(region)[1]["rds_instance_hourly"]


def rds_storage_monthly(prices: dict, storage: StoragePlan, volumes: int) -> float:
    """gp3 on every volume, with the IOPS and throughput provisioned above the included baseline."""
    extra_iops = max(0, storage.iops - GP3_STRIPED_BASELINE[0]) if storage.iops_provisioned else 0
    extra_mibps = max(0, storage.throughput_mibps - GP3_STRIPED_BASELINE[1]) if storage.iops_provisioned else 0
    return (storage.allocated_gib * prices["rds_gp3_gib_month"] + extra_iops * prices["rds_gp3_iops_month"]
            + extra_mibps * prices["rds_gp3_mibps_month"]) * volumes


def _fleet_hourly(fleet: FleetPlan, p: dict) -> float:
    if fleet.compute == "ec2":
        return p["ec2_hourly"][fleet.instance_type]
    return fleet.vcpu * p["fargate_arm_vcpu_hour"] + fleet.memory_gib * p["fargate_arm_gib_hour"]


def aurora_lines(p: dict, hours: float, db: DatabaseClass, readers: int, engine: EngineDecision) -> list[CostLine]:
    """The writer and its readers at the plan's minimum, then storage and I/O of the chosen configuration."""
    optimized = engine.aurora_storage_type == "aurora-iopt1"
    hourly = p["aurora_instance_hourly"][db.instance_class] * (p["aurora_io_optimized_instance_factor"] if optimized else 1)
    instances = hourly * hours * (1 + readers)
    total = engine.costs.aurora_io_optimized if optimized else engine.costs.aurora_standard
    kind = "I/O-Optimized" if optimized else "Standard"
    return [CostLine("database writer and readers", instances, f"{1 + readers} x {db.instance_class} (Aurora {kind}, readers at their minimum)"),
            CostLine("database storage and I/O", total - instances,
                     f"Aurora {kind}: storage as used" + ("" if optimized else f", {engine.costs.aurora_io_requests_per_month / 1e6:,.0f} million I/Os a month"))]


def estimate(*, region: str, db: DatabaseClass, multi_az: bool, replicas: int, storage: StoragePlan,
             budget: ConnectionBudget, api: FleetPlan, ui: FleetPlan, availability_zones: int,
             nat_gateway: bool, creates_vpc: bool, interface_endpoints: int, alarms: int,
             engine: EngineDecision | None = None, recovery: RecoveryPlan | None = None) -> CostEstimate:
    prices_region, p = prices_for(region)
    hours = catalogue.price_table()["hours_per_month"]
    lines: list[CostLine] = []
    if engine is not None and engine.engine == "aurora":
        lines += aurora_lines(p, hours, db, replicas, engine)
    else:
        copies = 2 if multi_az else 1
        hourly = p["rds_instance_hourly"][db.instance_class]
        lines.append(CostLine("database primary", hourly * hours * copies,
                              f"{db.instance_class} x{copies} ({'Multi-AZ' if multi_az else 'Single-AZ'})"))
        if replicas:
            lines.append(CostLine("read replicas", hourly * hours * replicas, f"{replicas} x {db.instance_class}"))
        volumes = copies + replicas
        lines.append(CostLine("database storage", rds_storage_monthly(p, storage, volumes),
                              f"{storage.allocated_gib} GiB gp3 x{volumes} volumes, {storage.iops:,} IOPS, {storage.throughput_mibps} MiB/s"))
    if recovery is not None and recovery.mode != "none":
        lines.append(CostLine("disaster recovery", recovery.monthly_usd, f"{recovery.mode} in {recovery.secondary_region}"))
    if budget.rds_proxy:
        lines.append(CostLine("RDS Proxy", db.vcpu * p["rds_proxy_vcpu_hour"] * hours, f"{db.vcpu} vCPU behind the proxy"))
    for fleet in (api, ui):
        unit = _fleet_hourly(fleet, p)
        kind = fleet.instance_type or f"Fargate {fleet.vcpu:g} vCPU / {fleet.memory_gib:g} GiB (arm64)"
        lines.append(CostLine(f"tracking {fleet.role}", unit * fleet.min_count * hours, f"{fleet.min_count} x {kind}"))
    lines.append(CostLine("load balancers", LOAD_BALANCERS * (p["alb_hour"] + p["alb_lcu_hour"]) * hours,
                          f"{LOAD_BALANCERS} ALBs at one LCU each"))
    if creates_vpc and nat_gateway:
        lines.append(CostLine("NAT gateways", p["nat_gateway_hour"] * hours * availability_zones, f"one per zone x{availability_zones}"))
    elif interface_endpoints:
        lines.append(CostLine("VPC interface endpoints", interface_endpoints * availability_zones * p["interface_endpoint_az_hour"] * hours,
                              f"{interface_endpoints} endpoints x {availability_zones} zones (no NAT)"))
    lines.append(CostLine("monitoring and secrets",
                          alarms * p["cloudwatch_alarm_month"] + p["cloudwatch_dashboard_month"]
                          + SECRETS * p["secrets_manager_secret_month"] + KMS_KEYS * p["kms_key_month"],
                          f"{alarms} alarms, 1 dashboard, {SECRETS} secrets, {KMS_KEYS} KMS keys"))
    total = sum(line.monthly_usd for line in lines)
    burst = sum(_fleet_hourly(f, p) * (f.max_count - f.min_count) * hours for f in (api, ui))
    notes = ["fleets at their minimum count; S3 artifact storage and data transfer depend on use and are not included",
             "Performance Insights within the free 7-day retention; on-demand prices, no Savings Plans or Reserved Instances"]
    if prices_region != region:
        notes.insert(0, f"no prices for {region} in the table; {prices_region} prices shown")
    table = catalogue.price_table()
    return CostEstimate(region, prices_region, str(table["source"]), str(table["recorded"]),
                        tuple(CostLine(l.component, round(l.monthly_usd, 2), l.detail) for l in lines),
                        round(total, 2), round(total + burst, 2), tuple(notes))
