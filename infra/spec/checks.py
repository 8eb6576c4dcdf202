"""Checks that span keys (contradictions) and checks against the shipped catalogue, and the
predicates they share with the plan and the policy rules, so the environment file and the deployed
resources are held to the same line."""

from __future__ import annotations

import difflib
import ipaddress
from typing import Any

from ..planning import catalogue
from .layering import Layered
from .messages import SpecError, _key, show_value
from .model import MLFLOW_MIN_VERSION, FARGATE_MEMORY_GIB, EnvironmentSpec, Fleet

# what an Aurora cluster starts from (database.restore_from's ARN kinds): a cluster snapshot, or a
# running cluster (the promoted Global Database secondary) cloned copy-on-write
AURORA_SOURCES = ("cluster-snapshot", "cluster")


def burstable_class(instance_class: str) -> bool:
    """T-family classes run on CPU credits: fine for development, not for sustained logging."""
    return instance_class.startswith("db.t")


def synchronous_commit_off_allowed(production: bool, durability: str) -> bool:
    """Only an explicitly relaxed, non-production environment may trade the last writes for speed."""
    return durability == "relaxed" and not production


# ---------------------------------------------------------------------------------------------
# Checks that span keys (contradictions) and checks against the shipped catalogue
# ---------------------------------------------------------------------------------------------

def _check_engine(spec: EnvironmentSpec, bad) -> None:
    """Aurora's own offer (majors, classes, readers, storage it grows itself) and the failover requirement."""
    from ..planning.engine import AURORA_FAILOVER_S, RDS_FAILOVER_S

    db = spec.database
    aurora = catalogue.aurora()
    if db.engine == "aurora":
        if spec.engine_major not in aurora.majors:
            majors = ", ".join(str(m) for m in aurora.majors)
            bad(("database", "engine_version"), f"{show_value(db.engine_version)} is not allowed with database.engine aurora; expected an Aurora PostgreSQL major version ({majors})")
        if db.instance_class is not None and db.instance_class not in aurora.classes and db.instance_class in [c.name for c in catalogue.instance_classes()]:
            bad(("database", "instance_class"), f"{show_value(db.instance_class)} is not allowed with database.engine aurora; expected a class Aurora PostgreSQL offers ({', '.join(aurora.classes)})")
        if db.read_replicas is not None and db.read_replicas > aurora.max_readers:
            bad(("database", "read_replicas"), f"{db.read_replicas} is not allowed with database.engine aurora; expected at most {aurora.max_readers} readers per cluster")
        for key in ("storage_gib", "max_storage_gib"):
            if getattr(db, key) is not None:
                bad(("database", key), f"{getattr(db, key)} is not allowed with database.engine aurora; expected the key left out (Aurora's storage grows by itself, up to {aurora.max_storage_gib:,} GiB)")
    _check_recovery(spec, bad)
    if db.max_failover_seconds is not None:
        if db.max_failover_seconds < AURORA_FAILOVER_S:
            bad(("database", "max_failover_seconds"), f"{db.max_failover_seconds} is not allowed; expected at least {AURORA_FAILOVER_S} (Aurora documents a failover within about {AURORA_FAILOVER_S} s, RDS Multi-AZ 60-{RDS_FAILOVER_S} s)")
        elif db.engine == "rds" and db.max_failover_seconds < RDS_FAILOVER_S:
            bad(("database", "max_failover_seconds"), f"{db.max_failover_seconds} is not allowed with database.engine rds; expected at least {RDS_FAILOVER_S} (RDS Multi-AZ documents 60-{RDS_FAILOVER_S} s) or database.engine auto or aurora")
        if not spec.multi_az:
            bad(("database", "max_failover_seconds"), f"{db.max_failover_seconds} is not allowed with database.multi_az false; expected multi_az true (a failover needs a standby or reader in a second zone) or the key left out")


