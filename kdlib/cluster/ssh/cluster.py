"""A cluster on SSH hosts, mode ``binaries``: the local backend's components, run remotely.

The control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) runs
on the inventory's control-plane host, kwok on the kwok worker; each as a detached
process with a pid file in a per-host directory (``<remote_dir>/<cluster>/<host>/``).
The command lines are the local backend's (:mod:`kdlib.cluster.controlplane.components`),
built for the host's address (the API server binds to and advertises it; etcd and the
health ports stay on the host's loopback) against a local staging copy of the state
directory, whose path then becomes the remote one, and the binary directory the shipped one. TLS and RBAC are as locally; the API
server's certificate also names the host's address.

Binaries are shipped content-addressed to ``<remote_dir>/bin/<sha256[:16]>/`` (skipped
when already there). The cluster's lock on the control-plane host is held from start to
stop. Not yet here: real kubelets on workers, more than one kwok worker, kubeadm mode.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import time
from pathlib import Path

from ... import paths
from ...errors import ClusterError, ComponentError, ConfigError, RemoteError
from .. import kwok
from ..base import Cluster, ClusterInfo
from ..binaries import BinarySet, component_versions, ensure_binaries
from ..controlplane import components, pki
from ..controlplane.components import Endpoints, HealthProbe, Layout
from ..local.cluster import MARKER, is_ours  # one marker for every directory kdlib makes

LOOPBACK = "127.0.0.1"
from . import detached
from .inventory import Inventory
from .lock import ClusterLock
from .remote import Hosts, Remote, sha256_file

log = logging.getLogger("kdlib.ssh.cluster")

PORTS = {"etcd": 2379, "etcd-peer": 2380, "kube-apiserver": 6443, "kube-controller-manager": 10257,
         "kube-scheduler": 10259, "kwok": 10247}
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


class SshCluster(Cluster):
    """A cluster on the hosts of ``inventory`` (mode ``binaries``)."""

    backend = "ssh"

    def __init__(self, inventory: Inventory, *, bin_dir: Path | str | None = None, kd: bool = False,
                 timeout: float = 120.0, state_dir: Path | str | None = None) -> None:
        super().__init__()
        if inventory.mode != "binaries":
            raise ConfigError(f"inventory {inventory.source}: mode {inventory.mode!r} is not implemented yet; "
                              "use mode: binaries")
        if inventory.kubelet_workers:
            names = ", ".join(w.name for w in inventory.kubelet_workers)
            raise ConfigError(f"inventory {inventory.source}: {names}: kubelet: real kubelets over SSH are "
                              "not implemented yet")
        if len(inventory.kwok_workers) != 1:
            raise ConfigError(f"inventory {inventory.source}: workers: exactly one worker with kwok_nodes "
                              f"is supported for now, not {len(inventory.kwok_workers)}")
        if kd and bin_dir is None:
            raise ConfigError("kd=True needs bin_dir: the directory holding the Kd binaries")
        self.inventory = inventory
        self.bin_dir = Path(bin_dir).expanduser() if bin_dir is not None else None
        self.kd = kd
        self.timeout = timeout
        self.state_dir = Path(state_dir).expanduser() if state_dir else local_state_dir(inventory)
        self.hosts: Hosts | None = None
        self.lock: ClusterLock | None = None
        self._staging: Path | None = None
        self._argv: dict[str, tuple[str, ...]] = {}  # component → remote command line

    # -- paths --------------------------------------------------------------------------

    def host_dir(self, host_name: str) -> str:
        return f"{self.inventory.cluster_dir()}/{host_name}"

    @property
    def kwok_host(self) -> str:
        return self.inventory.kwok_workers[0].name

    @property
    def timings(self) -> dict[str, float]:
        return dict(getattr(self, "_timings", {}))

    def why_not(self, baseline) -> str | None:  # noqa: ANN001 (a Baseline)
        if not baseline.simulated:
            return "needs real kubelets: the ssh backend runs kwok workers only in this version"
        return None

    # -- start ---------------------------------------------------------------------------

    def _start(self) -> ClusterInfo:
        binaries = ensure_binaries(self.bin_dir)
        self._timings: dict[str, float] = {}
        started = time.monotonic()
        self.hosts = Hosts.of(self.inventory)
        try:
            self.hosts.run("true", timeout=self.inventory.connect_timeout + 5).check()  # all reachable, or nothing starts
            self._timings["reach"] = time.monotonic() - started
            cp = self.hosts[self.inventory.control_plane.name]
            self.lock = ClusterLock(cp, self.inventory.cluster_dir())
            self.lock.acquire()
            self._clear_remains()
            return self._boot(binaries, started)
        except BaseException:
            log.warning("start-up of the ssh cluster failed; stopping what was started")
            try:
                self._stop()
            except RemoteError as cleanup:  # the start-up error is the one to report
                log.warning("%s", str(cleanup).splitlines()[0])
            raise

    def _clear_remains(self) -> None:
        """Stop what a previous run of this cluster left (we hold the lock: it is not running)."""
        for remote in self.hosts.remotes.values():
            stop_all(remote, self.host_dir(remote.host.name))

    def _boot(self, binaries: BinarySet, started: float) -> ClusterInfo:
        cp_host = self.inventory.control_plane
        # The local copy of the state (PKI, kubeconfigs) stays while the cluster runs:
        # the admin kubeconfig in it is how this machine reaches the cluster.
        if self.state_dir.exists():
            if not is_ours(self.state_dir):
                raise ClusterError(f"{self.state_dir} exists and was not made by kdlib: refusing to touch it")
            shutil.rmtree(self.state_dir)  # we hold the lock: it is a stopped cluster's
        self.state_dir.mkdir(parents=True)
        (self.state_dir / MARKER).write_text("made by kdlib's ssh backend\n")
        staging = self._staging = self.state_dir
        layout = Layout(staging / "state")
        self._write_pki(layout, cp_host.address)
        remote_bins = self._ship_binaries(binaries)
        self._timings["ship_binaries"] = time.monotonic() - started

        at = Endpoints(LOOPBACK, PORTS, api_address=cp_host.address)
        comps = {c.name: c for c in components.control_plane(binaries, layout, at)}
        for name, comp in comps.items():
            argv = [a.replace(str(layout.state_dir), self._remote_state(name)) for a in comp.argv]
            argv[0] = remote_bins[name]
            self._argv[name] = tuple(argv)
        for path in layout.config.glob("*.yaml"):  # the scheduler's config names its kubeconfig
            path.write_text(path.read_text().replace(str(layout.state_dir), self._remote_state("kube-scheduler")))

        # The state directory goes whole to the control plane; kwok needs only its kubeconfig and config.
        cp = self.hosts[cp_host.name]
        kwok_remote = self.hosts[self.kwok_host]
        kwok_files = staging / "kwok"
        (kwok_files / "config").mkdir(parents=True)
        for name in ("kwok.kubeconfig", "kwok.yaml"):
            shutil.copy(layout.config / name, kwok_files / "config" / name)
        shipped = self.hosts.each(lambda r: r.put_tree(layout.state_dir if r is cp else kwok_files,
                                                       self.host_dir(r.host.name)),
                                  hosts=[cp_host.name, self.kwok_host])
        shipped.check()
        self._timings["ship_state"] = time.monotonic() - started

        # As locally: the rest only once the API server is ready (the controller manager
        # exits if RBAC's bootstrap roles are not there yet).
        for name in ("etcd", "kube-apiserver"):
            detached.start(cp, name, self._argv[name], self.host_dir(cp_host.name))
        probe = HealthProbe(f"https://{cp_host.address}:{PORTS['kube-apiserver']}/readyz",
                            ca=layout.pem("ca.crt"), client_cert=layout.pem("admin.crt"),
                            client_key=layout.pem("admin.key"))
        deadline = started + self.timeout
        self._wait(cp, "kube-apiserver", probe.ok, deadline)
        self._timings["apiserver_ready"] = time.monotonic() - started
        for name in ("kube-controller-manager", "kube-scheduler"):
            detached.start(cp, name, self._argv[name], self.host_dir(cp_host.name))
        detached.start(kwok_remote, "kwok", self._argv["kwok"], self.host_dir(self.kwok_host))

        info = ClusterInfo("ssh", layout.admin_kubeconfig, (), self.kd)
        api = info.api_client()
        try:
            names = kwok.ensure_nodes(api, self.inventory.kwok_node_count)
            kwok.wait_nodes_ready(api, names, timeout=max(1.0, deadline - time.monotonic()))
        except Exception:
            if detached.status(kwok_remote, "kwok", self._argv["kwok"], self.host_dir(self.kwok_host)) is None:
                raise ComponentError("kwok", f"exited on {self.kwok_host}", self._log_tail(kwok_remote, "kwok")) from None
            raise
        finally:
            api.close()
        for name in CONTROL_PLANE:  # alive after the nodes came up
            if detached.status(cp, name, self._argv[name], self.host_dir(cp_host.name)) is None:
                raise ComponentError(name, f"exited on {cp_host.name}", self._log_tail(cp, name))
        self._timings["nodes_ready"] = time.monotonic() - started
        log.info("%d kwok nodes Ready after %.1f s", len(names), time.monotonic() - started)
        return ClusterInfo("ssh", layout.admin_kubeconfig, tuple(names), self.kd, component_versions(binaries),
                           dict(binaries.sources))

    def _remote_state(self, component: str) -> str:
        return self.host_dir(self.kwok_host if component == "kwok" else self.inventory.control_plane.name)

    def _write_pki(self, layout: Layout, address: str) -> None:
        """As the local backend's, with the control-plane host's address (and name) in the
        serving certificates and in every kubeconfig."""
        pki.write_control_plane_pki(layout, f"https://{address}:{PORTS['kube-apiserver']}",
                                    hosts=(LOOPBACK, "localhost", address, self.inventory.control_plane.name))

    def _ship_binaries(self, binaries: BinarySet) -> dict[str, str]:
        """Put each needed binary on its host under bin/<sha256[:16]>/; identical files
        (the multi-call kube binary) travel once and are hard-linked under their names."""
        wanted = {self.inventory.control_plane.name: CONTROL_PLANE, self.kwok_host: ("kwok",)}
        paths: dict[str, str] = {}
        plan: dict[str, list[tuple[str, Path, str]]] = {}
        digests: dict[Path, str] = {}
        for host, names in wanted.items():
            for name in names:
                local = Path(binaries[name]).resolve()
                digest = digests.setdefault(local, sha256_file(local))
                target = f"{self.inventory.remote_dir}/bin/{digest[:16]}/{name}"
                paths[name] = target
                plan.setdefault(host, []).append((name, local, target))

        def ship(remote: Remote) -> None:
            first_of: dict[str, str] = {}
            for name, local, target in plan[remote.host.name]:
                digest = digests[local]
                if digest in first_of:
                    remote.run(f"ln -f {shlex.quote(first_of[digest])} {shlex.quote(target)}")
                else:
                    result = remote.put(local, target)
                    log.info("%s: %s %s", remote.host.name, "kept" if result.skipped else "shipped", target)
                    first_of[digest] = target

        self.hosts.each(ship, hosts=list(plan)).check()
        return paths

    def _wait(self, remote: Remote, name: str, ready, deadline: float) -> None:
        directory = self.host_dir(remote.host.name)
        while not ready():
            if detached.status(remote, name, self._argv[name], directory) is None:
                raise ComponentError(name, f"exited on {remote.host.name}", self._log_tail(remote, name))
            if time.monotonic() > deadline:
                raise ComponentError(name, f"not ready on {remote.host.name} before the start-up deadline",
                                     self._log_tail(remote, name))
            time.sleep(0.2)

    def _log_tail(self, remote: Remote, name: str) -> str:
        _, log_file = detached.paths(self.host_dir(remote.host.name), name)
        try:
            return remote.run(f"tail -n 25 {shlex.quote(log_file)}", check=False, timeout=10).stdout
        except RemoteError as error:
            return f"(log unavailable: {error.reason})"

    # -- stop ----------------------------------------------------------------------------

    def _stop(self) -> None:
        """Stop every process by PID on every reachable host, remove the cluster's
        directories there, release the lock. Unreachable hosts are reported, not skipped silently."""
        failures: list[str] = []
        if self.hosts is not None:
            failures = _clean_hosts(self.inventory, self.hosts)
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        if self.hosts is not None:
            self.hosts.close()
            self.hosts = None
        if self._staging is not None:
            shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None
        if failures:
            raise RemoteError(", ".join(f.split(":", 1)[0] for f in failures), "stop",
                              "clean-up incomplete: " + "; ".join(failures))


def local_state_dir(inventory: Inventory) -> Path:
    """Where this machine keeps a cluster's kubeconfig and PKI: beside the local backend's state."""
    return paths.state_root() / "ssh" / inventory.cluster


def status(inventory: Inventory) -> dict:
    """What runs on each host (by pid file and recorded command line), and the kubeconfig."""
    hosts_status: dict[str, object] = {}
    with Hosts.of(inventory) as hosts:
        for remote in hosts.remotes.values():
            directory = f"{inventory.cluster_dir()}/{remote.host.name}"
            try:
                names = remote.run(f"ls {shlex.quote(directory)}/run/ 2>/dev/null | sed -n 's/\\.pid$//p'",
                                   check=False).stdout.split()
                hosts_status[remote.host.name] = {n: detached.status(remote, n, None, directory) for n in names}
            except RemoteError as error:
                hosts_status[remote.host.name] = f"unreachable: {error.reason}"
    kubeconfig = local_state_dir(inventory) / "state" / "config" / "admin.kubeconfig"
    running = any(isinstance(v, dict) and any(v.values()) for v in hosts_status.values())
    return {"cluster": inventory.cluster, "running": running, "hosts": hosts_status,
            "kubeconfig": str(kubeconfig) if kubeconfig.exists() else None}


def _clean_hosts(inventory: Inventory, hosts: Hosts) -> list[str]:
    """Stop our processes and remove our directory on every host, workers first.
    Returns one line per host that could not be cleaned."""
    failures = []
    cp = inventory.control_plane.name
    for name in [*(w.name for w in inventory.workers), cp]:
        remote, directory = hosts[name], f"{inventory.cluster_dir()}/{name}"
        started = time.monotonic()
        try:
            stopped = stop_all(remote, directory)
            remote.run(f"rm -rf {shlex.quote(directory)}", timeout=60)
            log.info("%s: cleaned in %.1f s (%s)", name, time.monotonic() - started,
                     ", ".join(f"{k} {v}" for k, v in stopped.items()) or "nothing ran")
        except RemoteError as error:
            log.warning("%s: not cleaned after %.1f s", name, time.monotonic() - started)
            failures.append(str(error).splitlines()[0])
    return failures


def down(inventory: Inventory) -> None:
    """Stop a cluster of ``inventory`` from the hosts' files alone (e.g. after its owner
    was killed): takes the lock (so never under a live run), stops every recorded
    process by PID after checking its recorded command line, removes the directories."""
    with Hosts.of(inventory) as hosts:
        with ClusterLock(hosts[inventory.control_plane.name], inventory.cluster_dir()):
            failures = _clean_hosts(inventory, hosts)
    shutil.rmtree(local_state_dir(inventory), ignore_errors=True)
    if failures:
        raise RemoteError(", ".join(f.split(":", 1)[0] for f in failures), "down",
                          "clean-up incomplete: " + "; ".join(failures))


def stop_all(remote: Remote, directory: str, timeout: float = 10.0) -> dict[str, str]:
    """Stop every process with a pid file under ``directory`` on ``remote``, in reverse
    start order, each by PID after checking its recorded command line."""
    listing = remote.run(f"ls -t {shlex.quote(directory)}/run/ 2>/dev/null | sed -n 's/\\.pid$//p'",
                         check=False).stdout.split()
    order = [n for n in ("kwok", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd") if n in listing]
    order += [n for n in listing if n not in order]
    return {name: detached.stop(remote, name, None, directory, timeout=timeout) for name in order}
