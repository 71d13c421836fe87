"""A cluster on SSH hosts, mode ``binaries``: the local backend's components, run remotely.

The control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) runs
on the inventory's control-plane host, kwok on each kwok worker (each manages its share
of the fake nodes, picked by the label ``kdlib/kwok-worker``), containerd and a kubelet on
each ``kubelet: true`` worker (:mod:`.kubelets`); each as a detached process with a pid
file in a per-host directory (``<remote_dir>/<cluster>/<host>/``).
The command lines are the local backend's (:mod:`kdlib.cluster.controlplane.components`),
built for the host's address (the API server binds to and advertises it; etcd and the
health ports stay on the host's loopback), the host's directory as their layout's root and
the shipped binaries; their files are written into a local staging copy of that directory,
shipped whole. TLS and RBAC are as locally; the API server's certificate also names the
host's address.

Binaries are shipped content-addressed to ``<remote_dir>/bin/<sha256[:16]>/`` (skipped
when already there). The cluster's lock on the control-plane host is held from start to
stop (:mod:`.base`, shared with kubeadm mode). A thread watches every host's processes
every few seconds, so that :meth:`check` names a component that died without an SSH round
trip of its own.
"""

from __future__ import annotations

import logging
import math
import shlex
import shutil
import time
from functools import reduce
from pathlib import Path, PurePosixPath

from ...baselines import Baseline
from ...errors import ClusterBusyError, ClusterError, ComponentError, ConfigError, RemoteError
from ...wait import wait_until
from .. import kwok
from ..base import ClusterInfo
from ..binaries import BinarySet, build_node_binaries, component_versions, default_bin_dir, ensure_binaries
from ..controlplane import components, pki
from ..controlplane.components import Endpoints, HealthProbe, Layout
from ..marker import MARKER, is_ours
from ..signals import signals_deferred
from ..settings import KWOK_NODE_SELECTOR, client_limits
from . import detached, kubelets
from .base import SshClusterBase
from .inventory import Host, Inventory
from .remote import Remote
from .running import HostWatcher, clean_host, host_statuses
from .shipping import ship_binaries

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"

PORTS = {"etcd": 2379, "etcd-peer": 2380, "kube-apiserver": 6443, "kube-controller-manager": 10257,
         "kube-scheduler": 10259, "kwok": 10247}
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


