"""Pulumi components. Thin: every figure comes from the plan; each child is usable on its own with
plain, documented Args (see examples/), and MlflowTracking maps the plan onto them."""

from .artifacts import ArtifactsArgs, ArtifactStore
from .database import DatabaseArgs, ProxySettings, TrackingDatabase
from .monitoring import MonitoringArgs, TrackingMonitoring, target_dimensions
from .network import NetworkArgs, TrackingNetwork
from .parameter_group import ParameterGroupArgs, ParameterSetting, TrackingParameterGroup
from .service import FleetResources, ServiceArgs, TrackingService
from .tracking import MlflowTracking, MlflowTrackingArgs

__all__ = ["ArtifactStore", "ArtifactsArgs", "DatabaseArgs", "FleetResources", "MlflowTracking", "MlflowTrackingArgs",
           "MonitoringArgs", "NetworkArgs", "ParameterGroupArgs", "ParameterSetting", "ProxySettings", "ServiceArgs",
           "TrackingDatabase", "TrackingMonitoring", "TrackingNetwork", "TrackingParameterGroup", "TrackingService",
           "target_dimensions"]
