"""A cluster on SSH hosts, mode ``kubeadm``: ``kubeadm init`` on the control-plane host, ``join`` on the workers.

The original artifact's way (its control-plane settings and, for Kd, its published
images). What kdlib does, per start:

1. every host reachable, the cluster's lock on the control-plane host, the
   prerequisites on every host (:mod:`.prerequisites`: one error naming each host and
   what it lacks);
2. our ``kubeadm`` and the kubelet (ours, or ``kubelet`` from ``bin_dir``) shipped
   content-addressed, linked into ``<remote_dir>/<cluster>/<host>/bin``;
3. the configuration (:mod:`.kubeadm`, data) validated on every host, then
   ``kubeadm init`` on the control-plane host and ``kubeadm join`` on the workers
   (in parallel), each after its kubelet was started;
4. the admin kubeconfig copied to this machine; with ``cni="bridge"`` each node gets a
   bridge network on its pod CIDR (pods reach pods of the same node only; the original
   used flannel, whose images come from the internet).

The workers register as the local backend's real nodes do (label and taint
``kdlib/real-node=true``) and get its workload image (``tools/sleeper``, imported with
``ctr``), so ``kdlib.k8s.objects.deployment(..., on_real_nodes=True)`` runs there.

The kubelet runs as kubeadm expects it (:mod:`.kubeadm_kubelet`): a transient systemd unit
restarted every second where systemd is PID 1, else kdlib's own detached restart loop; both
with the flags of kubeadm's ``10-kubeadm.conf``, so hosts need no systemd and no kubelet package; a host with a
``kubelet.service`` enabled is refused (two kubelets would fight). Clean-up, workers
first: stop a kubeadm an interrupted owner left running and the kubelet (by PID), ``kubeadm
reset`` (forced) where kdlib ran init or join (a marker file in the host's directory says
so), remove kdlib's files in ``/etc``, the host's directory, the lock. kwok workers are not part of this mode yet (refused).

Tested end to end on two SSH test hosts of this machine (``tests/kubeadmhosts.py``) and on
two Debian 12 VMs with systemd and cgroup v2 (``tests/integration/vm/test_vm_kubeadm.py``:
init, join, a suite at tiny scale, reset). Long because the start, its clean-up and the
``kdlib ssh`` commands of this mode read best together.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shlex
import time
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ...baselines import Baseline
from ...errors import ClusterError, ConfigError, RemoteError
from ...wait import wait_until
from ..base import ClusterInfo
from ..binaries import build_node_binaries, default_bin_dir
from ..marker import MARKER as OURS, is_ours
from ..signals import signals_deferred
from ..node import config as node_config
from ..node import identity, images
from ..settings import client_limits
from . import base, kubeadm, kubeadm_config, kubeadm_host, kubeadm_kubelet, kubelets, prerequisites
from .base import SshClusterBase, local_state_dir
from .inventory import Host, Inventory
from .remote import Hosts, Remote, SshOptions

log = logging.getLogger(__name__)

MARKER = "kubeadm.json"  # in the host's directory: kdlib ran init/join there (so reset is ours to run)
CNI_CONFIG = "/etc/cni/net.d/10-kdlib.conflist"
KUBEADM_CNI_BRIDGE = "kdlib-cni0"
RESET_ATTEMPTS = 3
NO_KUBELET_SERVICE = prerequisites.Prerequisite(
    "kubelet-service", "! systemctl is-enabled --quiet kubelet.service",
    "no kubelet.service enabled (kdlib runs the kubelet itself: systemctl disable --now kubelet)")
CTR = prerequisites.Prerequisite("ctr", "command -v ctr >/dev/null",
                                 "`ctr` (containerd's client) on PATH: kdlib imports the workload image with it")
CNI_PLUGINS = prerequisites.Prerequisite(
    "cni-plugins", "for d in /opt/cni/bin /usr/lib/cni; do [ -x $d/bridge ] && [ -x $d/host-local ] && "
    "[ -x $d/portmap ] && exit 0; done; exit 1",
    "the CNI plugins bridge, host-local, portmap in /opt/cni/bin or /usr/lib/cni (containernetworking-plugins)")


class KubeadmCluster(SshClusterBase):
    """A kubeadm cluster on the hosts of ``inventory`` (mode ``kubeadm``): the control
    plane and every ``kubelet: true`` worker are nodes."""

    def __init__(self, inventory: Inventory, *, settings: kubeadm_config.KubeadmSettings | None = None,
                 bin_dir: Path | str | None = None, kd: bool = False, unthrottled: bool = False,
                 cni: str | None = None,
                 kubelet_patches: dict[str, dict[str, Any]] | None = None,
                 preflight_ignored: tuple[str, ...] = (), timeout: float = 600.0,
                 state_dir: Path | str | None = None) -> None:
        super().__init__(inventory, state_dir)
        chosen = {**inventory.kubeadm.settings(), "unthrottled": unthrottled}  # the inventory's kubeadm: section
        self.settings = settings or (kubeadm_config.KubeadmSettings.kd(**chosen) if kd
                                     else kubeadm_config.KubeadmSettings.vanilla(**chosen))
        problems = [f"settings: {p}" for p in self.settings.problems()]
        if inventory.mode != "kubeadm":
            problems.append(f"inventory {inventory.source}: mode is {inventory.mode!r}, not 'kubeadm'")
        if inventory.kwok_workers:
            problems.append(f"inventory {inventory.source}: {', '.join(w.name for w in inventory.kwok_workers)}: "
                            "kwok_nodes: kwok workers are not implemented in kubeadm mode yet")
        if cni not in (None, "bridge"):
            problems.append(f"cni: must be None or 'bridge', not {cni!r}")
        unknown = sorted(set(kubelet_patches or {}) - {h.name for h in inventory.hosts})
        if unknown:
            problems.append(f"kubelet_patches: no such host: {', '.join(unknown)}")
        if problems:
            raise ConfigError("; ".join(problems))
        self.bin_dir = Path(bin_dir).expanduser() if bin_dir is not None else None
        self.kd = kd or self.settings.kd_images
        self.cni = cni
        self.kubelet_patches = dict(kubelet_patches or {})
        self.preflight_ignored = tuple(dict.fromkeys((*inventory.kubeadm.ignore_preflight_errors, *preflight_ignored)))
        self.timeout = timeout

    @staticmethod
    def hosts_of(inventory: Inventory) -> tuple[Host, ...]:
        return (inventory.control_plane, *inventory.kubelet_workers)

    @property
    def nodes(self) -> tuple[Host, ...]:
        return self.hosts_of(self.inventory)

    def clean_host(self, remote: Remote) -> None:
        clean_host(remote, self.inventory.cluster, self.host_dir(remote.host.name), self.settings.cri_socket)

    def why_not(self, baseline: Baseline) -> str | None:
        if baseline.simulated:
            return "needs kwok nodes: kubeadm mode runs real kubelets only in this version"
        return None

    def pod_process_starts(self) -> dict[str, list[float]]:
        """From every node's ``kubepods`` (systemd: ``kubepods.slice``) below its ``cgroupRoot``."""
        root = {h.name: self.kubelet_patches.get(h.name, {}).get("cgroupRoot", "/").rstrip("/") for h in self.nodes}
        return self.process_starts_on(list(root), lambda r: kubelets.pod_process_starts(
            r, f"{root[r.host.name]}/kubepods"))

    # -- start ---------------------------------------------------------------------------

    def _start(self) -> ClusterInfo:
        started = time.monotonic()
        if self.state_dir.exists() and not is_ours(self.state_dir):
            raise ClusterError(f"{self.state_dir} exists and was not made by kdlib: refusing to touch it")
        local = {"kubeadm": build_node_binaries(default_bin_dir(), names=("kubeadm",))["kubeadm"]}
        own = self.bin_dir / "kubelet" if self.bin_dir else None
        built = build_node_binaries(default_bin_dir(), names=("kubelet", "sleeper"))
        local["kubelet"] = own if own and own.is_file() else built["kubelet"]
        self._sleeper = built["sleeper"]
        try:
            self._connect()
            self.lock = self._acquire_lock()
            checks = (*prerequisites.prerequisites(self.settings.cri_socket), NO_KUBELET_SERVICE, CTR,
                      *((CNI_PLUGINS,) if self.cni == "bridge" else ()))
            prerequisites.check_hosts(self.hosts, [h.name for h in self.nodes], checks)
            self._timings["checked"] = time.monotonic() - started
            self._clear_remains()  # what a previous run of ours left
            tools = self.hosts.each(lambda r: kubeadm.install(r, local, self.inventory.remote_dir,
                                                              self.host_dir(r.host.name)))
            tools.check()
            self._timings["shipped"] = time.monotonic() - started
            return self._boot(dict(tools), started)
        except BaseException:
            with signals_deferred():  # a Ctrl-C again must not cut the clean-up short
                log.warning("start-up of the kubeadm cluster failed; cleaning up the hosts")
                try:
                    self._stop()
                except RemoteError as cleanup:
                    log.warning("%s", str(cleanup).splitlines()[0])
            raise

    def _boot(self, tools: dict[str, kubeadm.HostTools], started: float) -> ClusterInfo:
        cp = self.inventory.control_plane
        token = kubeadm_config.new_token()
        cp_tools = tools[cp.name]
        # What each node has before anything of ours: undone after kubeadm reset (kubeadm_host).
        self.hosts.each(lambda r: kubeadm_host.record(r, tools[r.host.name].work_dir, KUBEADM_CNI_BRIDGE,
                                                      self.settings.cri_socket), hosts=list(tools)).check()
        kubeadm.put_text(cp_tools.remote, yaml.safe_dump(kubeadm_config.scheduler_configuration(self.settings.unthrottled), sort_keys=False),
                         kubeadm_config.SCHEDULER_CONFIG, mode=0o644)
        config = self._config(cp_tools, kubeadm_config.init_yaml(self.settings, cp, token, self._patches(cp_tools),
                                                                  wait_s=self.timeout))
        self._start_kubelet(cp_tools)
        self._mark(cp_tools, "init")
        kubeadm.init(cp_tools, config, timeout=self.timeout, ignored=self.preflight_ignored)
        self._timings["init"] = time.monotonic() - started

        remote = cp_tools.remote
        ca_hash = ca_cert_hash(remote.run("cat /etc/kubernetes/pki/ca.crt").stdout.encode())
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / OURS).write_text("made by kdlib's ssh backend (kubeadm mode)\n")
        kubeconfig = self.state_dir / "admin.kubeconfig"
        kubeconfig.write_text(remote.run("cat /etc/kubernetes/admin.conf").stdout)
        kubeconfig.chmod(0o600)

        archive = images.build_archive(self._sleeper, self.state_dir / "sleeper-image.tar")

        def join(r: Remote) -> None:
            t = tools[r.host.name]
            self._import_image(t, archive)
            path = self._config(t, kubeadm_config.join_yaml(self.settings, r.host, cp, token, ca_hash, self._patches(t),
                                                            identity.LABEL, [identity.TAINT], wait_s=self.timeout))
            self._start_kubelet(t)
            self._mark(t, "join")
            kubeadm.join(t, path, timeout=self.timeout, ignored=self.preflight_ignored)

        workers = [w.name for w in self.inventory.kubelet_workers]
        if workers:
            self.hosts.each(join, hosts=workers).check()
        self._timings["joined"] = time.monotonic() - started
        info = ClusterInfo("ssh", kubeconfig, (), self.kd, {"kubeadm": self.settings.kubernetes_version},
                           {"control plane": f"{self.settings.image_repository} images"},
                           real_node_names=tuple(workers),
                           client_limits=client_limits(self.settings.unthrottled))
        if self.cni == "bridge":
            self._bridge_cni(info)
        return info

    def _config(self, tools: kubeadm.HostTools, text: str) -> str:
        path = f"{tools.work_dir}/kubeadm.yaml"
        kubeadm.put_text(tools.remote, text, path)
        kubeadm.validate(tools, path)
        return path

    def _patches(self, tools: kubeadm.HostTools) -> str | None:
        """kubeadm's patch directory with this host's kubelet settings, if it has any."""
        patch = self.kubelet_patches.get(tools.host)
        if not patch:
            return None
        directory = f"{tools.work_dir}/patches"
        kubeadm.put_text(tools.remote, yaml.safe_dump(patch), f"{directory}/kubeletconfiguration+merge.yaml")
        return directory

    def _import_image(self, tools: kubeadm.HostTools, archive: Path) -> None:
        """The real nodes' workload image, into containerd's k8s.io namespace (where the CRI looks)."""
        remote_archive = f"{tools.work_dir}/{archive.name}"
        tools.remote.put(archive, remote_archive, mode=0o644)
        socket = self.settings.cri_socket.removeprefix("unix://")
        tools.remote.run(f"ctr --address {shlex.quote(socket)} --namespace k8s.io images import "
                         f"{shlex.quote(remote_archive)}", timeout=120)

    def _start_kubelet(self, tools: kubeadm.HostTools) -> None:
        kubeadm_kubelet.start(tools.remote, self.inventory.cluster, f"{tools.bin_dir}/kubelet", tools.work_dir)

    def _mark(self, tools: kubeadm.HostTools, what: str) -> None:
        """Recorded BEFORE init/join: a half-done one is reset too."""
        tools.remote.run(f"echo {shlex.quote(json.dumps({'kubeadm': what}))} > {shlex.quote(tools.work_dir)}/{MARKER}")

    def _bridge_cni(self, info: ClusterInfo) -> None:
        from kubernetes import client

        api = info.api_client()
        try:
            deadline = time.monotonic() + 60
            core = client.CoreV1Api(api)
            for host in self.nodes:
                cidr = _wait_pod_cidr(core, host.name, deadline)
                kubeadm.put_text(self.hosts[host.name], json.dumps(bridge_conflist(cidr), indent=2), CNI_CONFIG,
                                 mode=0o644)
        finally:
            api.close()


