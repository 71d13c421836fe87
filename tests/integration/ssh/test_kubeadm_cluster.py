"""A full kubeadm cluster on two SSH test hosts: `kubeadm init` on one, `join` on the other,
both nodes Ready, real containers on the worker, then `kubeadm reset` and nothing left.

The hosts are made ready for kubeadm by ``tests/kubeadmhosts.py`` (what packages do on a
real host: containerd, private fixed paths, cgroups, images made here: no internet)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from kubernetes import client

from kdlib.cluster.ssh import inventory, kubeadm_cluster, kubeadm_config
from kdlib.k8s import objects
from kdlib.cluster.ssh.inventory import Host
from kdlib.cluster.ssh.kubeadm_cluster import KubeadmCluster
from kdlib.cluster.ssh.remote import Hosts, SshOptions
from kdlib.errors import RemoteError

from ... import kubeadmhosts
from ...helpers import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.ssh, pytest.mark.needs_binaries, pytest.mark.real_nodes]


@pytest.fixture(scope="module")
def node_binaries(binaries) -> dict[str, Path]:
    missing = [tool for tool in ("containerd", "runc", "ctr") if shutil.which(tool) is None]
    if missing or not Path("/usr/lib/cni/bridge").is_file():
        pytest.skip(f"kubeadm nodes need Debian's containerd, runc and containernetworking-plugins "
                    f"(missing: {', '.join(missing) or '/usr/lib/cni/bridge'})")
    from kdlib.cluster.binaries import build_node_binaries

    return build_node_binaries(binaries.directory, names=("kubeadm", "kubelet", "sleeper"))


def netns_commands(netns: str) -> list[str]:
    pids = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True).stdout.split()
    return sorted({Path(f"/proc/{p}/comm").read_text().strip() for p in pids if Path(f"/proc/{p}").exists()})


@pytest.mark.slow
def test_kubeadm_init_join_ready_nodes_a_container_and_reset(host_factory, binaries, node_binaries, tmp_path):
    _, hosts = host_factory(2)
    inv = inventory.parse({
        "cluster": "kda", "mode": "kubeadm", "key": str(hosts.key), "known_hosts": str(hosts.known_hosts),
        "connect_timeout": 5, "command_timeout": 120, "remote_dir": str(hosts.workdir / "remote"),
        "control_plane": {"name": hosts[0].name, "address": hosts[0].address},
        "workers": [{"name": hosts[1].name, "address": hosts[1].address, "kubelet": True}],
    }, "test-hosts")
    settings = kubeadm_config.KubeadmSettings.vanilla(cgroup_driver="cgroupfs", kube_proxy=False, coredns=False)
    etc_kubernetes_before = Path("/etc/kubernetes").exists()
    test_hosts = [Host(h.name, h.address, key=hosts.key) for h in hosts.hosts]
    with Hosts(test_hosts, SshOptions(connect_timeout=5, command_timeout=120, known_hosts=hosts.known_hosts)) as group:
        with kubeadmhosts.node_hosts(list(group.remotes.values()), hosts.workdir, hosts.workdir / "hosts",
                                     binaries.directory, settings.kubernetes_version, settings.etcd_version):
            patches = {h.name: {"cgroupRoot": kubeadmhosts.cgroup_root(h.name)} for h in test_hosts}
            started = time.monotonic()
            with KubeadmCluster(inv, settings=settings, cni="bridge", kubelet_patches=patches,
                                state_dir=tmp_path / "local") as cluster:
                up = time.monotonic() - started
                core = client.CoreV1Api(cluster.api_client())

                def ready() -> bool:
                    nodes = core.list_node().items
                    return sorted(n.metadata.name for n in nodes) == sorted(h.name for h in test_hosts) and all(
                        any(c.type == "Ready" and c.status == "True" for c in n.status.conditions) for n in nodes)

                wait_until(ready, 120, "both nodes Ready", interval=1)
                apiserver = core.read_namespaced_pod(f"kube-apiserver-{hosts[0].name}", "kube-system")
                command = apiserver.spec.containers[0].command
                assert "--max-requests-inflight=200000" in command
                assert f"--advertise-address={hosts[0].address}" in command
                worker = core.read_node(hosts[1].name)
                assert worker.metadata.labels["kdlib/real-node"] == "true"  # as the local backend's real nodes
                assert [(t.key, t.effect) for t in worker.spec.taints] == [("kdlib/real-node", "NoSchedule")]
                # The experiments' own Deployment for real nodes: real containers of the imported image.
                apps = client.AppsV1Api(cluster.api_client())
                apps.create_namespaced_deployment("default", objects.deployment(
                    "sleepers", "default", replicas=2, simulated_sandbox=False, on_real_nodes=True))

                def running() -> bool:
                    pods = core.list_namespaced_pod("default", label_selector="app=sleepers").items
                    return len(pods) == 2 and all(p.status.phase == "Running" and p.spec.node_name == hosts[1].name
                                                  for p in pods)

                wait_until(running, 90, "2 pods Running on the worker", interval=1)
                print(f"kubeadm cluster up in {up:.1f} s; timings {cluster.timings}")
                found = kubeadm_cluster.status(inv)  # from the hosts' files, as `kdlib ssh status`
                assert found["running"] and found["mode"] == "kubeadm"
                assert {h: (v["kubeadm"], v["kubelet"] is not None) for h, v in found["hosts"].items()} == {
                    hosts[0].name: ("init", True), hosts[1].name: ("join", True)}
            # kubeadm reset ran on both hosts: no kubelet, no control plane, no containers left.
            for h in hosts.hosts:
                left = set(netns_commands(h.netns)) - {"sshd", "sftp-server"}  # the SSH sessions
                assert left == {"containerd"}, (h.name, left)  # the host's own runtime, no shim, no pod
                assert group[h.name].run("ls -A /etc/kubernetes/manifests /var/lib/kubelet /var/lib/etcd "
                                         "2>/dev/null | grep -v : | grep . || true").stdout.strip() == ""
                assert not Path(inv.cluster_dir(), h.name).exists()
            assert not kubeadm_cluster.status(inv)["running"]
    for h in hosts.hosts:
        assert not list(Path("/sys/fs/cgroup").glob(f"*{kubeadmhosts.cgroup_root(h.name)}"))
    assert Path("/etc/kubernetes").exists() == etc_kubernetes_before
    assert not (tmp_path / "local").exists()
    assert os.path.exists(hosts.workdir)  # removed by the host factory, not by the cluster


def test_hosts_without_the_prerequisites_are_one_error_naming_each_and_nothing_starts(host_factory, binaries,
                                                                                       node_binaries, tmp_path):
    _, hosts = host_factory(2)  # plain test hosts: no containerd, forwarding off
    inv = inventory.parse({
        "cluster": "kda", "mode": "kubeadm", "key": str(hosts.key), "known_hosts": str(hosts.known_hosts),
        "connect_timeout": 5, "command_timeout": 60, "remote_dir": str(hosts.workdir / "remote"),
        "control_plane": {"name": hosts[0].name, "address": hosts[0].address},
        "workers": [{"name": hosts[1].name, "address": hosts[1].address, "kubelet": True}],
    }, "test-hosts")
    started = time.monotonic()
    with pytest.raises(RemoteError, match=rf"^{hosts[0].name}, {hosts[1].name}: missing prerequisites: ") as lacking:
        with KubeadmCluster(inv, cni="bridge", state_dir=tmp_path / "local"):
            pass
    assert time.monotonic() - started < 20
    message = str(lacking.value)
    assert f"{hosts[0].name}: containerd listening on unix:///run/containerd/containerd.sock" in message
    assert f"{hosts[1].name}: containerd listening" in message and "net.ipv4.ip_forward=1" in message
    for h in hosts.hosts:  # nothing shipped, nothing started
        assert set(netns_commands(h.netns)) <= {"sshd", "sftp-server"}
        assert not Path(inv.cluster_dir(), h.name).exists()
    assert not (tmp_path / "local").exists()
    kubeadm_cluster.down(inv)  # the lock was released: the clean-up from the hosts' files can take it


_OWNER = """
import logging, time
logging.basicConfig(level=logging.INFO, format="%(relativeCreated)6.0f %(name)s %(message)s")
from kdlib.cluster.ssh import inventory, kubeadm_config
from kdlib.cluster.ssh.kubeadm_cluster import KubeadmCluster
settings = kubeadm_config.KubeadmSettings.vanilla(cgroup_driver="cgroupfs", kube_proxy=False, coredns=False)
with KubeadmCluster(inventory.load({path!r}), settings=settings, cni="bridge", kubelet_patches={patches!r},
                    state_dir={state!r}):
    print("ready", flush=True)
    time.sleep(600)
