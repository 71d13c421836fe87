"""kdlib: reproduce the figures of the Kubedirect paper (NSDI '26) on a local or real cluster.

Nothing runs at import time: the notebooks import this package in their kernels.
"""

from .cluster import Cluster, ClusterInfo, LocalCluster
from .errors import KdlibError

__all__ = ["Cluster", "ClusterInfo", "LocalCluster", "KdlibError"]
__version__ = "0.1.0"