def _nodes(inventory: Inventory) -> Hosts:
    return Hosts(KubeadmCluster.hosts_of(inventory), SshOptions.of(inventory))


def status(inventory: Inventory) -> dict:
    """Per node: whether kdlib ran init/join there and the PID of its kubelet; the kubeconfig."""

    def of_host(remote: Remote) -> dict[str, Any]:
        directory = base.host_dir(inventory, remote.host.name)
        marker = remote.run(f"cat {shlex.quote(directory)}/{MARKER} 2>/dev/null", check=False).stdout
        return {"kubeadm": json.loads(marker)["kubeadm"] if marker.strip() else None,
                "kubelet": kubeadm_kubelet.status(remote, inventory.cluster, directory)}

    return base.status(inventory, _nodes(inventory), of_host, running=lambda node: bool(node["kubelet"]),
                       kubeconfig=local_state_dir(inventory) / "admin.kubeconfig", mode="kubeadm")


def down(inventory: Inventory) -> None:
    """Clean every node from the hosts' files alone (after a killed owner, too): under the
    cluster's lock, workers first."""
    base.down(inventory, _nodes(inventory),
              lambda remote: clean_host(remote, inventory.cluster, base.host_dir(inventory, remote.host.name)))


def run_cli(args: argparse.Namespace, inventory: Inventory) -> int:
    """``python -m kdlib ssh up|status|down`` for an inventory of mode kubeadm."""
    if args.action == "up":
        cluster = KubeadmCluster(inventory, bin_dir=args.bin_dir, kd=args.kd, cni="bridge", timeout=args.timeout)
        print(cluster.start().kubeconfig)  # left running: `down` stops it
        return 0
    if args.action == "status":
        found = status(inventory)
        print(json.dumps(found, indent=2))
        return 0 if found["running"] else 1
    down(inventory)
    return 0


