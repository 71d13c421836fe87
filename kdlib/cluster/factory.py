"""Open a cluster of the chosen backend for an experiment suite."""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError
from .base import Cluster
from .local import LocalCluster, default_state_dir, down


def suite_state_dir() -> Path:
    """The suite's own local cluster, apart from one started by `kdlib local up`."""
    return default_state_dir().parent / "suite"


def open_cluster(backend: str, *, nodes: int, kd: bool, bin_dir: Path | None, real_nodes: int = 0) -> Cluster:
    """A not-yet-started cluster; use it as a context manager."""
    if backend == "local":
        # The caller holds the suite lock, so what is left here belongs to a suite
        # that was killed (e.g. its kernel): clear it rather than refuse to start.
        down(suite_state_dir(), log=lambda message: None)
        return LocalCluster(nodes=nodes, kd=kd, bin_dir=bin_dir if kd else None, state_dir=suite_state_dir(),
                            real_nodes=real_nodes)
    if backend == "ssh":
        raise ConfigError("the ssh backend is not part of this version of kdlib yet; use backend='local'")
    raise ConfigError(f"unknown backend {backend!r}")
