"""What the two SSH cluster modes share: their hosts, the cluster's lock, the local copy of
its state, the clean-up of every host and the stop.

:class:`SshClusterBase` holds one connection per host and the cluster's lock on the
control-plane host from start to stop; it cleans the hosts only while it holds that lock
(never a live run's), the workers at once and then the control plane, and holds Ctrl-C
and SIGTERM back until the stop is done (every step has a timeout). Each mode says which
hosts it uses and how one host is cleaned (:meth:`SshClusterBase.clean_host`); the
module-level :func:`status` and :func:`down` work from the hosts' files alone, so they also
handle a cluster whose owner was killed.
"""

from __future__ import annotations

import logging
import shutil
from abc import abstractmethod
from pathlib import Path
from typing import Any, Callable

from ... import paths
from ...errors import RemoteError
from ..base import Cluster
from ..marker import is_ours
from ..signals import signals_deferred
from .inventory import Host, Inventory
from .lock import ClusterLock
from .remote import Hosts, Remote, SshOptions

log = logging.getLogger(__name__)


def local_state_dir(inventory: Inventory) -> Path:
    """Where this machine keeps a cluster's kubeconfig and PKI: beside the local backend's state."""
    return paths.state_root() / "ssh" / inventory.cluster


def host_dir(inventory: Inventory, name: str) -> str:
    """The cluster's directory on host ``name``: every file and pid file of ours there."""
    return f"{inventory.cluster_dir()}/{name}"


def raise_if_incomplete(failures: list[str], command: str) -> None:
    """One error naming every host that could not be cleaned (``failures``: "host: why" lines)."""
    if failures:
        raise RemoteError(", ".join(f.split(":", 1)[0] for f in failures), command,
                          "clean-up incomplete: " + "; ".join(failures))


def clean_hosts(inventory: Inventory, hosts: Hosts, clean: Callable[[Remote], Any]) -> list[str]:
    """``clean`` every host: the workers at once, then the control plane.
    Returns one line per host that could not be cleaned."""
    control_plane = inventory.control_plane.name
    results = hosts.each(clean, hosts=[name for name in hosts.remotes if name != control_plane])
    results.update(hosts.each(clean, hosts=[control_plane]))
    for name in results.failed:
        log.warning("%s: not cleaned", name)
    return [str(error).splitlines()[0] for error in results.failed.values()]


def status(inventory: Inventory, hosts: Hosts, of_host: Callable[[Remote], dict[str, Any]],
           running: Callable[[dict[str, Any]], bool], kubeconfig: Path, **extra: Any) -> dict[str, Any]:
    """Each host's ``of_host`` (or why it is unreachable), whether any ``running``, the kubeconfig."""
    with hosts:
        found = {host: f"unreachable: {value.reason}" if isinstance(value, RemoteError) else value
                 for host, value in hosts.each(of_host).items()}
    return {"cluster": inventory.cluster, **extra,
            "running": any(isinstance(v, dict) and running(v) for v in found.values()), "hosts": found,
            "kubeconfig": str(kubeconfig) if kubeconfig.exists() else None}


def down(inventory: Inventory, hosts: Hosts, clean: Callable[[Remote], Any]) -> None:
    """Clean every host from its files alone, under the cluster's lock (so never under a live
    run), then remove this machine's copy of the cluster's state."""
    with hosts:
        with ClusterLock(hosts[inventory.control_plane.name], inventory.cluster_dir()):
            failures = clean_hosts(inventory, hosts, clean)
    if is_ours(local_state_dir(inventory)):
        shutil.rmtree(local_state_dir(inventory), ignore_errors=True)
    raise_if_incomplete(failures, "down")


class SshClusterBase(Cluster):
    """A cluster on the hosts of an inventory; subclasses start it (``_start``) and say how a host is cleaned."""

    backend = "ssh"

    def __init__(self, inventory: Inventory, state_dir: Path | str | None) -> None:
        super().__init__()
        self.inventory = inventory
        self.state_dir = Path(state_dir).expanduser() if state_dir else local_state_dir(inventory)
        self.hosts: Hosts | None = None
        self.lock: ClusterLock | None = None  # set once acquired: from then on the hosts are ours to clean
        self._timings: dict[str, float] = {}

    @staticmethod
    @abstractmethod
    def hosts_of(inventory: Inventory) -> tuple[Host, ...]:
        """The hosts this mode uses."""

    @abstractmethod
    def clean_host(self, remote: Remote) -> Any:
        """Stop what runs of this cluster on one host and remove its files there."""

    @property
    def timings(self) -> dict[str, float]:
        return dict(self._timings)

    def host_dir(self, name: str) -> str:
        return host_dir(self.inventory, name)

    def resize_kwok_nodes(self, count: int, timeout: float | None = None) -> tuple[str, ...]:
        if not self.inventory.kwok_workers:  # real nodes only: no kwok node to make (why_not keeps kwok systems off)
            return self.info.node_names
        return super().resize_kwok_nodes(count, timeout)

    def process_starts_on(self, hosts: list[str], read: Callable[[Remote], dict[str, list[float]]]
                          ) -> dict[str, list[float]]:
        """:meth:`pod_process_starts` from ``read`` on each of ``hosts``; a host that cannot be read
        is named in a warning (its pods' runtime stages will be missing), not an error."""
        starts: dict[str, list[float]] = {}
        found = self.hosts.each(read, hosts=hosts)
        for value in found.succeeded.values():
            starts.update(value)
        for host, error in found.failed.items():
            log.warning("%s: pod process start times not read: %s", host, error.reason)
        return starts

    def _connect(self) -> Hosts:
        """Open every host; all reachable, or nothing starts."""
        self.hosts = Hosts(self.hosts_of(self.inventory), SshOptions.of(self.inventory))
        self.hosts.run("true", timeout=self.inventory.connect_timeout + 5).check()
        return self.hosts

    def _acquire_lock(self) -> ClusterLock:
        """The cluster's lock on the control-plane host, acquired (not yet :attr:`lock`)."""
        lock = ClusterLock(self.hosts[self.inventory.control_plane.name], self.inventory.cluster_dir())
        lock.acquire()
        return lock

    def _clean_hosts(self) -> list[str]:
        return clean_hosts(self.inventory, self.hosts, self.clean_host)

    def _clear_remains(self) -> None:
        """Clean what a previous run of this cluster left (we hold the lock: it is not running)."""
        failures = self._clean_hosts()
        if failures:
            raise RemoteError(", ".join(f.split(":", 1)[0] for f in failures), "(remains of an earlier run)",
                              "could not be cleaned: " + "; ".join(failures))

    def _before_stop(self) -> None:
        """What a mode stops before the hosts are cleaned (e.g. a watcher thread)."""

    def _stop(self) -> None:
        """Clean every host (only while holding the lock: else they may be a live run's), release
        the lock, close the connections, remove this machine's copy of the state. Unreachable
        hosts are reported, not skipped silently; a Ctrl-C or SIGTERM meanwhile waits until it is done."""
        with signals_deferred():
            self._before_stop()
            failures: list[str] = []
            if self.hosts is not None and self.lock is not None:
                failures = self._clean_hosts()
                if is_ours(self.state_dir):
                    shutil.rmtree(self.state_dir, ignore_errors=True)
            if self.lock is not None:
                self.lock.release()
                self.lock = None
            if self.hosts is not None:
                self.hosts.close()
                self.hosts = None
            raise_if_incomplete(failures, "stop")
