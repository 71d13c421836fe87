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
joins its namespaces with ``nsenter``. What a node is (its files, command lines, label and
taint) is :mod:`kdlib.cluster.node`'s; this module runs one here.
"""

from __future__ import annotations

import json
import os
import signal
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ...errors import ClusterError, ComponentError
from ...wait import wait_until
from ..controlplane.components import Component, HealthProbe
from ..node import config
from ..node.layout import NodeLayout
from . import cgroups, hostnet
from .hostnet import HostNetwork
from .processes import Processes

NODE_NAME_FORMAT = "kdlib-real-{}"
MAX_PODS = config.MAX_PODS  # read here by the suite's plan (experiments/microbench/spec.py)


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
        return self.layout.pod_cidr

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

    @property
    def layout(self) -> NodeLayout:
        return NodeLayout(self.name, self.address, self.index, self.root, self.runtime, self.cgroup)


# -- files and processes ------------------------------------------------------------------

def write_files(node: RealNode, ca: Path, kubeconfig: Path) -> dict[str, Path]:
    """Write the node's configuration; returns the paths the command lines name."""
    config.write_tree(node.root, node.layout, ca, hostnet.CNI_DIR)
    Path(node.layout.kubelet_root).mkdir(parents=True, exist_ok=True)
    return {"containerd": node.root / config.CONTAINERD_TOML, "kubelet": node.root / config.KUBELET_YAML,
            "kubeconfig": kubeconfig}


def containerd_component(node: RealNode, containerd_toml: Path) -> Component:
    """containerd in the node's network namespace and a new private mount namespace."""
    argv = ("nsenter", f"--net={hostnet.netns_path(node.netns)}", "--", "unshare", "--mount", "--propagation",
            "private", "--", "sh", "-c", config.containerd_script(node.layout, containerd_toml))
    return Component(node.process_names[0], argv, HealthProbe("unix:containerd"))


def kubelet_component(node: RealNode, kubelet: Path, files: dict[str, Path], containerd_pid: int) -> Component:
    argv = ("nsenter", f"--net={hostnet.netns_path(node.netns)}", f"--mount=/proc/{containerd_pid}/ns/mnt", "--",
            *config.kubelet_argv(node.layout, kubelet, files["kubelet"], files["kubeconfig"]))
    probe = HealthProbe(f"http://{node.address}:{config.KUBELET_HEALTHZ_PORT}/healthz")
    return Component(node.process_names[1], argv, probe)


def wait_containerd(node: RealNode, processes: Processes, deadline: float) -> None:
    name = node.process_names[0]

    def answers() -> bool:
        pid = processes.pid(name)
        if pid is None or not processes.alive(pid):
            raise ComponentError(name, "exited during start-up", processes.log_tail(name))
        return node.containerd_socket.exists() and subprocess.run(
            ["ctr", "--address", str(node.containerd_socket), "version"], capture_output=True,
            timeout=10).returncode == 0

    wait_until(answers, deadline=deadline, interval=0.1, error=lambda: ComponentError(
        name, "its socket did not answer before the start-up deadline", processes.log_tail(name)))


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


def _wait_quietly(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait up to ``timeout`` for ``condition``; what is left then is found and reported later."""
    try:
        wait_until(condition, timeout=timeout, interval=0.1)
    except TimeoutError:
        pass


def teardown(node: RealNode, processes: Processes, timeout: float = 10.0) -> dict[str, Any]:
    """Stop the node and remove its processes, cgroups and files; works from its files alone.

    Its network namespace stays until the apiserver has stopped: a kubelet's connection whose
    peer namespace is gone cannot be closed, and the apiserver's graceful stop waits for it.
    """
    containerd, kubelet = node.process_names
    killed = processes.stop([kubelet], timeout=timeout)

    def containers_gone() -> bool:  # containers: everything in the node's cgroups
        pids = cgroups.pids(node.cgroup)
        _kill(pids)
        return not pids

    _wait_quietly(containers_gone)
    killed += processes.stop([containerd], timeout=timeout)
    try:
        ids = json.loads(node.record.read_text()).get("namespaces") or {}
    except (OSError, ValueError):
        ids = {}
    shims = namespace_pids(ids) if ids else []
    _kill(shims)
    _wait_quietly(lambda: not ids or not namespace_pids(ids))
    cgroups_left = cgroups.remove(node.cgroup)
    shutil.rmtree(node.runtime, ignore_errors=True)
    if cgroups_left:
        raise ClusterError(f"{node.name}: cgroups still in use after the clean-up: {cgroups_left[:3]}")
    return {"killed": killed, "shims": len(shims)}
