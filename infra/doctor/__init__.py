"""`mlflow-infra doctor`: a running deployment diagnosed against its plan, finding by finding."""

from .findings import BOTTLENECKS, Finding, Report, Source

__all__ = ["BOTTLENECKS", "Finding", "Report", "Source"]
