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
from .messages import SpecError, SpecInvalid, render_validation_error
from .model import NOT_ENVIRONMENTS, STACKS_DIR, EnvironmentSpec


def resolve_environment_path(env_or_file: str, stacks_dir: Path = STACKS_DIR) -> Path:
    """`prod` -> stacks/prod.yaml; a path is used as given."""
    candidate = Path(env_or_file)
    if candidate.suffix in (".yaml", ".yml") or candidate.parent != Path("."):
        return candidate
    return stacks_dir / f"{env_or_file}.yaml"


def environment_name(path: Path) -> str:
    return re.sub(r"[^a-z0-9-]", "-", path.stem.lower())


def required_keys() -> list[str]:
    """The top-level keys an environment must end up with: EnvironmentSpec's fields without a default
    (the name comes from the file name, source_file from the loader)."""
    return [key for key, info in EnvironmentSpec.model_fields.items()
            if info.is_required() and key not in ("name", "source_file")]


def _words(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def empty_file_error(layered: Layered) -> SpecError:
    """One line for a file with nothing in it, instead of one `is missing` line per required key."""
    keys = required_keys()
    base = Path(layered.top_file).parent / "base.yaml"
    try:
        inherited = [k for k in keys if k in load_layered(base).data] if base.is_file() else []
    except SpecInvalid:
        inherited = []
    if inherited:  # what base.yaml sets, `extends: base` brings
        listed = [f"extends (or {_words(inherited)})"] + [k for k in keys if k not in inherited]
        hint = "most environment files start with 'extends: base'"
    else:
        listed, hint = keys, "or 'extends:' a file that sets some of them"
    return SpecError(layered.top_file, "", f"the file is empty; expected at least {_words(listed)} ({hint})")


def spec_from_layered(layered: Layered, default_name: str) -> EnvironmentSpec:
    if not layered.data and len(layered.files) == 1:  # nothing set, nothing extended: empty or comments only
        raise SpecInvalid([empty_file_error(layered)])
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
