"""The environment file: its schema (pydantic), loading with layering, and validation errors in our own form.

`load_environment("stacks/prod.yaml")` returns an `EnvironmentSpec` or raises `SpecInvalid` whose
errors each read `stacks/prod.yaml: database.read_replicas: -1 is not allowed; expected an integer from 0 to 15`.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import catalogue
from .errors import SpecError, SpecInvalid, show_value
from .guards import burstable_class, synchronous_commit_off_allowed
from .layering import Layered, load_layered

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
    def deletion_protection(self) -> bool:
        return self.production if self.database.deletion_protection is None else self.database.deletion_protection

    @property
    def backup_retention_days(self) -> int:
        if self.database.backup_retention_days is not None:
            return self.database.backup_retention_days
        return 14 if self.production else 7

    @property
    def resource_tags(self) -> dict[str, str]:
        return {**self.tags, "environment": self.name}

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


# ---------------------------------------------------------------------------------------------
# Rendering pydantic's errors in our one-line form
# ---------------------------------------------------------------------------------------------

def _field_info(model: type[BaseModel], loc: tuple[Any, ...]):
    """The FieldInfo and the model owning the last named key of `loc`, walking nested sections."""
    current: Any = model
    info = None
    owner = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        if isinstance(current, type) and issubclass(current, BaseModel):
            if part not in current.model_fields:
                return None, current
            owner = current
            info = current.model_fields[part]
            current = _inner_model(info.annotation)
        else:
            current = None
    return info, owner


def _inner_model(annotation: Any) -> Any:
    """The model type inside Optional[...] / list[...] annotations, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _bounds(info: Any) -> tuple[Any, Any]:
    low = high = None
    for meta in getattr(info, "metadata", []):
        if isinstance(meta, annotated_types.Ge):
            low = meta.ge
        elif isinstance(meta, annotated_types.Gt):
            low = meta.gt
        elif isinstance(meta, annotated_types.Le):
            high = meta.le
        elif isinstance(meta, annotated_types.Lt):
            high = meta.lt
    return low, high


def _kind(info: Any) -> str:
    text = repr(getattr(info, "annotation", ""))
    if "float" in text:
        return "a number"
    if "int" in text:
        return "an integer"
    if "bool" in text:
        return "true or false"
    return "a value"


def _expected_range(info: Any) -> str:
    kind = _kind(info)
    low, high = _bounds(info)
    if low is not None and high is not None:
        return f"{kind} from {low} to {high}"
    if low is not None:
        return f"{kind} of at least {low}"
    if high is not None:
        return f"{kind} of at most {high}"
    return kind


