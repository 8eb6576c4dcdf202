"""Ansible-style layering of environment files: `extends:` another file, deep-merge mappings, lists replace.

Every leaf remembers which file set it, so an error names the file the user has to edit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .messages import SpecError, SpecInvalid, show_value

KeyPath = tuple[Any, ...]
MAX_DEPTH = 8  # base -> staging -> prod is three; eight is generous and still catches runaway chains


@dataclass
class Layered:
    """The merged document and, for each key path, the file that last set it."""

    data: dict[str, Any]
    top_file: str
    files: list[str] = field(default_factory=list)  # the chain, most specific first
    origins: dict[KeyPath, str] = field(default_factory=dict)

    def file_for(self, path: KeyPath) -> str:
        """The file that set `path`, or the nearest ancestor that did; the top file otherwise."""
        for end in range(len(path), 0, -1):
            origin = self.origins.get(tuple(path[:end]))
            if origin is not None:
                return origin
        return self.top_file


def display_path(path: Path) -> str:
    """A path as the user would type it: relative to the working directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _read_mapping(path: Path, shown: str) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecInvalid([SpecError(shown, "", "file not found")]) from None
    except OSError as exc:
        raise SpecInvalid([SpecError(shown, "", f"cannot be read ({exc.strerror})")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise SpecInvalid([SpecError(shown, "", f"{where}{problem}; expected valid YAML")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecInvalid([SpecError(shown, "", f"the document is {show_value(data)}; expected a mapping of sections")])
    bad_keys = [k for k in data if not isinstance(k, str)]
    if bad_keys:
        raise SpecInvalid([SpecError(shown, show_value(bad_keys[0]), "is not allowed; expected a key name (text)")])
    return data


def _resolve_extends(value: Any, including: Path, shown: str) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise SpecInvalid([SpecError(shown, "extends", f"{show_value(value)} is not allowed; expected the name of another environment file, such as 'base'")])
    candidate = including.parent / value
    if candidate.suffix not in (".yaml", ".yml"):
        candidate = candidate.with_suffix(".yaml")
    if not candidate.is_file():
        raise SpecInvalid([SpecError(shown, "extends", f"{show_value(value)} is not allowed; expected an existing file next to it ({display_path(candidate)} not found)")])
    return candidate


def _merge(base: Any, overlay: Any, path: KeyPath, origins: dict[KeyPath, str], file: str) -> Any:
    """Deep-merge `overlay` onto `base`: mappings merge key by key, anything else replaces."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = dict(base)
        for key, value in overlay.items():
            merged[key] = _merge(base.get(key), value, path + (key,), origins, file) if key in base else _claim(value, path + (key,), origins, file)
        return merged
    return _claim(overlay, path, origins, file)


def _claim(value: Any, path: KeyPath, origins: dict[KeyPath, str], file: str) -> Any:
    """Record `file` as the origin of `path` and everything below it (dropping older origins)."""
    for stale in [p for p in origins if p[: len(path)] == path]:
        del origins[stale]
    origins[path] = file
    if isinstance(value, dict):
        for key, child in value.items():
            _claim(child, path + (key,), origins, file)
    return value


def load_layered(path: Path) -> Layered:
    """Load `path` and every file it extends, most general first, and merge them."""
    chain: list[tuple[Path, str, dict[str, Any]]] = []
    seen: set[Path] = set()
    current = path
    while True:
        shown = display_path(current)
        resolved = current.resolve()
        if resolved in seen:
            first = display_path(chain[0][0])
            raise SpecInvalid([SpecError(first, "extends", f"the chain {' -> '.join(s for _, s, _ in chain)} -> {shown} loops; expected each file to extend a more general one")])
        if len(chain) >= MAX_DEPTH:
            raise SpecInvalid([SpecError(display_path(chain[0][0]), "extends", f"the chain is longer than {MAX_DEPTH} files; expected a shallower layering")])
        seen.add(resolved)
        data = _read_mapping(current, shown)
        chain.append((current, shown, data))
        if "extends" not in data:
            break
        current = _resolve_extends(data["extends"], current, shown)

    origins: dict[KeyPath, str] = {}
    merged: dict[str, Any] = {}
    for _, shown, data in reversed(chain):
        body = {k: v for k, v in data.items() if k != "extends"}
        merged = _merge(merged, body, (), origins, shown)
    return Layered(data=merged, top_file=chain[0][1], files=[s for _, s, _ in chain], origins=origins)