def _check_recovery(spec: EnvironmentSpec, bad) -> None:
    """A second region that exists, differs from the first and is named when the region has no pair;
    a Global Database only on Aurora, on the memory-optimized classes it requires."""
    db = spec.database
    mode = spec.disaster_recovery
    if db.secondary_region is not None:
        if mode == "none":
            bad(("database", "secondary_region"), f"{show_value(db.secondary_region)} is not allowed with database.disaster_recovery none; expected the key left out, or disaster_recovery backups or global")
        elif db.secondary_region == spec.region:
            bad(("database", "secondary_region"), f"{show_value(db.secondary_region)} is not allowed; expected a region other than the environment's region {spec.region}")
        elif db.secondary_region not in catalogue.regions():
            close = difflib.get_close_matches(db.secondary_region, catalogue.regions(), n=1)
            hint = f"did you mean '{close[0]}'? " if close else ""
            bad(("database", "secondary_region"), f"{show_value(db.secondary_region)} is not allowed; {hint}expected an AWS region where RDS is offered, such as us-west-2")
    elif mode != "none" and spec.secondary_region is None:
        bad(("database", "secondary_region"), f"is missing; disaster_recovery {mode} needs a second region and {spec.region} has no default pair; expected a region such as us-west-2")
    if db.restore_from is not None:
        kind, where = db.restore_from.split(":")[5], db.restore_from.split(":")[3]
        aurora_only = db.engine == "aurora"
        if aurora_only and kind not in AURORA_SOURCES:
            bad(("database", "restore_from"), f"{show_value(db.restore_from)} is not allowed with database.engine aurora; expected a DB cluster snapshot ARN (arn:aws:rds:REGION:ACCOUNT:cluster-snapshot:NAME) or a DB cluster ARN (arn:aws:rds:REGION:ACCOUNT:cluster:NAME)")
        elif not aurora_only and kind in AURORA_SOURCES:
            bad(("database", "restore_from"), f"{show_value(db.restore_from)} is not allowed; a DB cluster or cluster snapshot restores an Aurora cluster: expected database.engine aurora, or replicated automated backups or a DB snapshot for RDS")
        elif where != spec.region:
            bad(("database", "restore_from"), f"{show_value(db.restore_from)} is not allowed; expected backups, a snapshot or a cluster in the environment's region {spec.region} (where the restored database runs)")
    if db.restore_time is not None and not (db.restore_from or "").split(":")[5:6] == ["auto-backup"]:
        bad(("database", "restore_time"), f"{show_value(db.restore_time)} is not allowed without replicated automated backups in database.restore_from; expected the key left out (a snapshot restores as it was taken)")
    if mode == "global":
        if db.engine == "rds":
            bad(("database", "disaster_recovery"), "'global' is not allowed with database.engine rds; expected 'backups', or engine auto or aurora (a Global Database is Aurora's)")
        if db.instance_class is not None and burstable_class(db.instance_class):
            bad(("database", "instance_class"), f"{show_value(db.instance_class)} is not allowed with database.disaster_recovery global; expected a memory optimized class (an Aurora Global Database requires them)")
    _check_secondary_placement(spec, bad)


def _check_secondary_placement(spec: EnvironmentSpec, bad) -> None:
    """A Global Database's secondary cluster needs private subnets in two zones or more of the second
    region (an RDS subnet group needs two zones); nothing to place without one."""
    placed, mode, loc = spec.database.secondary_placement, spec.disaster_recovery, ("database", "secondary_placement")
    if placed is None:
        if mode == "global":  # named where global is set: the file to add the placement to
            bad(("database", "disaster_recovery"), "'global' is not allowed without database.secondary_placement; expected"
                f" vpc_id, cidr and subnets (two zones or more) of a VPC in {spec.secondary_region or 'the second region'}"
                " for the secondary cluster, or disaster_recovery backups")
        return
    if mode != "global":
        bad(loc, f"is not allowed with database.disaster_recovery {mode}; expected the key left out, or disaster_recovery global")
        return
    _network(placed.cidr, (*loc, "cidr"), bad)
    region = spec.secondary_region or ""
    _check_subnets(placed.subnets, loc, region, f"the second region {region}", bad, "an RDS subnet group needs two")


def _check_subnets(subnets, loc: tuple, region: str, where: str, bad, two_zones_why: str | None) -> None:
    """Subnets (at `loc`) in `region` (`where` names it), each listed once, and with `two_zones_why`
    (the reason they must) in two zones or more."""
    zones = {s.availability_zone for s in subnets}
    if two_zones_why and len(zones) < 2:
        bad((*loc, "subnets"), f"cover {len(zones)} availability zone; expected subnets in at least 2 zones ({two_zones_why})")
    for i, subnet in enumerate(subnets):
        if not subnet.availability_zone.startswith(region):
            bad((*loc, "subnets", i, "availability_zone"), f"{show_value(subnet.availability_zone)} is not allowed; expected a zone of {where}")
    ids = [s.id for s in subnets]
    if len(set(ids)) != len(ids):
        bad((*loc, "subnets"), "list a subnet twice; expected each subnet once")


def check(spec: EnvironmentSpec, layered: Layered) -> list[SpecError]:
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
    _check_engine(spec, bad)
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
        _check_subnets(training.subnets, ("placement", "training_vpc"), spec.region, f"region {spec.region}", bad,
                       "an RDS subnet group and a load balancer need two" if placement.tracking_vpc == "training" else None)
        if placement.tracking_vpc == "training":
            for i, subnet in enumerate(training.subnets):
                first = next(j for j, other in enumerate(training.subnets) if other.availability_zone == subnet.availability_zone)
                if first != i:  # a load balancer (and an interface endpoint) takes one subnet per zone
                    bad(("placement", "training_vpc", "subnets", i), f"{show_value(subnet.id)} is not allowed; subnet"
                        f" {show_value(training.subnets[first].id)} is in {subnet.availability_zone} already; expected one subnet"
                        " per availability zone (an Application Load Balancer takes one subnet per zone)")
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
