"""Pulumi components. Thin: every figure comes from the plan; each is usable on its own."""

from .artifacts import ArtifactsArgs, ArtifactStore
from .database import DatabaseArgs, TrackingDatabase
from .monitoring import MonitoringArgs, TrackingMonitoring
from .network import NetworkArgs, TrackingNetwork
from .service import ServiceArgs, TrackingService
from .tracking import MlflowTracking, MlflowTrackingArgs

__all__ = ["ArtifactStore", "ArtifactsArgs", "DatabaseArgs", "MlflowTracking", "MlflowTrackingArgs", "MonitoringArgs",
           "NetworkArgs", "ServiceArgs", "TrackingDatabase", "TrackingMonitoring", "TrackingNetwork", "TrackingService"]