"""


@pytest.mark.destructive
@pytest.mark.slow
def test_sigterm_during_init_and_down_after_a_killed_owner_leave_nothing(host_factory, binaries, node_binaries,
                                                                          tmp_path):
    import signal
    import sys

    import yaml

    from ...conftest import REPO

    _, hosts = host_factory(2)
    inv = inventory.parse({
        "cluster": "kda", "mode": "kubeadm", "key": str(hosts.key), "known_hosts": str(hosts.known_hosts),
        "connect_timeout": 5, "command_timeout": 120, "remote_dir": str(hosts.workdir / "remote"),
        "control_plane": {"name": hosts[0].name, "address": hosts[0].address},
        "workers": [{"name": hosts[1].name, "address": hosts[1].address, "kubelet": True}],
    }, "test-hosts")
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inv.to_data()))
    test_hosts = [Host(h.name, h.address, key=hosts.key) for h in hosts.hosts]
    patches = {h.name: {"cgroupRoot": kubeadmhosts.cgroup_root(h.name)} for h in test_hosts}
    script = _OWNER.format(path=str(path), patches=patches, state=str(tmp_path / "local"))
    settings = kubeadm_config.KubeadmSettings.vanilla()

    def owner() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def assert_reset(group: Hosts) -> None:
        for h in hosts.hosts:
            left = set(netns_commands(h.netns)) - {"sshd", "sftp-server"}
            assert left == {"containerd"}, (h.name, left)
            listed = group[h.name].run("ls -A /etc/kubernetes/manifests /var/lib/etcd 2>/dev/null", check=False)
            assert listed.stdout.replace("/etc/kubernetes/manifests:", "").replace("/var/lib/etcd:", "").strip() == ""
            assert not Path(inv.cluster_dir(), h.name).exists()

    with Hosts(test_hosts, SshOptions(connect_timeout=5, command_timeout=120, known_hosts=hosts.known_hosts)) as group:
        with kubeadmhosts.node_hosts(list(group.remotes.values()), hosts.workdir, hosts.workdir / "hosts",
                                     binaries.directory, settings.kubernetes_version, settings.etcd_version):
            # SIGTERM while `kubeadm init` runs (its marker is written just before it starts).
            first = owner()
            marker = Path(inv.cluster_dir(), hosts[0].name, "kubeadm.json")
            wait_until(lambda: marker.exists() or first.poll() is not None, 120, "kubeadm init to start")
            assert first.poll() is None, first.stderr.read()
            # Inside init: certificates and manifests written (in the host's /etc overlay), the kubelet next.
            manifest = hosts.workdir / f"node-{hosts[0].name}" / "overlay-etc" / "upper" / "kubernetes" / "manifests"
            wait_until(lambda: (manifest / "kube-scheduler.yaml").exists() or first.poll() is not None, 120,
                       "kubeadm init to write the control plane's manifests")
            first.send_signal(signal.SIGTERM)
            interrupted = time.monotonic()
            first.wait(timeout=120)
            print(f"SIGTERM during init: clean after {time.monotonic() - interrupted:.1f} s")
            print("\n".join(line for line in first.stderr.read().splitlines() if "kdlib.cluster.ssh.kubeadm_cluster" in line))
            assert first.returncode != 0 and "ready" not in first.stdout.read()
            assert_reset(group)
            # A running cluster whose owner is SIGKILLed: `kdlib ssh down` cleans it from the hosts' files.
            second = owner()
            assert second.stdout.readline().strip() == "ready", second.stderr.read()
            second.kill()
            second.wait(timeout=10)
            assert {h: v["kubelet"] is not None for h, v in kubeadm_cluster.status(inv)["hosts"].items()} == {
                h.name: True for h in hosts.hosts}
            downed = time.monotonic()
            kubeadm_cluster.down(inv)
            print(f"down after a killed owner: {time.monotonic() - downed:.1f} s")
            assert_reset(group)
    for h in hosts.hosts:
        assert not list(Path("/sys/fs/cgroup").glob(f"*{kubeadmhosts.cgroup_root(h.name)}"))
