"""The local backend: a real control plane as processes on this machine, kwok nodes."""

from .cluster import LocalCluster
from .state import clusters, default_state_dir, down, status, suite_state_dir

__all__ = ["LocalCluster", "clusters", "default_state_dir", "down", "status", "suite_state_dir"]
