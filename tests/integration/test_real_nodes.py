"""Real nodes (real kubelet, containerd, runc containers) beside kwok nodes, and a
clean machine afterwards: no process, mount, cgroup, namespace, bridge or veth of ours,
the sysctls as before (beside another kubelet: see assert_sysctls_back), the ports free."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from kubernetes import client

from kdlib import LocalCluster
from kdlib.k8s import objects
from kdlib.cluster.local import hostnet, status
from kdlib.cluster.node.identity import LABEL as REAL_NODE_LABEL

from ..helpers import REPO, assert_clean, assert_sysctls_back, our_processes, run_kdlib, wait_until

REASON = hostnet.why_not_real_nodes()
pytestmark = [pytest.mark.integration, pytest.mark.real_nodes,
              pytest.mark.skipif(REASON is not None, reason=f"cannot run real nodes here: {REASON}")]

REAL, KWOK, PODS = 2, 5, 20


@pytest.fixture(scope="module")
def node_binaries(binaries):
    from kdlib.cluster.binaries import build_node_binaries

    return build_node_binaries(binaries.directory)


def _pids_whose(proc_file: str, holds: str) -> list[int]:
    """Processes whose ``/proc/PID/<proc_file>`` holds ``holds`` (one that exits meanwhile is passed over)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and holds.encode() in (entry / proc_file).read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _cgroup_pids(tag: str) -> list[int]:
    """Processes in a cgroup of ours (the containers live under /<tag>-n<i>/kubepods/...)."""
    return _pids_whose("cgroup", f":/{tag}-")


def _naming(tag: str) -> list[int]:
    """Processes whose command line names a path of ours outside the state dir (the shims' socket)."""
    return _pids_whose("cmdline", tag)


def _mounts_under(state_dir: Path) -> list[int]:
    """Mounts naming the state directory, in any mount namespace on the machine (by a process that sees them)."""
    return _pids_whose("mountinfo", str(state_dir))


def assert_machine_clean(state_dir: Path, ports: dict | None, sysctls_before: dict[str, str]) -> None:
    tag = hostnet.cluster_tag(state_dir)
    assert_clean(state_dir, ports)  # processes naming the state dir (containerd, kubelet, shims), files, ports
    assert _cgroup_pids(tag) == [], "container processes are left in our cgroups"
    assert _naming(tag) == [], "processes naming our sockets (shims) are left"
    assert not list(Path(tempfile.gettempdir()).glob(f"{tag}-*")), "the nodes' socket directories are left"
    assert not any((h / f"{tag}-n0").exists() for h in hostnet.CGROUP_ROOT.iterdir()), "cgroups left"
    assert _mounts_under(state_dir) == [], "mounts under the state directory are left"
    assert hostnet.leftovers(tag) == [], "namespaces, bridges or veths are left"
    assert_sysctls_back(sysctls_before)


