"""Cluster backends behind one interface (:class:`Cluster`, :class:`ClusterInfo`)."""

from .base import Cluster, ClusterInfo, State
from .local import LocalCluster

__all__ = ["Cluster", "ClusterInfo", "State", "LocalCluster"]
