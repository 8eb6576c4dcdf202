"""mlflow-infra: scalable MLflow tracking on AWS.

The planning side (`load_environment`, `plan`) is pure Python with no Pulumi or AWS imports.
"""

from .errors import SpecError, SpecInvalid
from .plan import CapacityPlan, plan
from .spec import EnvironmentSpec, load_environment

__all__ = ["CapacityPlan", "EnvironmentSpec", "SpecError", "SpecInvalid", "load_environment", "plan"]
