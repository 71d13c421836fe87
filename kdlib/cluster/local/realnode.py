"""One real node host on this machine: its own containerd and kubelet, in namespaces of its own.

A node ``i`` of a cluster lives in ``<state>/nodes/<name>/``:

* network: the namespace ``<tag>-n<i>`` with one veth on the cluster's bridge
  (:mod:`.hostnet`); inside it the CNI ``bridge`` plugin makes the pod network
  ``10.244.<i>.0/24`` (pods never leave the namespace);
* mounts: a private mount namespace in which ``/var/lib``, ``/var/log``, ``/run`` and
  ``/usr/libexec`` are overlays whose upper layers are in the node's directory, so the
  kubelet's and containerd's fixed paths (``/var/lib/kubelet/device-plugins``,
  ``/var/log/containers``, ``/run/containerd/s``, ...) are private and vanish with the
  namespace; nothing is ever mounted in the host's namespace;
* cgroups: ``/<tag>-n<i>`` in every cgroup v1 hierarchy is the kubelet's ``cgroupRoot``.

containerd is started first (it creates the mount namespace and keeps it); the kubelet
joins its namespaces with ``nsenter``. The settings follow what a probe on this kind of
machine measured (``restrict_oom_score_adj``: no CAP_SYS_RESOURCE; no AppArmor, no
hugetlb cgroup; cgroupfs v1).
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from ...errors import ClusterError, ComponentError
from . import cgroups, hostnet, images
from .hostnet import HostNetwork
from ..controlplane.components import Component, HealthProbe
from .processes import Processes

NODE_NAME_FORMAT = "kdlib-real-{}"
REAL_NODE_LABEL = {"kdlib/real-node": "true"}
REAL_NODE_TAINT = {"key": "kdlib/real-node", "value": "true", "effect": "NoSchedule"}
REAL_NODE_TOLERATION = {"key": "kdlib/real-node", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
PRIVATE_PATHS = ("/var/lib", "/var/log", "/run", "/usr/libexec")
MAX_PODS = 110
KUBELET_HEALTHZ_PORT = 10248


@dataclass(frozen=True)
class RealNode:
    """Where node ``index`` of a cluster keeps its files, and its names and addresses."""

    state_dir: Path
    net: HostNetwork
    index: int

    @property
    def name(self) -> str:
        return NODE_NAME_FORMAT.format(self.index)

    @property
    def root(self) -> Path:
        return self.state_dir / "nodes" / self.name

    @property
    def address(self) -> str:
        return self.net.node_address(self.index)

    @property
    def netns(self) -> str:
        return self.net.netns(self.index)

    @property
    def pod_cidr(self) -> str:
        return f"10.244.{self.index}.0/24"

    @property
    def cgroup(self) -> str:
        return f"/{self.net.tag}-n{self.index}"

    @property
    def runtime(self) -> Path:
        """A short directory for the sockets and the kubelet's root: unix socket paths must
        stay under 108 bytes, which a state directory deep under pytest's tmp exceeds."""
        return Path(tempfile.gettempdir()) / f"{self.net.tag}-n{self.index}"

    @property
    def containerd_socket(self) -> Path:
        return self.runtime / "containerd.sock"

    @property
    def process_names(self) -> tuple[str, str]:
        """(containerd, kubelet): their names in the cluster's run/ and logs/ folders."""
        return f"{self.name}-containerd", f"{self.name}-kubelet"

    @property
    def record(self) -> Path:
        return self.root / "node.json"


# -- configuration files ---------------------------------------------------------------

