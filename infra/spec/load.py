"""Loading an environment: resolve its file, layer it over what it extends, validate it.

`load_environment("stacks/prod.yaml")` returns an `EnvironmentSpec` or raises `SpecInvalid` whose
errors each read `stacks/prod.yaml: database.read_replicas: -1 is not allowed; expected an integer from 0 to 15`.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import ValidationError

from .checks import check
from .layering import Layered, load_layered
from .messages import SpecInvalid, render_validation_error
from .model import NOT_ENVIRONMENTS, STACKS_DIR, EnvironmentSpec


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
    problems = check(spec, layered)
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