@pytest.fixture(scope="module")
def cluster(binaries, node_binaries, tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("real") / "cluster"
    before = hostnet.read_sysctls()
    with LocalCluster(nodes=KWOK, real_nodes=REAL, state_dir=state_dir) as running:
        yield running
    assert_machine_clean(state_dir, status(state_dir)["ports"], before)


def _ready(pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def test_real_nodes_join_labelled_and_tainted(cluster):
    nodes = client.CoreV1Api(cluster.api_client()).list_node(label_selector="kdlib/real-node=true").items
    assert sorted(n.metadata.name for n in nodes) == sorted(cluster.info.real_node_names)
    assert len(nodes) == REAL
    for node in nodes:
        assert REAL_NODE_LABEL.items() <= node.metadata.labels.items()
        assert any(t.key == "kdlib/real-node" for t in node.spec.taints or [])
        assert node.status.node_info.kubelet_version == "v1.32.13"
        assert {"Ready": "True"}.items() <= {c.type: c.status for c in node.status.conditions}.items()


def test_real_pods_run_real_containers_spread_over_the_real_nodes(cluster):
    api = cluster.api_client()
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.create_namespace(objects.namespace("it-real"))
    apps.create_namespaced_deployment("it-real", objects.deployment(
        "real", "it-real", replicas=PODS, simulated_sandbox=False, on_real_nodes=True))

    def all_ready():
        ready = [p for p in core.list_namespaced_pod("it-real").items if _ready(p)]
        return ready if len(ready) == PODS else None

    pods = wait_until(all_ready, 120, f"{PODS} Ready pods")
    per_node = {name: sum(p.spec.node_name == name for p in pods) for name in cluster.info.real_node_names}
    assert per_node == {name: PODS // REAL for name in cluster.info.real_node_names}
    # Each pod's container is a process in its pod's cgroup under its node's cgroup root.
    tag = hostnet.cluster_tag(cluster.state_dir)
    cgroups = {pid: Path(f"/proc/{pid}/cgroup").read_text() for pid in _cgroup_pids(tag)}
    for pod in pods:
        node_index = cluster.info.real_node_names.index(pod.spec.node_name)
        uid = pod.metadata.uid
        members = [pid for pid, text in cgroups.items() if f"/{tag}-n{node_index}/kubepods/" in text and uid in text]
        assert len(members) >= 2, f"{pod.metadata.name}: expected sandbox and container processes, got {members}"
        assert pod.status.container_statuses[0].state.running is not None

    apps.patch_namespaced_deployment_scale("real", "it-real", {"spec": {"replicas": 0}})
    wait_until(lambda: not core.list_namespaced_pod("it-real").items, 120, "the pods to leave the API")
    wait_until(lambda: not _cgroup_pids(tag), 60, "the container processes to exit")


_OWNER = """
import time
from kubernetes import client
from kdlib import LocalCluster
from kdlib.k8s import objects
with LocalCluster(nodes=2, real_nodes=2, state_dir={state_dir!r}) as cluster:
    api = cluster.api_client()
    client.CoreV1Api(api).create_namespace(objects.namespace("run"))
    client.AppsV1Api(api).create_namespaced_deployment("run", objects.deployment(
        "real", "run", replicas=10, simulated_sandbox=False, on_real_nodes=True))
    print("ready", flush=True)
    time.sleep(600)
"""


@pytest.mark.destructive
@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL-then-down"])
def test_interrupted_run_leaves_nothing(binaries, node_binaries, state_dir, how):
    before = hostnet.read_sysctls()
    log = state_dir.parent / "owner.log"
    with open(log, "w") as stderr:
        owner = subprocess.Popen([sys.executable, "-c", _OWNER.format(state_dir=str(state_dir))],
                                 cwd=REPO, stdout=subprocess.PIPE, stderr=stderr, text=True)
    assert owner.stdout.readline().strip() == "ready", log.read_text()[-3000:]
    ports = status(state_dir)["ports"]
    wait_until(lambda: len(_cgroup_pids(hostnet.cluster_tag(state_dir))) >= 10, 60, "containers to start")
    if how == "SIGINT":
        owner.send_signal(signal.SIGINT)
        owner.wait(timeout=60)
    else:
        owner.kill()
        owner.wait()
        assert our_processes(state_dir), "the nodes should outlive a SIGKILLed owner"
        down = run_kdlib("local", "down", "--state-dir", str(state_dir))
        assert down.returncode == 0, down.stderr
    assert_machine_clean(state_dir, ports, before)


@pytest.mark.destructive
def test_sigint_while_real_nodes_start_leaves_nothing(binaries, node_binaries, state_dir):
    before = hostnet.read_sysctls()
    up = subprocess.Popen([sys.executable, "-m", "kdlib", "local", "up", "--nodes", "2", "--real-nodes", "2",
                           "--state-dir", str(state_dir)],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in up.stderr:  # the real nodes start right after the kwok nodes are Ready
        if "kwok nodes Ready" in line:
            break
    wait_until(lambda: any(n.endswith("-containerd") for n in status(state_dir)["processes"]), 30, "a containerd")
    ports = status(state_dir)["ports"]
    up.send_signal(signal.SIGINT)
    assert up.wait(timeout=60) == 130
    assert_machine_clean(state_dir, ports, before)


def test_machine_that_cannot_run_real_nodes_is_refused_before_anything_starts(monkeypatch, state_dir):
    from kdlib.cluster.local import cluster as local_cluster
    from kdlib.errors import ConfigError

    monkeypatch.setattr(local_cluster.hostnet, "why_not_real_nodes", lambda: "real nodes need root")
    with pytest.raises(ConfigError, match="cannot run real nodes: real nodes need root"):
        LocalCluster(nodes=1, real_nodes=1, state_dir=state_dir)
    assert not state_dir.exists()
