"""kdlib: reproduce the figures of the Kubedirect paper (NSDI '26) on a local or real cluster.

Nothing runs at import time: the notebooks import this package in their kernels.
Subpackages load on first use: ``kdlib.experiments.microbench`` (Figures 9–11),
``kdlib.cluster`` (backends), ``kdlib.publish`` (charts and the book), ``kdlib.store``.
"""

from __future__ import annotations

import importlib
from typing import Any

from .cluster import Cluster, ClusterInfo, LocalCluster
from .errors import KdlibError

__all__ = ["Cluster", "ClusterInfo", "LocalCluster", "KdlibError"]
__version__ = "0.1.0"

_LAZY = {"experiments", "k8s", "log", "paths", "provenance", "publish", "stats", "store"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'kdlib' has no attribute {name!r}")