class SshCluster(SshClusterBase):
    """A cluster on the hosts of ``inventory`` (mode ``binaries``).

    ``nodes`` is the number of kwok nodes (default: the inventory's total), shared among
    the kwok workers in proportion to their ``kwok_nodes``. A cluster of the inventory
    found running (e.g. left by ``ssh up``) is refused unless ``take_over`` (a suite's:
    the remains of a killed run are stopped).
    """

    def __init__(self, inventory: Inventory, *, nodes: int | None = None, bin_dir: Path | str | None = None,
                 kd: bool = False, timeout: float = 180.0, state_dir: Path | str | None = None,
                 take_over: bool = False, unthrottled: bool = False) -> None:
        super().__init__(inventory, state_dir)
        if inventory.mode != "binaries":
            raise ConfigError(f"inventory {inventory.source}: mode {inventory.mode!r} is not SshCluster's "
                              "(mode binaries); kubeadm mode is kdlib.cluster.ssh.kubeadm_cluster.KubeadmCluster")
        if kd and bin_dir is None:
            raise ConfigError("kd=True needs bin_dir: the directory holding the Kd binaries")
        self.nodes = inventory.kwok_node_count if nodes is None else nodes
        if self.nodes and not inventory.kwok_workers:
            raise ConfigError(f"inventory {inventory.source}: workers: {self.nodes} kwok nodes wanted but no "
                              "worker has kwok_nodes")
        self.bin_dir = Path(bin_dir).expanduser() if bin_dir is not None else None
        self.kd = kd
        self.unthrottled = unthrottled  # the client limits raised (settings.client_limits)
        self.timeout = timeout
        self.take_over = take_over
        self.kwok_shards = kwok_shards(inventory)
        self.workers = kubelets.workers(inventory)
        self._argv: dict[tuple[str, str], tuple[str, ...]] = {}  # (host, component) → remote command line
        self._watcher: HostWatcher | None = None

    @staticmethod
    def hosts_of(inventory: Inventory) -> tuple[Host, ...]:
        return inventory.hosts

    def clean_host(self, remote: Remote) -> str:
        return clean_host(self.inventory, remote)

    def why_not(self, baseline: Baseline) -> str | None:
        if baseline.simulated and not self.inventory.kwok_workers:
            return f"needs kwok nodes: no worker of {self.inventory.source} has kwok_nodes"
        if not baseline.simulated and not self.workers:
            return f"needs real kubelets: no worker of {self.inventory.source} has kubelet: true"
        return None

    # -- start ---------------------------------------------------------------------------

    def _start(self) -> ClusterInfo:
        binaries = ensure_binaries(self.bin_dir)
        node_binaries = None
        if self.workers:  # the kubelet: Kd's when its directory holds one, else ours
            node_binaries = build_node_binaries(default_bin_dir())
            if self.bin_dir is not None and (self.bin_dir / "kubelet").is_file():
                node_binaries["kubelet"] = self.bin_dir / "kubelet"
        started = time.monotonic()
        try:
            self._connect()
            self._timings["reach"] = time.monotonic() - started
            lock = self._acquire_lock()
            try:
                self._refuse_if_running()
            except BaseException:
                lock.release()  # a cluster we may not touch: leave without cleaning
                raise
            self.lock = lock  # from here on the hosts are ours to clean (before: another run's)
            self._clear_remains()
            self._timings["remains_cleared"] = time.monotonic() - started
            facts = self.hosts.each(kubelets.check, hosts=list(self.workers)).check() if self.workers else {}
            return self._boot(binaries, node_binaries, facts, started)
        except BaseException:
            with signals_deferred():  # a Ctrl-C again must not cut the clean-up short
                log.warning("start-up of the ssh cluster failed; stopping what was started")
                try:
                    self._stop()
                except RemoteError as cleanup:  # the start-up error is the one to report
                    log.warning("%s", str(cleanup).splitlines()[0])
            raise

    def _refuse_if_running(self) -> None:
        """Raise :class:`ClusterBusyError` when a process of this cluster runs on a host
        (a cluster left running by ``ssh up``), unless ``take_over``."""
        if self.take_over:
            return
        found = host_statuses(self.inventory, self.hosts).check()
        live = {host: sorted(n for n, pid in procs.items() if pid) for host, procs in found.items()}
        live = {host: names for host, names in live.items() if names}
        if live:
            where = "; ".join(f"{host}: {', '.join(names)}" for host, names in live.items())
            raise ClusterBusyError(f"cluster {self.inventory.cluster} is already running ({where}): use it, "
                                   f"or stop it with `python -m kdlib ssh down {self.inventory.source}`")

    def _boot(self, binaries: BinarySet, node_binaries: dict[str, Path] | None, facts: dict[str, kubelets.HostFacts],
              started: float) -> ClusterInfo:
        cp_host = self.inventory.control_plane
        # The local copy of the state (PKI, kubeconfigs) stays while the cluster runs:
        # the admin kubeconfig in it is how this machine reaches the cluster.
        if self.state_dir.exists():
            if not is_ours(self.state_dir):
                raise ClusterError(f"{self.state_dir} exists and was not made by kdlib: refusing to touch it")
            shutil.rmtree(self.state_dir)  # we hold the lock: it is a stopped cluster's
        self.state_dir.mkdir(parents=True)
        (self.state_dir / MARKER).write_text("made by kdlib's ssh backend\n")
        staging = self.state_dir
        layout = Layout(staging / "state")  # this machine's copy: the PKI and the admin kubeconfig
        self._write_pki(layout, cp_host.address)
        remote_bins = self._ship_binaries({**binaries.paths, **(node_binaries or {})})
        self._timings["ship_binaries"] = time.monotonic() - started

        at = Endpoints(LOOPBACK, PORTS, api_address=cp_host.address)
        on_cp = Layout(PurePosixPath(self.host_dir(cp_host.name)))  # the same files, on the control-plane host
        components.write_config(on_cp, self.unthrottled, into=layout.state_dir)
        cp_bins = {name: remote_bins[(cp_host.name, name)] for name in CONTROL_PLANE}
        for component in (components.etcd(cp_bins, on_cp, at), components.apiserver(cp_bins, on_cp, at),
                          components.controller_manager(cp_bins, on_cp, at, self.unthrottled),
                          components.scheduler(cp_bins, on_cp, at, self.unthrottled)):
            self._argv[(cp_host.name, component.name)] = component.argv
        for worker in self.inventory.kwok_workers:
            kwok_controller = components.kwok_controller(
                {"kwok": remote_bins[(worker.name, "kwok")]}, Layout(PurePosixPath(self.host_dir(worker.name))), at,
                selector=f"{KWOK_NODE_SELECTOR},{kwok.SHARD_LABEL}={worker.name}")
            self._argv[(worker.name, "kwok")] = kwok_controller.argv

        # The state directory goes whole to the control plane; kwok needs only its kubeconfig and config.
        cp = self.hosts[cp_host.name]
        kwok_files = staging / "kwok"
        (kwok_files / "config").mkdir(parents=True)
        for name in ("kwok.kubeconfig", "kwok.yaml"):
            shutil.copy(layout.config / name, kwok_files / "config" / name)
        server = f"https://{cp_host.address}:{PORTS['kube-apiserver']}"
        ca = pki.KeyPair(layout.pem("ca.crt"), layout.pem("ca.key"))
        trees = {name: kubelets.stage(worker, staging / "workers" / name, ca=ca, server=server,
                                      facts=facts[name], sleeper=Path(node_binaries["sleeper"]))
                 for name, worker in self.workers.items()}
        kwok_hosts = [w.name for w in self.inventory.kwok_workers]
        shipped = self.hosts.each(lambda r: r.put_tree(layout.state_dir if r is cp else kwok_files,
                                                       self.host_dir(r.host.name)),
                                  hosts=[cp_host.name, *kwok_hosts])
        shipped.check()
        self._timings["ship_state"] = time.monotonic() - started

        # As locally: the rest only once the API server is ready (the controller manager
        # exits if RBAC's bootstrap roles are not there yet).
        for name in ("etcd", "kube-apiserver"):
            detached.start(cp, name, self._argv[(cp_host.name, name)], self.host_dir(cp_host.name))
        probe = HealthProbe(f"{server}/readyz", ca=layout.pem("ca.crt"), client_cert=layout.pem("admin.crt"),
                            client_key=layout.pem("admin.key"))
        deadline = started + self.timeout
        self._wait(cp, "kube-apiserver", probe.ok, deadline)
        self._timings["apiserver_ready"] = time.monotonic() - started
        for name in ("kube-controller-manager", "kube-scheduler"):
            detached.start(cp, name, self._argv[(cp_host.name, name)], self.host_dir(cp_host.name))
        self.hosts.each(lambda r: detached.start(r, "kwok", self._argv[(r.host.name, "kwok")],
                                                 self.host_dir(r.host.name)), hosts=kwok_hosts).check()
        if self.workers:
            self.hosts.each(lambda r: kubelets.start(r, self.workers[r.host.name], trees[r.host.name],
                                                     remote_bins[(r.host.name, "kubelet")], facts[r.host.name]),
                            hosts=list(self.workers)).check()
            self._timings["kubelets_started"] = time.monotonic() - started

        info = ClusterInfo("ssh", layout.admin_kubeconfig, (), self.kd)
        api = info.api_client()
        try:
            names = kwok.ensure_nodes(api, self.nodes, shards=self.kwok_shards)
            kwok.wait_nodes_ready(api, names, timeout=max(1.0, deadline - time.monotonic()))
            if self.workers:
                kubelets.wait_ready(api, {n: (self.hosts[n], w) for n, w in self.workers.items()}, deadline)
        except Exception:
            self._raise_if_dead()
            raise
        finally:
            api.close()
        self._raise_if_dead()  # every component alive after the nodes came up
        self._timings["nodes_ready"] = time.monotonic() - started
        log.info("%d kwok nodes and %d real nodes Ready after %.1f s", len(names), len(self.workers),
                 time.monotonic() - started)
        self._watcher = HostWatcher(self.inventory, self.hosts)
        self._watcher.start()
        versions = component_versions(binaries)
        return ClusterInfo("ssh", layout.admin_kubeconfig, tuple(names), self.kd, versions,
                           dict(binaries.sources), real_node_names=tuple(self.workers),
                           client_limits=client_limits(self.unthrottled))

    def _raise_if_dead(self) -> None:
        """Raise :class:`ComponentError` naming the first component that no longer runs."""
        found = host_statuses(self.inventory, self.hosts).check()
        for host, procs in found.items():
            for name, pid in procs.items():
                if pid is None:
                    remote = self.hosts[host]
                    raise ComponentError(name, f"exited on {host}", self._log_tail(remote, name))

    def check(self) -> None:
        if self._watcher is not None and self._watcher.unreachable is not None:
            raise self._watcher.unreachable
        if self._watcher is not None and self._watcher.dead is not None:
            host, name = self._watcher.dead
            raise ComponentError(name, f"exited on {host}", self._log_tail(self.hosts[host], name))

    def pod_process_starts(self) -> dict[str, list[float]]:
        return self.process_starts_on(list(self.workers),
                                      lambda r: kubelets.pod_process_starts(r, self.workers[r.host.name].cgroup))

    def save_logs(self, destination: Path) -> None:
        """Copy every host's component logs to ``destination/<host>/``."""
        if self.hosts is None:
            return

        def fetch(remote: Remote) -> None:
            folder = Path(destination) / remote.host.name
            folder.mkdir(parents=True, exist_ok=True)
            logs_dir = f"{self.host_dir(remote.host.name)}/logs"
            for name in remote.run(f"ls {shlex.quote(logs_dir)} 2>/dev/null", check=False).stdout.split():
                remote.connection.get(f"{logs_dir}/{name}", str(folder / name))

        for host, error in self.hosts.each(fetch).failed.items():
            log.warning("%s: logs not saved: %s", host, error.reason)

    def _write_pki(self, layout: Layout, address: str) -> None:
        """As the local backend's, with the control-plane host's address (and name) in the
        serving certificates and in every kubeconfig."""
        pki.write_control_plane_pki(layout, f"https://{address}:{PORTS['kube-apiserver']}",
                                    hosts=(LOOPBACK, "localhost", address, self.inventory.control_plane.name))

    def _ship_binaries(self, binaries: dict[str, Path]) -> dict[tuple[str, str], str]:
        """Each host's binaries on it (:func:`.shipping.ship_binaries`); returns (host, component) → the remote path."""
        wanted: dict[str, list[str]] = {self.inventory.control_plane.name: list(CONTROL_PLANE)}
        for worker in self.inventory.kwok_workers:
            wanted.setdefault(worker.name, []).append("kwok")
        for name in self.workers:
            wanted.setdefault(name, []).append("kubelet")
        return ship_binaries(self.hosts, wanted, binaries, self.inventory.remote_dir)

    def _wait(self, remote: Remote, name: str, ready, deadline: float) -> None:
        directory = self.host_dir(remote.host.name)

        def up() -> bool:
            if ready():
                return True
            if detached.status(remote, name, self._argv[(remote.host.name, name)], directory) is None:
                raise ComponentError(name, f"exited on {remote.host.name}", self._log_tail(remote, name))
            return False

        wait_until(up, deadline=deadline, interval=0.2, error=lambda: ComponentError(
            name, f"not ready on {remote.host.name} before the start-up deadline", self._log_tail(remote, name)))

    def _log_tail(self, remote: Remote, name: str) -> str:
        return detached.log_tail(remote, self.host_dir(remote.host.name), name)

    # -- stop ----------------------------------------------------------------------------

    def _before_stop(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None


def kwok_shards(inventory: Inventory) -> tuple[str, ...]:
    """Which kwok worker manages fake node ``i``: ``shards[i % len(shards)]``. Each worker
    appears in proportion to its ``kwok_nodes``; an index keeps its worker when the
    cluster is resized."""
    weights = {w.name: w.kwok_nodes for w in inventory.kwok_workers}
    if len(weights) <= 1:
        return tuple(weights)
    divisor = reduce(math.gcd, weights.values())
    counts = {name: weight // divisor for name, weight in weights.items()}
    total = sum(counts.values())
    # Spread each worker's turns evenly over the cycle (largest remainder first).
    slots = sorted(((k + 0.5) / count, name) for name, count in counts.items() for k in range(count))
    assert len(slots) == total
    return tuple(name for _, name in slots)
