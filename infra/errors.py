"""The one error type users see: a sentence naming the file, the key, the value and what is allowed."""

from __future__ import annotations

from dataclasses import dataclass


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
