"""The local backend: a real control plane as processes on this machine, kwok nodes."""

from .cluster import LocalCluster, default_state_dir, down, status

__all__ = ["LocalCluster", "default_state_dir", "down", "status"]