def _toml(table: dict[str, Any], prefix: str = "") -> str:
    """The little TOML containerd's config needs: scalars, string lists, nested tables."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return str(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(str(v))

    lines = [f"{k} = {value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    for k, v in table.items():
        if isinstance(v, dict):
            name = f'{prefix}.{json.dumps(k) if "." in k else k}' if prefix else (json.dumps(k) if "." in k else k)
            lines += ["", f"[{name}]", _toml(v, name)]
    return "\n".join(line for line in lines if line is not None)


def containerd_config(node: RealNode, cni_dir: PurePosixPath | Path = hostnet.CNI_DIR, *,
                      systemd_cgroup: bool = False) -> dict[str, Any]:
    """containerd's configuration. ``node`` may be any object with the paths of a
    :class:`RealNode` (the SSH backend's workers use these builders too). ``systemd_cgroup``:
    runc makes each container a systemd scope (a host whose PID 1 is systemd; the kubelet's
    cgroup driver must agree)."""
    d = node.root
    return {
        "version": 2,
        "root": str(d / "containerd" / "root"),
        "state": str(node.runtime / "containerd-state"),
        "disabled_plugins": [f"io.containerd.snapshotter.v1.{s}" for s in ("aufs", "btrfs", "zfs", "devmapper")],
        "grpc": {"address": str(node.containerd_socket)},
        "ttrpc": {"address": str(node.containerd_socket) + ".ttrpc"},
        "debug": {"address": "", "level": "warn"},
        "metrics": {"address": ""},
        "plugins": {
            "io.containerd.internal.v1.opt": {"path": str(d / "containerd" / "opt")},
            "io.containerd.grpc.v1.cri": {
                "sandbox_image": images.SANDBOX_IMAGE,
                "restrict_oom_score_adj": True,  # no CAP_SYS_RESOURCE here: runc fails otherwise
                "disable_apparmor": True,
                "tolerate_missing_hugetlb_controller": True,
                "disable_hugetlb_controller": True,
                "netns_mounts_under_state_dir": True,
                "stream_server_address": "127.0.0.1",
                "stream_server_port": "0",
                "containerd": {
                    "snapshotter": "overlayfs",
                    "default_runtime_name": "runc",
                    "runtimes": {"runc": {
                        "runtime_type": "io.containerd.runc.v2",
                        "options": {"SystemdCgroup": systemd_cgroup, "Root": str(d / "runc"), "BinaryName": "runc"},
                    }},
                },
                "cni": {"bin_dir": str(cni_dir), "conf_dir": str(d / "cni" / "net.d"), "max_conf_num": 1},
            },
        },
    }


def cni_conflist(node: RealNode) -> dict[str, Any]:
    return {
        "cniVersion": "0.4.0",
        "name": "kdlib",
        "plugins": [{
            "type": "bridge",
            "bridge": "kdcni0",  # inside the node's namespace: the name is free there
            "isGateway": True,
            "ipMasq": False,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": node.pod_cidr}]],
                     "dataDir": str(node.root / "cni" / "ipam")},
        }],
    }


def kubelet_config(node: RealNode, ca: Path | PurePosixPath, cgroup_driver: str = "cgroupfs") -> dict[str, Any]:
    """The kubelet's configuration; ``cgroup_driver`` "systemd" where systemd is PID 1 (containerd's must agree):
    ``node.cgroup`` then names the slice the kubelet puts its pods under (``/a-b`` is ``a_b.slice``)."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node.address,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": node.address,  # the host probes it over the bridge
        "healthzPort": KUBELET_HEALTHZ_PORT,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                           "x509": {"clientCAFile": str(ca)}},
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": f"unix://{node.containerd_socket}",
        "imageServiceEndpoint": f"unix://{node.containerd_socket}",
        "cgroupDriver": cgroup_driver,
        "cgroupRoot": node.cgroup,
        "failCgroupV1": False,  # this machine has cgroup v1 only
        "failSwapOn": False,
        "podCIDR": node.pod_cidr,
        "podLogsDir": str(node.root / "pod-logs"),
        "volumePluginDir": str(node.root / "volume-plugins"),
        "makeIPTablesUtilChains": False,
        "maxPods": MAX_PODS,
        "serializeImagePulls": False,
        # The disk is shared with everything else: evict only when it is really full,
        # and never collect the imported images (they cannot be pulled again).
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "registerWithTaints": [REAL_NODE_TAINT],
        "resolvConf": "/etc/resolv.conf",
    }


def write_files(node: RealNode, ca: Path, kubeconfig: Path) -> dict[str, Path]:
    """Write the node's configuration; returns the paths the command lines name."""
    for sub in ("containerd", "runc", "cni/net.d", "cni/ipam", "pod-logs", "volume-plugins", "certs",
                *(f"overlay/{p.strip('/').replace('/', '-')}/{x}" for p in PRIVATE_PATHS for x in ("upper", "work"))):
        (node.root / sub).mkdir(parents=True, exist_ok=True)
    (node.runtime / "kubelet").mkdir(parents=True, exist_ok=True)
    files = {"containerd": node.root / "containerd.toml", "kubelet": node.root / "kubelet.yaml",
             "kubeconfig": kubeconfig}
    files["containerd"].write_text(_toml(containerd_config(node)) + "\n")
    (node.root / "cni" / "net.d" / "10-kdlib.conflist").write_text(json.dumps(cni_conflist(node), indent=2))
    files["kubelet"].write_text(yaml.safe_dump(kubelet_config(node, ca), sort_keys=False))
    return files


# -- processes ---------------------------------------------------------------------------

