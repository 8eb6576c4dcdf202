"""The local topology: an environment's plan realised on this machine (see topology.py)."""

from .topology import LocalTopology, LocalTopologyError, TopologyState

__all__ = ["LocalTopology", "LocalTopologyError", "TopologyState"]