def _did_you_mean(key: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"{hint}allowed keys: {', '.join(allowed)}"


def _pattern_description(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """Describe the pattern a string at `loc` must match, using the Field description of its type."""
    info, _ = _field_info(model, loc)
    annotation = getattr(info, "annotation", None)
    for candidate in _annotated_parts(annotation):
        for meta in getattr(candidate, "__metadata__", ()):
            description = getattr(meta, "description", None)
            if description:
                return description
    if info is not None and info.description:
        return info.description
    if loc and loc[-1] == "name":
        return "lowercase letters, digits and hyphens, starting with a letter, at most 31 characters"
    return "a value of the documented form"


def _annotated_parts(annotation: Any) -> list[Any]:
    found = []
    if hasattr(annotation, "__metadata__"):
        found.append(annotation)
    for arg in getattr(annotation, "__args__", ()) or ():
        found.extend(_annotated_parts(arg))
    return found


def _message(model: type[BaseModel], error: dict[str, Any]) -> tuple[tuple[Any, ...], str]:
    loc = tuple(part for part in error["loc"] if not (isinstance(part, str) and (part.startswith("function-") or part in ("str", "int", "float", "bool", "list", "dict"))))
    loc = tuple(p for p in loc if not (isinstance(p, str) and p[:1].isupper()))  # union branch names
    kind = error["type"]
    value = error.get("input")
    info, owner = _field_info(model, loc)
    shown = show_value(value)
    if kind == "extra_forbidden":
        allowed = [k for k in owner.model_fields if k != "source_file"]
        return loc, f"unknown key; {_did_you_mean(str(loc[-1]), allowed)}"
    if kind == "missing":
        return loc, f"is missing; expected {_expected_range(info) if _kind(info) != 'a value' else 'this key to be set'}"
    if kind in ("literal_error", "enum"):
        return loc, f"{shown} is not allowed; expected one of {error['ctx']['expected']}"
    if kind in ("int_type", "int_parsing", "int_from_float", "float_type", "float_parsing", "bool_type", "bool_parsing",
                "greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        if info is None:
            return loc, f"{shown} is not allowed; {error['msg'].lower()}"
        return loc, f"{shown} is not allowed; expected {_expected_range(info)}"
    if kind in ("string_type",):
        return loc, f"{shown} is not allowed; expected text (quote it in YAML)"
    if kind == "string_pattern_mismatch":
        return loc, f"{shown} is not allowed; expected {_pattern_description(model, loc)}"
    if kind == "string_too_long":
        return loc, f"{shown} is not allowed; expected at most {error['ctx']['max_length']} characters"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return loc, f"{shown} is not allowed; expected a mapping of keys"
    if kind == "list_type":
        return loc, f"{shown} is not allowed; expected a list"
    if kind == "too_short":
        return loc, f"has {error['ctx'].get('actual_length')} entries; expected at least {error['ctx']['min_length']}"
    if kind == "too_long":
        return loc, f"has {error['ctx'].get('actual_length')} entries; expected at most {error['ctx']['max_length']}"
    return loc, f"{shown} is not allowed; {error['msg']}"


def _key(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def render_validation_error(exc: ValidationError, layered: Layered) -> list[SpecError]:
    errors = []
    for error in exc.errors(include_url=False):
        loc, message = _message(EnvironmentSpec, error)
        errors.append(SpecError(layered.file_for(loc), _key(loc), message))
    return errors


# ---------------------------------------------------------------------------------------------
# Checks that span keys (contradictions) and checks against the shipped catalogue
# ---------------------------------------------------------------------------------------------

def _check(spec: EnvironmentSpec, layered: Layered) -> list[SpecError]:
    problems: list[tuple[tuple[Any, ...], str]] = []

    def bad(loc: tuple[Any, ...], message: str) -> None:
        problems.append((loc, message))

    if spec.region not in catalogue.regions():
        close = difflib.get_close_matches(spec.region, catalogue.regions(), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        bad(("region",), f"{show_value(spec.region)} is not allowed; {hint}expected an AWS region where RDS is offered, such as us-east-1")

    db = spec.database
    if spec.engine_major not in catalogue.engine_majors():
        majors = ", ".join(str(m) for m in catalogue.engine_majors())
        bad(("database", "engine_version"), f"{show_value(db.engine_version)} is not allowed; expected a supported RDS PostgreSQL major version ({majors}), optionally with a minor such as '17.6'")
    if db.instance_class is not None:
        names = [c.name for c in catalogue.instance_classes()]
        if db.instance_class not in names:
            close = difflib.get_close_matches(db.instance_class, names, n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            bad(("database", "instance_class"), f"{show_value(db.instance_class)} is not allowed; {hint}expected a class from the catalogue (mlflow-infra classes lists them), such as db.r7g.large")
        elif spec.production and burstable_class(db.instance_class):
            bad(("database", "instance_class"), f"{show_value(db.instance_class)} is not allowed for tier production; expected a general purpose or memory optimised class (burstable classes throttle under sustained logging load)")
    if db.storage_gib is not None and db.max_storage_gib is not None and db.max_storage_gib < db.storage_gib:
        bad(("database", "max_storage_gib"), f"{db.max_storage_gib} is not allowed; expected at least database.storage_gib ({db.storage_gib})")
    if db.durability == "relaxed" and not synchronous_commit_off_allowed(spec.production, db.durability):
        bad(("database", "durability"), "'relaxed' is not allowed for tier production; expected 'strict' (relaxed turns synchronous_commit off and can lose the last acknowledged writes on a crash)")

    _check_placement(spec, bad)
    _check_tracking(spec, bad)

    if "owner" not in spec.tags:
        bad(("tags", "owner"), "is missing; expected the team that owns this environment, e.g. owner: ml-platform")
    if "environment" in spec.tags and spec.tags["environment"] != spec.name:
        bad(("tags", "environment"), f"{show_value(spec.tags['environment'])} is not allowed; expected it unset (it is set to the environment name, {show_value(spec.name)})")

    return [SpecError(layered.file_for(loc), _key(loc), message) for loc, message in problems]


def _check_placement(spec: EnvironmentSpec, bad) -> None:
    placement = spec.placement
    if placement.tracking_vpc == "training" and placement.training_vpc is None:
        bad(("placement", "training_vpc"), "is missing; expected the training VPC (vpc_id, cidr, subnets) when placement.tracking_vpc is 'training', or set tracking_vpc: new with new_vpc")
    if placement.tracking_vpc == "new" and placement.new_vpc is None:
        bad(("placement", "new_vpc"), "is missing; expected cidr and availability_zones when placement.tracking_vpc is 'new'")
    if placement.tracking_vpc == "training" and placement.new_vpc is not None:
        bad(("placement", "new_vpc"), "is not allowed when placement.tracking_vpc is 'training'; expected it removed, or tracking_vpc: new")

    training = placement.training_vpc
    if training is not None:
        network = _network(training.cidr, ("placement", "training_vpc", "cidr"), bad)
        zones = {s.availability_zone for s in training.subnets}
        if placement.tracking_vpc == "training" and len(zones) < 2:
            bad(("placement", "training_vpc", "subnets"), f"cover {len(zones)} availability zone; expected subnets in at least 2 zones (an RDS subnet group and a load balancer need two)")
        for i, subnet in enumerate(training.subnets):
            if not subnet.availability_zone.startswith(spec.region):
                bad(("placement", "training_vpc", "subnets", i, "availability_zone"), f"{show_value(subnet.availability_zone)} is not allowed; expected a zone of region {spec.region}")
        ids = [s.id for s in training.subnets]
        if len(set(ids)) != len(ids):
            bad(("placement", "training_vpc", "subnets"), "list a subnet twice; expected each subnet once")
    else:
        network = None
    new = placement.new_vpc
    if new is not None:
        new_network = _network(new.cidr, ("placement", "new_vpc", "cidr"), bad)
        if new_network is not None and not 16 <= new_network.prefixlen <= 22:
            bad(("placement", "new_vpc", "cidr"), f"{show_value(new.cidr)} is not allowed; expected a prefix from /16 to /22 (room for public and private subnets in each zone)")
        if new_network is not None and network is not None and new_network.overlaps(network):
            bad(("placement", "new_vpc", "cidr"), f"{show_value(new.cidr)} is not allowed; expected a range that does not overlap the training VPC ({training.cidr}), so the two can be peered")
        for i, zone in enumerate(new.availability_zones):
            if not zone.startswith(spec.region):
                bad(("placement", "new_vpc", "availability_zones", i), f"{show_value(zone)} is not allowed; expected a zone of region {spec.region}")
        if len(set(new.availability_zones)) != len(new.availability_zones):
            bad(("placement", "new_vpc", "availability_zones"), "list a zone twice; expected each zone once")


def _network(cidr: str, loc, bad):
    try:
        network = ipaddress.ip_network(cidr, strict=True)
    except ValueError:
        bad(loc, f"{show_value(cidr)} is not allowed; expected a network address with its prefix, such as 10.40.0.0/16")
        return None
    if not network.is_private:
        bad(loc, f"{show_value(cidr)} is not allowed; expected a private range (10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16)")
    return network


def _check_tracking(spec: EnvironmentSpec, bad) -> None:
    tracking = spec.tracking
    major, minor, _ = (int(x) for x in tracking.mlflow_version.split("."))
    if (major, minor) < MLFLOW_MIN_VERSION:
        bad(("tracking", "mlflow_version"), f"{show_value(tracking.mlflow_version)} is not allowed; expected {MLFLOW_MIN_VERSION[0]}.{MLFLOW_MIN_VERSION[1]}.0 or newer (the UI tier needs --read-replica-backend-store-uri)")
    for role in ("api", "ui"):
        fleet: Fleet = getattr(tracking, role)
        if fleet.min_count is not None and fleet.max_count is not None and fleet.min_count > fleet.max_count:
            bad(("tracking", role, "max_count"), f"{fleet.max_count} is not allowed; expected at least tracking.{role}.min_count ({fleet.min_count})")
        if fleet.vcpu is not None:
            if tracking.compute == "ecs" and fleet.vcpu not in FARGATE_MEMORY_GIB:
                sizes = ", ".join(f"{v:g}" for v in FARGATE_MEMORY_GIB)
                bad(("tracking", role, "vcpu"), f"{fleet.vcpu:g} is not allowed; expected a Fargate task size: {sizes}")
            elif tracking.compute == "ecs" and fleet.memory_gib is not None and fleet.memory_gib not in FARGATE_MEMORY_GIB[fleet.vcpu]:
                allowed = FARGATE_MEMORY_GIB[fleet.vcpu]
                bad(("tracking", role, "memory_gib"), f"{fleet.memory_gib:g} is not allowed with vcpu {fleet.vcpu:g}; expected a Fargate size from {allowed[0]:g} to {allowed[-1]:g} GiB")
            elif tracking.compute == "ec2" and fleet.vcpu not in (2, 4, 8):
                bad(("tracking", role, "vcpu"), f"{fleet.vcpu:g} is not allowed for compute ec2; expected 2, 4 or 8 (the instance types in the catalogue)")
        if fleet.memory_gib is not None and fleet.vcpu is None:
            bad(("tracking", role, "vcpu"), "is missing; expected it set together with memory_gib")
    ui = tracking.ui
    if ui.internet_facing and ui.certificate_arn is None:
        bad(("tracking", "ui", "certificate_arn"), "is missing; expected an ACM certificate ARN when the UI is internet-facing (it is served over HTTPS only)")
    if ui.internet_facing and spec.placement.tracking_vpc != "new":
        bad(("tracking", "ui", "internet_facing"), "true is not allowed with placement.tracking_vpc 'training'; expected"
            " placement.tracking_vpc: new (the new VPC gets the public subnets an internet-facing load balancer needs)")
    if ui.internet_facing and tracking.auth == "none":
        bad(("tracking", "ui", "internet_facing"), "true is not allowed while tracking.auth is 'none'; expected tracking.auth: basic for an internet-facing UI")


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------

def resolve_environment_path(env_or_file: str, stacks_dir: Path = STACKS_DIR) -> Path:
    """`prod` -> stacks/prod.yaml; a path is used as given."""
    candidate = Path(env_or_file)
    if candidate.suffix in (".yaml", ".yml") or candidate.parent != Path("."):
        return candidate
    return stacks_dir / f"{env_or_file}.yaml"


def environment_name(path: Path) -> str:
    return re.sub(r"[^a-z0-9-]", "-", path.stem.lower())


def spec_from_layered(layered: Layered, default_name: str) -> EnvironmentSpec:
    data = dict(layered.data)
    data.setdefault("name", default_name)
    try:
        spec = EnvironmentSpec.model_validate({**data, "source_file": layered.top_file})
    except ValidationError as exc:
        raise SpecInvalid(render_validation_error(exc, layered)) from None
    problems = _check(spec, layered)
    if problems:
        raise SpecInvalid(problems)
    return spec


def load_environment(env_or_file: str | Path, stacks_dir: Path = STACKS_DIR) -> EnvironmentSpec:
    """Load, layer and validate one environment file; raises SpecInvalid with one line per problem."""
    path = resolve_environment_path(str(env_or_file), stacks_dir)
    layered = load_layered(path)
    return spec_from_layered(layered, environment_name(path))


def environment_files(stacks_dir: Path = STACKS_DIR) -> list[Path]:
    """Every deployable environment file in `stacks_dir` (layers such as base.yaml excluded)."""
    return sorted(p for p in stacks_dir.glob("*.yaml") if p.stem not in NOT_ENVIRONMENTS and not p.stem.startswith("policy"))
