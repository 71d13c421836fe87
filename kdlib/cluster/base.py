"""The cluster backend interface: what every experiment may rely on.

An experiment needs only a kubeconfig, the names of the kwok nodes, and whether the
control plane runs Kd binaries. A backend (``local`` processes, or a kubeadm cluster
over ``ssh``) provides those through :class:`ClusterInfo` once started.

A cluster moves through three states: ``new`` → ``running`` → ``closed``. It is a
context manager; leaving the ``with`` block stops it whatever happened inside,
including Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import enum
import signal
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config

from ..errors import ClusterStateError


class State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    CLOSED = "closed"


@dataclass(frozen=True)
class ClusterInfo:
    """What an experiment knows about the cluster it runs on."""

    backend: str
    kubeconfig: Path
    node_names: tuple[str, ...]
    kd: bool
    versions: dict[str, str] = field(default_factory=dict)
    real_node_names: tuple[str, ...] = ()  # real kubelets (local backend: real_nodes=K)

    def api_client(self) -> client.ApiClient:
        """A fresh Kubernetes API client for this cluster."""
        configuration = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=configuration)
        configuration.connection_pool_maxsize = 32  # parallel node and object creation
        return client.ApiClient(configuration)

    def with_nodes(self, node_names: list[str]) -> "ClusterInfo":
        return ClusterInfo(self.backend, self.kubeconfig, tuple(node_names), self.kd, dict(self.versions),
                           self.real_node_names)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the same clean-up runs."""


class Cluster(ABC):
    """A cluster that experiments can run on. Subclasses implement ``_start``/``_stop``."""

    backend: str = "abstract"

    def __init__(self) -> None:
        self._state = State.NEW
        self._info: ClusterInfo | None = None
        self._previous_sigterm: Any = None

    @abstractmethod
    def _start(self) -> ClusterInfo: ...

    @abstractmethod
    def _stop(self) -> None: ...

    @property
    def state(self) -> State:
        return self._state

    @property
    def info(self) -> ClusterInfo:
        if self._state is not State.RUNNING or self._info is None:
            raise ClusterStateError(f"the {self.backend} cluster is {self._state.value}, not running")
        return self._info

    @property
    def kubeconfig(self) -> Path:
        return self.info.kubeconfig

    def api_client(self) -> client.ApiClient:
        return self.info.api_client()

    def start(self) -> ClusterInfo:
        if self._state is not State.NEW:
            raise ClusterStateError(f"the {self.backend} cluster is {self._state.value}; a cluster starts once")
        self._info = self._start()
        self._state = State.RUNNING
        return self._info

    def stop(self) -> None:
        """Stop the cluster; stopping twice is harmless."""
        if self._state is State.CLOSED:
            return
        try:
            self._stop()
        finally:
            self._state = State.CLOSED

    def __enter__(self) -> "Cluster":
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, raise_terminated)
        try:
            self.start()
        except BaseException:
            self._restore_sigterm()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop()
        finally:
            self._restore_sigterm()

    def _restore_sigterm(self) -> None:
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._state.value}>"


def raise_terminated(signum: int, frame: object) -> None:
    """A SIGTERM handler: raise like Ctrl-C, so that the same clean-up runs."""
    raise _Terminated()
