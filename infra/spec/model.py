"""The environment file's schema (pydantic, strict): every key, its type, bounds and default.

Loading and layering live in `load.py`, checks that span keys in `checks.py`, and the one-line
error messages in `messages.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..endpoints import ENVIRONMENT_TAG
from ..planning import catalogue

STACKS_DIR = Path("stacks")
# Files in stacks/ that are layers or policy config rather than deployable environments.
NOT_ENVIRONMENTS = {"base"}

Tier = Literal["development", "staging", "production"]
MLFLOW_MIN_VERSION = (3, 13)  # --read-replica-backend-store-uri first shipped in MLflow 3.13
# Fargate task sizes: vCPU -> allowed memory GiB (ECS developer guide, "Task CPU and memory").
FARGATE_MEMORY_GIB = {
    0.25: (0.5, 1, 2),
    0.5: (1, 2, 3, 4),
    1: tuple(range(2, 9)),
    2: tuple(range(4, 17)),
    4: tuple(range(8, 31)),
    8: tuple(range(16, 61, 4)),
    16: tuple(range(32, 121, 8)),
}


class Section(BaseModel):
    # strict: `true` is not an integer and "10" is not a number; extra keys are typos.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def _text(pattern: str, what: str) -> Any:
    return Annotated[str, Field(pattern=pattern, description=what)]


SubnetId = _text(r"^subnet-[0-9a-f]{8,17}$", "a subnet id such as subnet-0123456789abcdef0")
VpcId = _text(r"^vpc-[0-9a-f]{8,17}$", "a VPC id such as vpc-0123456789abcdef0")
AvailabilityZone = _text(r"^[a-z]{2}(-[a-z]+)+-\d[a-z]$", "an availability zone such as us-east-1a")
Cidr = _text(r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$", "an IPv4 CIDR such as 10.40.0.0/16")
Email = _text(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", "an email address")
CertificateArn = _text(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]+$", "an ACM certificate ARN")
BucketName = _text(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", "an S3 bucket name: 3-63 lowercase letters, digits, dots, hyphens")
HostPattern = _text(r"^[A-Za-z0-9*.:-]{1,253}$", "a host name or pattern such as mlflow.example.com or *.internal")
ImageUri = _text(r"^[a-z0-9.-]+(:\d+)?(/[a-z0-9._-]+)+(:[A-Za-z0-9._-]+|@sha256:[0-9a-f]{64})$", "a container image URI with a tag or digest")
MlflowVersion = _text(r"^\d+\.\d+\.\d+$", "an exact MLflow release such as 3.17.2")
EngineVersion = _text(r"^\d{2}(\.\d{1,2})?$", "a PostgreSQL major version such as '17' or a major.minor such as '17.6'")
RestoreArn = _text(r"^arn:aws[a-z-]*:rds:[a-z0-9-]+:\d{12}:(auto-backup|snapshot|cluster-snapshot|cluster):[A-Za-z0-9:._-]{1,255}$",
                   "an RDS ARN of replicated automated backups (auto-backup:ab-...), a DB snapshot, a DB cluster snapshot or a DB cluster")
RestoreTime = _text(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$", "a UTC time such as 2026-11-28T03:00:00Z")
TagKey = _text(r"^[\w .:/=+@-]{1,128}$", "a tag key of 1-128 letters, digits, spaces or _.:/=+-@")


class Subnet(Section):
    id: SubnetId  # type: ignore[valid-type]
    availability_zone: AvailabilityZone  # type: ignore[valid-type]


class TrainingVpc(Section):
    """Where the training compute runs; the tracking API is placed next to it."""

    vpc_id: VpcId  # type: ignore[valid-type]
    cidr: Cidr  # type: ignore[valid-type]
    subnets: list[Subnet] = Field(min_length=1, max_length=16)
    route_table_ids: list[Annotated[str, Field(pattern=r"^rtb-[0-9a-f]{8,17}$", description="a route table id such as rtb-0123456789abcdef0")]] = Field(default_factory=list, max_length=16)
    nat_gateway: bool = True  # existing training VPCs usually reach ECR and CloudWatch through NAT


class NewVpc(Section):
    cidr: Cidr  # type: ignore[valid-type]
    availability_zones: list[AvailabilityZone] = Field(min_length=2, max_length=6)  # type: ignore[valid-type]
    nat_gateway: bool = False


class SecondaryPlacement(Section):
    """Where an Aurora Global Database's secondary cluster runs in the second region: private subnets
    of a VPC there (a training VPC of that region, where the servers would run after a failover)."""

    vpc_id: VpcId  # type: ignore[valid-type]
    cidr: Cidr  # type: ignore[valid-type]
    subnets: list[Subnet] = Field(min_length=2, max_length=16)


class Placement(Section):
    tracking_vpc: Literal["training", "new"] = "training"
    training_vpc: TrainingVpc | None = None
    new_vpc: NewVpc | None = None


class Workload(Section):
    concurrent_training_jobs: int = Field(ge=1, le=100_000)
    logging_calls_per_job_per_minute: float = Field(ge=0.1, le=6_000)
    metrics_per_call: int = Field(ge=1, le=1_000)  # MLflow's log_batch accepts at most 1000 metrics
    params_per_run: int = Field(ge=0, le=10_000)
    tags_per_run: int = Field(ge=0, le=1_000)
    runs_per_day: int = Field(ge=1, le=10_000_000)
    retention_days: int = Field(ge=1, le=3_650)
    concurrent_ui_users: int = Field(ge=0, le=10_000)
    logging_hours_per_day: float = Field(default=24.0, ge=1, le=24)


class Database(Section):
    # auto: RDS for PostgreSQL with instance replicas until the workload outgrows them, then Aurora
    # PostgreSQL (the plan says which and why, with both monthly costs)
    engine: Literal["auto", "rds", "aurora"] = "auto"
    # the longest the platform may stop logging when the primary fails; RDS Multi-AZ documents
    # 60-120 s, Aurora about 30 s (a value under 120 picks Aurora)
    max_failover_seconds: int | None = Field(default=None, ge=1, le=3_600)
    # losing a region: backups (RDS replicates its automated backups, Aurora copies a daily snapshot)
    # or global (an Aurora Global Database secondary); default backups in production, none elsewhere
    disaster_recovery: Literal["none", "backups", "global"] | None = None
    secondary_region: str | None = None  # default: the region's recovery pair (infra/data/regions.yaml)
    # global: the VPC and private subnets (two zones or more) of the second region the secondary cluster uses
    secondary_placement: SecondaryPlacement | None = None
    # a new environment's database restored instead of created empty (recovery in the second region):
    # RDS replicated automated backups (auto-backup ARN, to restore_time or the latest restorable
    # time) or a DB snapshot ARN; Aurora a DB cluster snapshot ARN, or a DB cluster ARN (the promoted
    # Global Database secondary, cloned copy-on-write)
    restore_from: RestoreArn | None = None  # type: ignore[valid-type]
    restore_time: RestoreTime | None = None  # type: ignore[valid-type]
    engine_version: EngineVersion = Field(default_factory=catalogue.default_engine_version)  # type: ignore[valid-type]
    instance_class: str | None = None
    read_replicas: int | None = Field(default=None, ge=0, le=15)  # RDS allows 15 replicas per source
    storage_gib: int | None = Field(default=None, ge=20, le=65_536)  # gp3 limits on RDS
    max_storage_gib: int | None = Field(default=None, ge=20, le=65_536)
    multi_az: bool | None = None  # default: production only
    rds_proxy: Literal["auto", "on", "off"] = "auto"
    durability: Literal["strict", "relaxed"] = "strict"
    backup_retention_days: int | None = Field(default=None, ge=1, le=35)
    deletion_protection: bool | None = None  # default: production only
    monitoring_interval_seconds: Literal[1, 5, 10, 15, 30, 60] = 60
    performance_insights_retention_days: Literal[7, 31, 62, 93, 186, 372, 731] = 7


class Fleet(Section):
    vcpu: float | None = None
    memory_gib: float | None = Field(default=None, gt=0, le=120)
    workers: int | None = Field(default=None, ge=1, le=64)
    min_count: int | None = Field(default=None, ge=1, le=200)
    max_count: int | None = Field(default=None, ge=1, le=200)


class UiFleet(Fleet):
    internet_facing: bool = False
    certificate_arn: CertificateArn | None = None  # type: ignore[valid-type]


class Tracking(Section):
    compute: Literal["ecs", "ec2"] = "ecs"
    mlflow_version: MlflowVersion = "3.17.2"  # type: ignore[valid-type]
    auth: Literal["none", "basic"] = "none"
    image: ImageUri | None = None  # type: ignore[valid-type]
    allowed_hosts: list[HostPattern] = Field(default_factory=list, max_length=32)  # type: ignore[valid-type]
    api: Fleet = Field(default_factory=Fleet)
    ui: UiFleet = Field(default_factory=UiFleet)


class Artifacts(Section):
    bucket_name: BucketName | None = None  # type: ignore[valid-type]
    expire_after_days: int | None = Field(default=None, ge=1, le=36_500)  # default: workload.retention_days
    noncurrent_version_expire_days: int = Field(default=30, ge=1, le=3_650)


class Alarms(Section):
    email: list[Email] = Field(default_factory=list, max_length=20)  # type: ignore[valid-type]
    db_cpu_percent: int = Field(default=80, ge=1, le=100)
    db_free_memory_percent: int = Field(default=10, ge=1, le=90)
    db_free_storage_percent: int = Field(default=15, ge=1, le=90)
    db_connections_percent_of_budget: int = Field(default=90, ge=10, le=100)
    disk_queue_depth: int = Field(default=64, ge=1, le=10_000)
    replica_lag_seconds: int = Field(default=60, ge=1, le=86_400)
    api_p99_latency_ms: int = Field(default=1_000, ge=10, le=120_000)
    load_balancer_5xx_per_minute: int = Field(default=10, ge=1, le=100_000)
    service_cpu_percent: int = Field(default=85, ge=1, le=100)


class EnvironmentSpec(Section):
    """One deployable environment, after layering and validation."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")
    tier: Tier
    region: str
    workload: Workload
    placement: Placement
    database: Database = Field(default_factory=Database)
    tracking: Tracking = Field(default_factory=Tracking)
    artifacts: Artifacts = Field(default_factory=Artifacts)
    alarms: Alarms = Field(default_factory=Alarms)
    tags: dict[TagKey, Annotated[str, Field(max_length=256)]] = Field(default_factory=dict)  # type: ignore[valid-type]
    source_file: str = Field(default="", exclude=True)

    @property
    def production(self) -> bool:
        return self.tier == "production"

    @property
    def engine_major(self) -> int:
        return int(self.database.engine_version.split(".")[0])

    @property
    def multi_az(self) -> bool:
        return self.production if self.database.multi_az is None else self.database.multi_az

    @property
    def disaster_recovery(self) -> str:
        if self.database.disaster_recovery is not None:
            return self.database.disaster_recovery
        return "backups" if self.production else "none"

    @property
    def secondary_region(self) -> str | None:
        """Where disaster recovery goes: the file's, else the region's recovery pair; None without it."""
        if self.disaster_recovery == "none":
            return None
        return self.database.secondary_region or catalogue.recovery_pairs().get(self.region)

    @property
    def deletion_protection(self) -> bool:
        return self.production if self.database.deletion_protection is None else self.database.deletion_protection

    @property
    def backup_retention_days(self) -> int:
        if self.database.backup_retention_days is not None:
            return self.database.backup_retention_days
        return 14 if self.production else 7

    @property
    def resource_tags(self) -> dict[str, str]:
        return {**self.tags, "environment": self.name, ENVIRONMENT_TAG: self.name}

    @property
    def availability_zones(self) -> tuple[str, ...]:
        """The AZs the tracking platform uses: the training subnets' AZs, or the new VPC's."""
        placement = self.placement
        if placement.tracking_vpc == "training" and placement.training_vpc:
            return tuple(sorted({s.availability_zone for s in placement.training_vpc.subnets}))
        if placement.new_vpc:
            return tuple(placement.new_vpc.availability_zones)
        return ()

    @property
    def nat_gateway(self) -> bool:
        if self.placement.tracking_vpc == "training" and self.placement.training_vpc:
            return self.placement.training_vpc.nat_gateway
        return bool(self.placement.new_vpc and self.placement.new_vpc.nat_gateway)

    @property
    def training_availability_zones(self) -> tuple[str, ...]:
        if self.placement.training_vpc:
            return tuple(sorted({s.availability_zone for s in self.placement.training_vpc.subnets}))
        return self.availability_zones
