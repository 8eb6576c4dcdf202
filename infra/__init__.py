"""mlflow-infra: scalable MLflow tracking on AWS.

The planning side (`load_environment`, `plan`) is pure Python with no Pulumi or AWS imports.
"""

from .spec import SpecError, SpecInvalid
from .planning.plan import CapacityPlan, plan
from .spec import EnvironmentSpec, load_environment

__all__ = ["CapacityPlan", "EnvironmentSpec", "MlflowTracking", "MlflowTrackingArgs", "SpecError", "SpecInvalid",
           "load_environment", "plan"]


def __getattr__(name: str):
    # the Pulumi components load on first use, so planning and the CLI never import Pulumi
    if name in ("MlflowTracking", "MlflowTrackingArgs"):
        from .aws import tracking

        return getattr(tracking, name)
    raise AttributeError(f"module 'infra' has no attribute {name!r}")
