"""The environment file: its schema (model), layering over `extends`, checks that span keys, and
the one-line error messages users see. `load_environment` is the entry point."""

from .load import environment_files, environment_name, load_environment, resolve_environment_path, spec_from_layered
from .messages import SpecError, SpecInvalid
from .model import STACKS_DIR, EnvironmentSpec

__all__ = ["STACKS_DIR", "EnvironmentSpec", "SpecError", "SpecInvalid", "environment_files", "environment_name",
           "load_environment", "resolve_environment_path", "spec_from_layered"]
