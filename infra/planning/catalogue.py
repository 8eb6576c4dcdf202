"""Read-only data shipped with the package: instance classes, engine versions, prices, regions.

Each data file records where its figures come from and on what date; this module only loads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml


def _load(name: str) -> dict[str, Any]:
    text = resources.files("infra.data").joinpath(name).read_text(encoding="utf-8")
    return yaml.safe_load(text)


@dataclass(frozen=True)
class InstanceClass:
    name: str
    family: str  # burstable | general_purpose | memory_optimized
    vcpu: int
    memory_gib: float
    network_gbps: float
    ebs_baseline_mbps: int
    baseline_cpu_percent: int | None = None  # burstable only

    @property
    def burstable(self) -> bool:
        return self.family == "burstable"

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_gib * 1024**3)

    @property
    def ebs_baseline_mib_per_s(self) -> float:
        return self.ebs_baseline_mbps * 1_000_000 / 8 / 1024**2


@lru_cache(maxsize=None)
def instance_classes() -> tuple[InstanceClass, ...]:
    return tuple(InstanceClass(**row) for row in _load("rds_instance_classes.yaml")["classes"])


def instance_class(name: str) -> InstanceClass:
    for cls in instance_classes():
        if cls.name == name:
            return cls
    raise KeyError(name)


@lru_cache(maxsize=None)
def engine_majors() -> tuple[int, ...]:
    return tuple(_load("rds_instance_classes.yaml")["engine_versions"]["majors"])


@dataclass(frozen=True)
class AuroraOffer:
    """What Aurora PostgreSQL offers of the catalogue (rds_instance_classes.yaml, aurora_postgresql)."""

    majors: tuple[int, ...]
    classes: tuple[str, ...]
    max_readers: int
    max_storage_gib: int


@lru_cache(maxsize=None)
def aurora() -> AuroraOffer:
    data = _load("rds_instance_classes.yaml")["aurora_postgresql"]
    return AuroraOffer(tuple(data["majors"]), tuple(data["classes"]), int(data["max_readers"]), int(data["max_storage_gib"]))


@lru_cache(maxsize=None)
def default_engine_version() -> str:
    return str(_load("rds_instance_classes.yaml")["engine_versions"]["default"])


@lru_cache(maxsize=None)
def regions() -> tuple[str, ...]:
    return tuple(_load("regions.yaml")["regions"])


@lru_cache(maxsize=None)
def recovery_pairs() -> dict[str, str]:
    return dict(_load("regions.yaml").get("recovery_pairs") or {})


@lru_cache(maxsize=None)
def price_table() -> dict[str, Any]:
    return _load("prices.yaml")


@lru_cache(maxsize=None)
def measurements() -> dict[str, Any]:
    return _load("measurements.yaml")


@lru_cache(maxsize=None)
def ec2_instance_types() -> tuple[dict[str, Any], ...]:
    return tuple(_load("ec2_instance_types.yaml")["types"])


@lru_cache(maxsize=None)
def mlflow_indexes() -> dict[str, Any]:
    return _load("mlflow_indexes.yaml")