def containerd_script(node: RealNode, config: Path | PurePosixPath, shared: tuple[str, ...] = ()) -> str:
    """The shell line run in a new private mount namespace: the overlays over the fixed
    paths, then containerd (which shows as ``containerd --config CONFIG``).

    ``shared``: directories under the overlaid paths that stay the host's own, e.g. the
    sockets of D-Bus and systemd (``/run/dbus``, ``/run/systemd``) that runc and the kubelet
    talk to with the systemd cgroup driver: a unix socket cannot be reached through an
    overlay (connect() finds the overlay's inode, not the one the socket is bound to).
    Each is bound aside before the overlays and moved back on top of them."""
    aside = [(path, node.root / "shared" / path.strip("/").replace("/", "-")) for path in shared]
    keep = [f"mkdir -p {shlex.quote(str(spot))} && mount --bind {shlex.quote(path)} {shlex.quote(str(spot))}"
            for path, spot in aside]
    mounts = []
    for path in PRIVATE_PATHS:
        layer = node.root / "overlay" / path.strip("/").replace("/", "-")
        mounts.append(f"mount -t overlay kdlib-node -o lowerdir={path},upperdir={layer}/upper,"
                      f"workdir={layer}/work {path}")
    back = [f"mount --move {shlex.quote(str(spot))} {shlex.quote(path)}" for path, spot in aside]
    return " && ".join([*keep, *mounts, *back, f"exec containerd --config {shlex.quote(str(config))}"])


def containerd_component(node: RealNode, config: Path) -> Component:
    """containerd in the node's network namespace and a new private mount namespace."""
    argv = ("nsenter", f"--net={hostnet.netns_path(node.netns)}", "--",
            "unshare", "--mount", "--propagation", "private", "--", "sh", "-c", containerd_script(node, config))
    return Component(node.process_names[0], argv, HealthProbe("unix:containerd"))


def kubelet_argv(node: RealNode, kubelet: Path | PurePosixPath, config: Path | PurePosixPath,
                 kubeconfig: Path | PurePosixPath) -> tuple[str, ...]:
    """The kubelet's own command line (run in containerd's mount namespace)."""
    return (
        str(kubelet),
        f"--config={config}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={node.runtime / 'kubelet'}",
        f"--cert-dir={node.root / 'certs'}",
        f"--hostname-override={node.name}",
        f"--node-ip={node.address}",
        "--node-labels=" + ",".join(f"{k}={v}" for k, v in REAL_NODE_LABEL.items()),
    )


def kubelet_component(node: RealNode, kubelet: Path, files: dict[str, Path], containerd_pid: int) -> Component:
    argv = ("nsenter", f"--net={hostnet.netns_path(node.netns)}", f"--mount=/proc/{containerd_pid}/ns/mnt", "--",
            *kubelet_argv(node, kubelet, files["kubelet"], files["kubeconfig"]))
    probe = HealthProbe(f"http://{node.address}:{KUBELET_HEALTHZ_PORT}/healthz")
    return Component(node.process_names[1], argv, probe)


def wait_containerd(node: RealNode, processes: Processes, deadline: float) -> None:
    name = node.process_names[0]
    while True:
        pid = processes.pid(name)
        if pid is None or not processes.alive(pid):
            raise ComponentError(name, "exited during start-up", processes.log_tail(name))
        if node.containerd_socket.exists():
            ok = subprocess.run(["ctr", "--address", str(node.containerd_socket), "version"],
                                capture_output=True, timeout=10).returncode == 0
            if ok:
                return
        if time.monotonic() > deadline:
            raise ComponentError(name, "its socket did not answer before the start-up deadline",
                                 processes.log_tail(name))
        time.sleep(0.1)


def namespace_ids(pid: int) -> dict[str, int]:
    """The inode numbers of ``pid``'s mount and network namespaces (to find its shims later)."""
    return {kind: os.stat(f"/proc/{pid}/ns/{kind}").st_ino for kind in ("mnt", "net")}


def _kill(pids: set[int] | list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def namespace_pids(ids: dict[str, int]) -> list[int]:
    """Processes in both the recorded mount and network namespace: containerd and its shims."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if all(os.stat(entry / "ns" / kind).st_ino == ino for kind, ino in ids.items()):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def teardown(node: RealNode, processes: Processes, timeout: float = 10.0) -> dict[str, Any]:
    """Stop the node and remove its processes, cgroups and files; works from its files alone.

    Its network namespace stays until the apiserver has stopped: a kubelet's connection whose
    peer namespace is gone cannot be closed, and the apiserver's graceful stop waits for it.
    """
    containerd, kubelet = node.process_names
    killed = processes.stop([kubelet], timeout=timeout)
    for _ in range(50):  # containers: everything in the node's cgroups
        pids = cgroups.pids(node.cgroup)
        if not pids:
            break
        _kill(pids)
        time.sleep(0.1)
    killed += processes.stop([containerd], timeout=timeout)
    try:
        ids = json.loads(node.record.read_text()).get("namespaces") or {}
    except (OSError, ValueError):
        ids = {}
    shims = namespace_pids(ids) if ids else []
    _kill(shims)
    for _ in range(50):
        if not ids or not namespace_pids(ids):
            break
        time.sleep(0.1)
    cgroups_left = cgroups.remove(node.cgroup)
    shutil.rmtree(node.runtime, ignore_errors=True)
    if cgroups_left:
        raise ClusterError(f"{node.name}: cgroups still in use after the clean-up: {cgroups_left[:3]}")
    return {"killed": killed, "shims": len(shims)}
