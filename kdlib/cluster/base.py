"""The cluster backend interface: what every experiment may rely on.

An experiment needs only a kubeconfig, the names of the kwok nodes, and whether the
control plane runs Kd binaries. A backend (``local`` processes, or a cluster over
``ssh``) provides those through :class:`ClusterInfo` once started, says which systems
under test it cannot run (:meth:`Cluster.why_not`), and resizes its kwok nodes.

A cluster moves through three states: ``new`` → ``running`` → ``closed``. It is a
context manager; leaving the ``with`` block stops it whatever happened inside,
including Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import hashlib
import os
import signal
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from kubernetes import client, config

from ..errors import ClusterStateError, api_errors

if TYPE_CHECKING:
    from ..baselines import Baseline


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
    sources: dict[str, str] = field(default_factory=dict)  # component -> where its binary came from
    real_node_names: tuple[str, ...] = ()  # real kubelets (local backend: real_nodes=K)
    client_limits: dict[str, str] = field(default_factory=dict)  # component -> its client limit, as given

    def api_client(self) -> client.ApiClient:
        """A fresh Kubernetes API client for this cluster."""
        configuration = client.Configuration()
        config.load_kube_config_from_dict(credentials_beside(self.kubeconfig), client_configuration=configuration)
        configuration.connection_pool_maxsize = 32  # parallel node and object creation
        return client.ApiClient(configuration)


#: The kubeconfig fields whose content the Kubernetes client needs as files.
_EMBEDDED = {"certificate-authority-data": "certificate-authority", "client-certificate-data": "client-certificate",
             "client-key-data": "client-key"}
CREDENTIALS_DIR = "client-credentials"


def credentials_beside(kubeconfig: Path) -> dict[str, Any]:
    """The kubeconfig as a dict whose embedded certificates and key are files beside it.

    The Kubernetes client would write them to temporary files in /tmp, removed only at a
    normal interpreter exit: a SIGKILL left the cluster's CA, admin certificate and admin
    key there. Here they go (0600, in a 0700 folder) next to the kubeconfig that already
    holds them, i.e. in the cluster's state directory, and go away with it.
    """
    kubeconfig = Path(kubeconfig)
    loaded = yaml.safe_load(kubeconfig.read_text()) or {}
    folder = kubeconfig.parent / CREDENTIALS_DIR
    for section, key in (("clusters", "cluster"), ("users", "user")):
        for entry in loaded.get(section) or []:
            fields = entry.get(key) or {}
            for embedded, as_file in _EMBEDDED.items():
                if embedded in fields:
                    content = base64.b64decode(fields.pop(embedded))
                    fields[as_file] = str(_private_file(folder, content))
    return loaded


def _private_file(folder: Path, content: bytes) -> Path:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / hashlib.sha256(content).hexdigest()[:24]
    if not path.is_file() or path.read_bytes() != content:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
    return path


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the same clean-up runs."""


class Cluster(ABC):
    """A cluster that experiments can run on. Subclasses implement ``_start``/``_stop``."""

    backend: str = "abstract"
    kwok_shards: tuple[str, ...] = ()  # the kwok workers that share the fake nodes, if several

    def __init__(self) -> None:
        self._state = State.NEW
        self._info: ClusterInfo | None = None
        self._previous_sigterm: Any = None

    @abstractmethod
    def _start(self) -> ClusterInfo: ...

    @abstractmethod
    def _stop(self) -> None: ...

    @abstractmethod
    def why_not(self, baseline: "Baseline") -> str | None:
        """Why ``baseline`` cannot run on this cluster, or None when it can (asked before start)."""

    def check(self) -> None:
        """Raise :class:`~kdlib.errors.ComponentError` naming a component that died; else nothing."""

    def save_logs(self, destination: Path) -> None:
        """Copy the components' logs to ``destination`` (evidence of a failed suite)."""

    def pod_process_starts(self) -> dict[str, list[float]]:
        """Each real pod's process start times by pod uid, in this machine's ``time.monotonic()``
        seconds, the sandbox's first ({} without real nodes)."""
        return {}

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by the cluster's processes on this machine: by component
        name, and ``real nodes/<process>`` for what runs the real pods ({} where they run
        elsewhere: the difference of two calls is what a run cost)."""
        return {}

    def resize_kwok_nodes(self, count: int, timeout: float | None = None) -> tuple[str, ...]:
        """Make exactly ``count`` kwok nodes exist and wait until they are Ready."""
        from . import kwok

        info = self.info
        if count == len(info.node_names):
            return info.node_names
        with api_errors(f"resizing to {count} kwok nodes"):
            api = info.api_client()
            try:
                names = kwok.ensure_nodes(api, count, shards=self.kwok_shards)
                kwok.wait_nodes_ready(api, names, timeout=timeout or max(120.0, count * 0.5))
            finally:
                api.close()
        self._info = dataclasses.replace(info, node_names=tuple(names))
        return self._info.node_names

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

    @property
    def running(self) -> bool:
        """Started and not yet stopped."""
        return self._state is State.RUNNING

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
