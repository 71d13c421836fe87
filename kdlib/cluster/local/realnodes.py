"""The real nodes of a local cluster, as a group: bring them up beside the kwok nodes, and
take every trace of them away again.

What exists is written to ``<state>/real-nodes.json`` *before* it is created (bridge,
namespaces, the sysctls as they were before the first kubelet), so :func:`teardown`
works from the files alone: after Ctrl-C half-way through start-up, or from ``down``
for a cluster whose owner was killed.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from kubernetes import client

from ...errors import ClusterError
from ..controlplane import pki
from ..node import identity, images, ready
from . import cgroups, hostnet, realnode
from .hostnet import HostNetwork
from .processes import Processes, process_cpu_seconds
from .realnode import RealNode

log = logging.getLogger(__name__)

RECORD = "real-nodes.json"


def _read(state_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((state_dir / RECORD).read_text())
    except (OSError, ValueError):
        return {}


def _write(state_dir: Path, record: dict[str, Any]) -> None:
    tmp = state_dir / (RECORD + ".tmp")
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(state_dir / RECORD)


def create_network(state_dir: Path, count: int) -> HostNetwork:
    """Choose the bridge's subnet, record it, then create the bridge (before the apiserver binds it)."""
    net = hostnet.choose_network(state_dir)
    _write(state_dir, {"net": net.to_json(), "count": count})
    hostnet.create_bridge(net)
    return net


def node_names(count: int) -> list[str]:
    return [realnode.NODE_NAME_FORMAT.format(i) for i in range(count)]


def start(state_dir: Path, net: HostNetwork, count: int, processes: Processes, *, kubelet: Path,
          sleeper: Path, pki_dir: Path, server: str, deadline: float) -> list[str]:
    """Start ``count`` real nodes and wait until their kubelets are healthy; returns the node names."""
    nodes = [RealNode(state_dir, net, i) for i in range(count)]
    ca = pki.KeyPair(pki_dir / "ca.crt", pki_dir / "ca.key")
    archive = images.build_archive(sleeper, state_dir / "images" / "sleeper.tar")
    for node in nodes:
        pair = pki.issue(ca, pki_dir, f"{node.name}-client", f"system:node:{node.name}",
                         organizations=("system:nodes",))
        node.root.mkdir(parents=True, exist_ok=True)
        kubeconfig = pki.write_kubeconfig(node.root / "kubelet.kubeconfig", server, ca, pair,
                                          f"system:node:{node.name}")
        files = realnode.write_files(node, ca.cert, kubeconfig)
        hostnet.create_node_netns(net, node.index)
        cgroups.create(node.cgroup)
        processes.start(realnode.containerd_component(node, files["containerd"]))
        (node.root / "files.json").write_text(json.dumps({k: str(v) for k, v in files.items()}))
    for node in nodes:
        realnode.wait_containerd(node, processes, deadline)
        pid = processes.pid(node.process_names[0]) or 0
        node.record.write_text(json.dumps({"namespaces": realnode.namespace_ids(pid)}))
        images.import_archive(archive, node.containerd_socket)
    hostnet.claim_sysctls(state_dir)  # as they were before any kubelet of ours touched them
    components = []
    for node in nodes:
        files = {k: Path(v) for k, v in json.loads((node.root / "files.json").read_text()).items()}
        component = realnode.kubelet_component(node, kubelet, files, processes.pid(node.process_names[0]))
        processes.start(component)
        components.append(component)
    for component in components:
        processes.wait_healthy(component, deadline)
    return [node.name for node in nodes]


def pod_process_starts(state_dir: Path) -> dict[str, list[float]]:
    """Every real pod's process start times by pod uid (see :func:`.cgroups.pod_process_starts`)."""
    record = _read(state_dir)
    if not record.get("net"):
        return {}
    net = HostNetwork.from_json(record["net"])
    starts: dict[str, list[float]] = {}
    for index in range(int(record.get("count") or 0)):
        starts.update(cgroups.pod_process_starts(RealNode(state_dir, net, index).cgroup))
    return starts


def process_names(state_dir: Path) -> list[str]:
    """The names of the real nodes' containerd and kubelet processes (in the cluster's run/)."""
    record = _read(state_dir)
    if not record.get("net"):
        return []
    net = HostNetwork.from_json(record["net"])
    return [name for index in range(int(record.get("count") or 0))
            for name in RealNode(state_dir, net, index).process_names]


def cpu_seconds(state_dir: Path) -> dict[int, float]:
    """CPU seconds used so far by what runs the real pods, by process (or -1-index for a node's
    pods): each node's containerd, kubelet and shims (the processes of its namespaces, with
    their reaped children: runc, the CNI plugins) and its pods (their cgroups' cpuacct)."""
    record = _read(state_dir)
    if not record.get("net"):
        return {}
    net = HostNetwork.from_json(record["net"])
    found: dict[int, float] = {}
    for index in range(int(record.get("count") or 0)):
        node = RealNode(state_dir, net, index)
        try:
            ids = json.loads(node.record.read_text()).get("namespaces") or {}
        except (OSError, ValueError):
            ids = {}
        for pid in realnode.namespace_pids(ids) if ids else []:
            seconds = process_cpu_seconds(pid)
            if seconds is not None:
                found[pid] = seconds
        found[-1 - index] = cgroups.cpu_seconds(node.cgroup)
    return found


def wait_ready(api: client.ApiClient, names: list[str], deadline: float) -> None:
    """Poll until every named real node reports Ready."""
    ready.wait_ready(api, names, selector=identity.SELECTOR, deadline=deadline, error=lambda missing: ClusterError(
        f"real nodes {', '.join(missing)} did not become Ready before the start-up deadline "
        "(see logs/<node>-kubelet.log)"))


def teardown(state_dir: Path, processes: Processes, timeout: float = 10.0) -> dict[str, Any]:
    """Stop every real node of the cluster in ``state_dir``; a no-op without real nodes.

    Containers (everything in the nodes' cgroups), kubelets, containerds and their shims
    are killed; the nodes' cgroups removed. The network stays until :func:`remove_network`,
    after the apiserver has stopped (its graceful stop waits for connections to close).
    """
    record = _read(state_dir)
    if not record.get("net"):
        return {}
    net = HostNetwork.from_json(record["net"])
    done: dict[str, Any] = {}
    problems = []
    for index in range(int(record.get("count") or 0)):
        node = RealNode(state_dir, net, index)
        try:
            done[node.name] = realnode.teardown(node, processes, timeout)
        except ClusterError as error:
            problems.append(str(error))
    if problems:
        raise ClusterError("the real nodes were not fully removed: " + "; ".join(problems))
    return done


def remove_network(state_dir: Path) -> dict[str, tuple[str, str]]:
    """Delete the nodes' namespaces and veths and the bridge, and write back the sysctls the
    kubelets changed (returned).

    Raises when a device or namespace of ours is still there; the record then stays, so
    that ``down`` can try again.
    """
    record = _read(state_dir)
    if not record.get("net"):
        return {}
    net = HostNetwork.from_json(record["net"])
    for index in range(int(record.get("count") or 0)):
        hostnet.delete_node_netns(net, index)
    hostnet.delete_bridge(net)
    left = hostnet.leftovers(net.tag)
    if left:
        raise ClusterError(f"network devices or namespaces of the real nodes left: {', '.join(left)}")
    (state_dir / RECORD).unlink(missing_ok=True)
    return hostnet.release_sysctls(state_dir)
