"""What runs of a binaries-mode SSH cluster on its hosts, read from the hosts' files alone: each
host's processes (by pid file and recorded command line), a watch over them while the cluster
runs, and their stop and clean-up, so that ``status`` and ``down`` also serve a cluster whose
owner was killed.
"""

from __future__ import annotations

import logging
import shlex
import threading
import time

from ...errors import HostUnreachable, RemoteError
from . import base, detached, kubelets
from .base import local_state_dir
from .inventory import Inventory
from .remote import GroupResult, Hosts, Remote

log = logging.getLogger(__name__)

WATCH_INTERVAL = 5.0  # seconds between two looks at every host's processes


def status(inventory: Inventory) -> dict:
    """What runs on each host (by pid file and recorded command line), and the kubeconfig."""
    return base.status(inventory, Hosts.of(inventory),
                       lambda remote: detached.statuses(remote, base.host_dir(inventory, remote.host.name)),
                       running=lambda processes: any(processes.values()),
                       kubeconfig=local_state_dir(inventory) / "state" / "config" / "admin.kubeconfig")


def host_statuses(inventory: Inventory, hosts: Hosts) -> GroupResult:
    """Every host's processes of this cluster (:func:`detached.statuses`), one round trip each."""
    return hosts.each(lambda r: detached.statuses(r, base.host_dir(inventory, r.host.name)))


def clean_host(inventory: Inventory, remote: Remote) -> str:
    """Stop our processes and remove our directory on one host; returns what was stopped."""
    name = remote.host.name
    directory = base.host_dir(inventory, name)
    started = time.monotonic()
    # Everything of ours on a host is made after its directory and removed before it.
    if remote.run(f"test -d {shlex.quote(directory)}", check=False).exit_code != 0:
        return "nothing there"
    detached.close(remote, directory)  # a start still going there ends first; none begins after
    stopped: dict[str, str] = {}
    unfinished: RemoteError | None = None
    if remote.host.kubelet:  # the kubelet, its containers and containerd first, in that order
        try:
            stopped.update(kubelets.teardown(remote, kubelets.workers(inventory)[name]))
        except RemoteError as error:  # stop the rest all the same; the directory stays for `down`
            unfinished = error
    stopped.update(stop_all(remote, directory))
    if unfinished is not None:
        raise unfinished
    remote.run(f"rm -rf {shlex.quote(directory)}", timeout=60)
    done = ", ".join(f"{k} {v}" for k, v in stopped.items() if v != "absent") or "nothing ran"
    log.info("%s: cleaned in %.1f s (%s)", name, time.monotonic() - started, done)
    return done


def stop_all(remote: Remote, directory: str, timeout: float = 10.0) -> dict[str, str]:
    """Stop every process with a pid file under ``directory`` on ``remote``, in reverse
    start order, each by PID after checking its recorded command line."""
    listing = remote.run(f"ls -t {shlex.quote(directory)}/run/ 2>/dev/null | sed -n 's/\\.pid$//p'",
                         check=False).stdout.split()
    order = [n for n in ("kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd") if n in listing]
    order += [n for n in listing if n not in order]
    return {name: detached.stop(remote, name, None, directory, timeout=timeout) for name in order}


class HostWatcher(threading.Thread):
    """Looks at every host's processes every few seconds; remembers the first one found dead,
    or the first host that could not be reached (powered off, network gone: its components
    are as good as dead; a connection that merely dropped was already retried by :class:`Remote`)."""

    def __init__(self, inventory: Inventory, hosts: Hosts) -> None:
        super().__init__(name="kdlib-ssh-watcher", daemon=True)
        self.inventory = inventory
        self.hosts = hosts
        self.dead: tuple[str, str] | None = None  # (host, component)
        self.unreachable: HostUnreachable | None = None
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.wait(WATCH_INTERVAL) and self.dead is None:
            found = host_statuses(self.inventory, self.hosts)
            for host, value in found.items():
                if isinstance(value, HostUnreachable) and not self._stopping.is_set():
                    self.unreachable = value
                    return
                if isinstance(value, RemoteError):
                    if not self._stopping.is_set():
                        log.warning("%s: could not look at its processes: %s", host, value.reason)
                    continue
                dead = [name for name, pid in value.items() if pid is None]
                if dead and not self._stopping.is_set():
                    self.dead = (host, dead[0])
                    return

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=30)


def down(inventory: Inventory) -> None:
    """Stop a cluster of ``inventory`` from the hosts' files alone (e.g. after its owner
    was killed): takes the lock (so never under a live run), stops every recorded
    process by PID after checking its recorded command line, removes the directories."""
    base.down(inventory, Hosts.of(inventory), lambda remote: clean_host(inventory, remote))
