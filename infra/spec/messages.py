"""The one error type users see: a sentence naming the file, the key, the value and what is allowed,
and pydantic's validation errors rendered in that form."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import annotated_types
from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from .layering import Layered


@dataclass(frozen=True)
class SpecError:
    """One problem in an environment file, rendered as a single line."""

    file: str
    key: str
    message: str

    def __str__(self) -> str:
        if self.key:
            return f"{self.file}: {self.key}: {self.message}"
        return f"{self.file}: {self.message}"


class SpecInvalid(Exception):
    """Raised before anything is planned or provisioned; carries every problem found."""

    def __init__(self, errors: list[SpecError]):
        if not errors:
            raise ValueError("SpecInvalid needs at least one error")
        self.errors = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


def show_value(value: object) -> str:
    """A value as the user wrote it in YAML, short enough for one line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return f"'{text}'"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


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
    from .model import EnvironmentSpec

    errors = []
    for error in exc.errors(include_url=False):
        loc, message = _message(EnvironmentSpec, error)
        errors.append(SpecError(layered.file_for(loc), _key(loc), message))
    return errors