def clean_host(remote: Remote, cluster: str, directory: str,
               cri_socket: str = kubeadm_config.CONTAINERD_SOCKET) -> None:
    """Stop our kubelet by PID, ``kubeadm reset -f`` when kdlib ran init/join here,
    remove kdlib's files in /etc and the host's directory."""
    q = shlex.quote
    started = time.monotonic()
    interrupted = kubeadm.stop_kubeadm(remote, directory)  # an init/join its owner left running
    kubelet = kubeadm_kubelet.stop(remote, cluster, directory)
    log.info("%s: kubeadm %s, kubelet %s", remote.host.name, interrupted, kubelet)
    if remote.run(f"test -f {q(directory)}/{MARKER}", check=False).ok:
        tools = kubeadm.HostTools(remote, f"{directory}/bin", directory)
        for attempt in range(1, RESET_ATTEMPTS + 1):
            out = kubeadm.reset(tools, cri_socket)
            # reset only warns (exit 0) when containerd refuses to remove a pod whose container
            # is still stopping ("failed to set removing state"): measured on the CP host.
            failed = [line for line in out.splitlines() if "Failed to remove containers" in line]
            if not failed:
                break
            log.info("%s: kubeadm reset, attempt %d: %s", remote.host.name, attempt, failed[0][-200:])
            if attempt == RESET_ATTEMPTS:
                raise RemoteError(remote.host.name, tools.command("reset"),
                                  f"kubeadm reset left containers after {attempt} attempts", failed[0])
            time.sleep(2)
    remote.run(f"rm -f {q(CNI_CONFIG)} {q(kubeadm_config.SCHEDULER_CONFIG)}", timeout=60)
    kubeadm_host.restore(remote, directory, KUBEADM_CNI_BRIDGE, cri_socket)
    remote.run(f"rm -rf {q(directory)}", timeout=60)
    log.info("%s: cleaned in %.1f s", remote.host.name, time.monotonic() - started)


def ca_cert_hash(pem: bytes) -> str:
    """kubeadm's ``--discovery-token-ca-cert-hash``: SHA-256 of the CA's SubjectPublicKeyInfo."""
    spki = x509.load_pem_x509_certificate(pem).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(spki).hexdigest()


def bridge_conflist(pod_cidr: str) -> dict[str, Any]:
    """A node-local pod network on ``pod_cidr``: a real node's, with kubeadm's portmap and a bridge
    of its own name (the node's network is the host's here)."""
    return node_config.cni_conflist(pod_cidr, bridge=KUBEADM_CNI_BRIDGE, port_map=True)


def _wait_pod_cidr(core, name: str, deadline: float) -> str:  # core: a CoreV1Api
    return wait_until(lambda: _pod_cidr(core, name), deadline=deadline, interval=0.5,
                      error=lambda: RemoteError(name, "bridge CNI", "the node has no pod CIDR after 60 s"))


def _pod_cidr(core, name: str) -> str | None:  # core: a CoreV1Api
    try:
        return core.read_node(name).spec.pod_cidr
    except Exception:  # not registered yet
        return None
