"""Hostile tests of the SSH backend: a second run, signals and dead components on real hosts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kdlib.cluster.ssh.cluster import SshCluster
from kdlib.cluster.ssh import inventory
from kdlib.errors import HostUnreachable, RemoteLockBusy

from ...conftest import our_processes
from ...helpers import assert_sysctls_back, command_lines
from .test_ssh_cluster import cluster_inventory


def _components(cluster_dir: Path) -> list[str]:
    """The cluster's long-lived processes (not the watcher's passing `sh -c` looks), as "pid cmdline"."""
    found = []
    for pid in our_processes(cluster_dir):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() in ("sh", "bash"):
                continue
            found.append(f"{pid} " + Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200])
        except OSError:
            pass
    return sorted(found)


def _inventory_file(inv: inventory.Inventory, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """``inv`` written where ``kdlib ssh`` reads it, and the environment that keeps its state in ``tmp_path``."""
    import os

    import yaml

    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inv.to_data()))
    return path, {**os.environ, "KDLIB_STATE_DIR": str(tmp_path / "state")}


pytestmark = [pytest.mark.integration, pytest.mark.ssh, pytest.mark.needs_binaries]


def test_a_second_run_refused_by_the_lock_leaves_the_running_cluster_alone(host_factory, binaries, tmp_path):
    _, hosts = host_factory(2)
    inv = cluster_inventory(hosts, kwok_nodes=1)
    with SshCluster(inv, state_dir=tmp_path / "first") as first:
        running = _components(Path(inv.cluster_dir()))
        assert len(running) == 6  # five components and the lock holder
        with pytest.raises(RemoteLockBusy, match=rf"^{hosts[0].name}: another run holds the cluster lock"):
            SshCluster(inv, state_dir=tmp_path / "second").start()
        assert _components(Path(inv.cluster_dir())) == running
        # The same cluster with a host that cannot be reached: refused before the lock, nothing touched.
        ghost = {"name": "ghost", "address": hosts.bridge_address.rsplit(".", 1)[0] + ".200", "kwok_nodes": 1,
                 "key": str(hosts.key)}
        with_ghost = inventory.parse({**inv.to_data(), "workers": [*inv.to_data()["workers"], ghost]})
        with pytest.raises(HostUnreachable, match="^ghost: "):
            SshCluster(with_ghost, state_dir=tmp_path / "third").start()
        assert _components(Path(inv.cluster_dir())) == running
        first.resize_kwok_nodes(2)  # and the first cluster still works
    assert our_processes(Path(inv.cluster_dir())) == []


def test_ssh_up_twice_refuses_the_second_and_keeps_the_first(host_factory, binaries, tmp_path):
    from ...conftest import run_kdlib

    _, hosts = host_factory(2)
    inv = cluster_inventory(hosts, kwok_nodes=1)
    path, env = _inventory_file(inv, tmp_path)
    try:
        first = run_kdlib("ssh", "up", str(path), env=env)
        assert first.returncode == 0, first.stderr
        running = _components(Path(inv.cluster_dir()))
        assert len(running) == 5  # no lock holder: `up` has exited
        second = run_kdlib("ssh", "up", str(path), env=env)
        assert second.returncode != 0
        last = second.stderr.strip().splitlines()[-1]
        assert last == (f"kdlib: error: cluster kdt is already running ({hosts[0].name}: etcd, kube-apiserver, "
                        f"kube-controller-manager, kube-scheduler; {hosts[1].name}: kwok): use it, or stop it "
                        f"with `python -m kdlib ssh down {path}`"), second.stderr
        assert _components(Path(inv.cluster_dir())) == running
        assert Path(first.stdout.strip()).is_file()  # the first cluster's kubeconfig is still there
    finally:
        down = run_kdlib("ssh", "down", str(path), env=env)
    assert down.returncode == 0, down.stderr
    assert our_processes(Path(inv.cluster_dir())) == []


@pytest.mark.destructive
def test_sigterm_to_ssh_up_while_it_provisions_cleans_every_host(host_factory, binaries, tmp_path):
    import signal
    import subprocess
    import sys

    from ...conftest import REPO

    _, hosts = host_factory(2)
    inv = cluster_inventory(hosts, kwok_nodes=1)
    path, env = _inventory_file(inv, tmp_path)
    up = subprocess.Popen([sys.executable, "-m", "kdlib", "ssh", "up", str(path)], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    etcd_pid = Path(inv.cluster_dir(), hosts[0].name, "run", "etcd.pid")
    deadline = time.monotonic() + 120
    while not etcd_pid.exists():  # SIGTERM once the control plane is starting
        assert up.poll() is None and time.monotonic() < deadline, up.stderr.read()
        time.sleep(0.05)
    up.send_signal(signal.SIGTERM)
    _, stderr = up.communicate(timeout=60)
    assert up.returncode != 0 and "kdlib: interrupted" in stderr, stderr
    assert our_processes(Path(inv.cluster_dir())) == []
    assert sorted(p.name for p in Path(inv.cluster_dir()).iterdir()) == ["lock", "lock.owner"]
    assert not (tmp_path / "state" / "ssh" / "kdt").exists()


# -- a real kubelet worker ---------------------------------------------------------------------

def _kubelet_inventory(hosts, **worker):
    return inventory.parse({
        "cluster": "kdt", "key": str(hosts.key), "known_hosts": str(hosts.known_hosts),
        "connect_timeout": 5, "command_timeout": 120, "remote_dir": str(hosts.workdir / "remote"),
        "control_plane": {"name": hosts[0].name, "address": hosts[0].address},
        "workers": [{"name": hosts[1].name, "address": hosts[1].address, "kubelet": True, **worker}],
    }, "test-hosts")


def _kubelet_hosts(host_factory, **worker):
    """Two test hosts as a control plane and one kubelet worker (skipped where a kubelet cannot run)."""
    _skip_without_real_nodes()
    _, hosts = host_factory(2)
    return hosts, _kubelet_inventory(hosts, **worker)


def _assert_nothing_of_the_worker_left(inv, host, sysctls_before) -> None:
    import subprocess

    from kdlib.cluster.ssh.kubelets import Worker

    worker = Worker(inv.host(host.name), 0, inv.cluster_dir())
    left = our_processes(Path(inv.cluster_dir()))
    assert left == [], command_lines(left)
    left = our_processes(Path(str(worker.root)))  # containerd's shims name its socket
    assert left == [], command_lines(left)
    assert not Path(str(worker.root)).exists()
    assert not list(Path("/sys/fs/cgroup").glob(f"*/{worker.cgroup.lstrip('/')}"))
    bridge = subprocess.run(["ip", "-n", host.netns, "link", "show", "kdcni0"], capture_output=True)
    assert bridge.returncode != 0, "kdcni0 left on the worker"
    assert_sysctls_back(sysctls_before)


def _real_pod(api, timeout: float = 90.0):
    from kubernetes import client

    from kdlib.k8s import objects

    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    core.create_namespace(objects.namespace("hostile"))
    apps.create_namespaced_deployment("hostile", objects.deployment(
        "real", "hostile", replicas=1, simulated_sandbox=False, on_kwok=False, on_real_nodes=True))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = [p for p in core.list_namespaced_pod("hostile").items
                if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]
        if pods:
            return pods[0]
        time.sleep(0.5)
    raise AssertionError("the real pod did not become Ready")


def _local_starts(uid: str) -> list[float]:
    """The pod's process start times read here (the test hosts share this machine's kernel),
    in ``time.monotonic()`` seconds: what the backend reads over SSH must agree."""
    import os

    pids = set()
    for procs in Path("/sys/fs/cgroup/pids").glob(f"kdlib-*/**/pod{uid}/**/cgroup.procs"):
        pids.update(int(p) for p in procs.read_text().split())
    boot_to_monotonic = time.clock_gettime(time.CLOCK_BOOTTIME) - time.monotonic()
    ticks = os.sysconf("SC_CLK_TCK")
    return sorted(int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]) / ticks
                  - boot_to_monotonic for pid in pids)


def _skip_without_real_nodes():
    from kdlib.cluster.local import hostnet

    reason = hostnet.why_not_real_nodes()
    if reason:
        pytest.skip(f"cannot run a kubelet here: {reason}")


@pytest.mark.destructive
@pytest.mark.real_nodes
@pytest.mark.parametrize("component", ["kubelet", "containerd"])
def test_a_worker_component_killed_mid_run_is_named_by_check_and_all_is_cleaned(host_factory, binaries, tmp_path,
                                                                               component):
    import os
    import signal

    from kdlib.cluster.local import hostnet
    from kdlib.cluster.ssh import running
    from kdlib.errors import ComponentError

    hosts, inv = _kubelet_hosts(host_factory)
    sysctls_before = hostnet.read_sysctls()
    with SshCluster(inv, state_dir=tmp_path / "local") as cluster:
        pod = _real_pod(cluster.api_client())
        starts = cluster.pod_process_starts()
        assert len(starts[pod.metadata.uid]) >= 2  # the sandbox's and the container's processes
        assert starts[pod.metadata.uid] == pytest.approx(_local_starts(pod.metadata.uid), abs=0.05)
        pid = int(Path(inv.cluster_dir(), hosts[1].name, "run", f"{component}.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 3 * running.WATCH_INTERVAL
        with pytest.raises(ComponentError, match=rf"^{component}: exited on {hosts[1].name}\n"):
            while time.monotonic() < deadline:
                cluster.check()
                time.sleep(0.5)
    _assert_nothing_of_the_worker_left(inv, hosts[1], sysctls_before)


_OWNER = """
import time
from kdlib.cluster.ssh import inventory
from kdlib.cluster.ssh.cluster import SshCluster
from tests.integration.ssh.test_ssh_hostile import _real_pod
with SshCluster(inventory.load({path!r}), state_dir={state!r}) as cluster:
    _real_pod(cluster.api_client())
    print("ready", flush=True)
    time.sleep(600)
"""


@pytest.mark.destructive
@pytest.mark.real_nodes
@pytest.mark.parametrize("how", ["sigint-as-containerd-starts", "sigint-as-the-kubelet-starts", "sigkill-then-down"])
def test_an_interrupted_owner_of_a_kubelet_worker_leaves_nothing(host_factory, binaries, tmp_path, how):
    import os
    import signal
    import subprocess
    import sys

    import yaml

    from kdlib.cluster.local import hostnet

    from ...conftest import REPO, run_kdlib

    hosts, inv = _kubelet_hosts(host_factory)
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inv.to_data()))
    sysctls_before = hostnet.read_sysctls()
    script = _OWNER.format(path=str(path), state=str(tmp_path / "local"))
    owner = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    run = Path(inv.cluster_dir(), hosts[1].name, "run")
    if how == "sigkill-then-down":
        assert owner.stdout.readline().strip() == "ready", owner.stderr.read()
        owner.kill()
        owner.wait(timeout=10)
        assert our_processes(Path(inv.cluster_dir()))  # left running: `down` must find it all from the files
        down = run_kdlib("ssh", "down", str(path), env={**os.environ, "KDLIB_STATE_DIR": str(tmp_path / "state")})
        assert down.returncode == 0, down.stderr
    else:
        wanted = run / ("containerd.pid" if "containerd" in how else "kubelet.pid")
        deadline = time.monotonic() + 120
        while not wanted.exists():
            assert owner.poll() is None and time.monotonic() < deadline, owner.stderr.read()
            time.sleep(0.02)
        owner.send_signal(signal.SIGINT)
        _, stderr = owner.communicate(timeout=90)
        assert owner.returncode != 0 and "KeyboardInterrupt" in stderr, stderr
    _assert_nothing_of_the_worker_left(inv, hosts[1], sysctls_before)
    assert sorted(p.name for p in Path(inv.cluster_dir()).iterdir()) == ["lock", "lock.owner"]


@pytest.mark.real_nodes
def test_a_kdcni0_of_someone_else_on_the_kubelet_host_is_refused_before_anything_starts(host_factory, binaries,
                                                                                        tmp_path):
    import subprocess

    from kdlib.cluster.local import hostnet
    from kdlib.errors import RemoteError

    hosts, inv = _kubelet_hosts(host_factory)
    subprocess.run(["ip", "-n", hosts[1].netns, "link", "add", "kdcni0", "type", "bridge"], check=True)
    sysctls_before = hostnet.read_sysctls()
    with pytest.raises(RemoteError) as caught:
        SshCluster(inv, state_dir=tmp_path / "local").start()
    message = str(caught.value)
    assert message.startswith(f"{hosts[1].name}: a network device kdcni0 exists") and "\n" not in message, message
    theirs = subprocess.run(["ip", "-n", hosts[1].netns, "link", "show", "kdcni0"], capture_output=True)
    assert theirs.returncode == 0, "the foreign kdcni0 was deleted"
    assert our_processes(Path(inv.cluster_dir())) == []
    assert sorted(p.name for p in Path(inv.cluster_dir()).iterdir()) == ["lock", "lock.owner"]
    from kdlib.cluster.ssh.kubelets import Worker

    worker = Worker(inv.host(hosts[1].name), 0, inv.cluster_dir())
    assert not Path(str(worker.root)).exists()
    assert not list(Path("/sys/fs/cgroup").glob(f"*/{worker.cgroup.lstrip('/')}"))
    assert_sysctls_back(sysctls_before)
    assert not (tmp_path / "local").exists()


def test_two_kwok_workers_share_the_nodes_through_resizes(host_factory, binaries, tmp_path):
    from kubernetes import client

    from kdlib.cluster import kwok

    _, hosts = host_factory(3)
    inv = cluster_inventory(hosts, kwok_nodes=(2, 1))
    with SshCluster(inv, state_dir=tmp_path / "local") as cluster:
        core = client.CoreV1Api(cluster.api_client())
        for count in (3, 7, 1, 4):
            names = cluster.resize_kwok_nodes(count, timeout=60)
            nodes = core.list_node(label_selector=kwok.SHARD_LABEL).items
            assert sorted(n.metadata.name for n in nodes) == sorted(names) and len(names) == count
            shards = [n.metadata.labels[kwok.SHARD_LABEL] for n in sorted(nodes, key=lambda n: n.metadata.name)]
            assert shards == [cluster.kwok_shards[i % 3] for i in range(count)]
            # Each node's heartbeat comes from its own worker's kwok: Ready, and stays so.
            assert all(any(c.type == "Ready" and c.status == "True" for c in n.status.conditions) for n in nodes)
        cluster.check()
    assert our_processes(Path(inv.cluster_dir())) == []


@pytest.mark.destructive
@pytest.mark.slow
@pytest.mark.real_nodes
def test_a_suite_on_a_kubelet_only_inventory_measures_k8s_and_stops_when_the_kubelet_dies(host_factory, binaries,
                                                                                         tmp_path, monkeypatch):
    import os
    import signal

    import yaml

    from kdlib.cluster.local import hostnet
    from kdlib.errors import KdlibError
    from kdlib.experiments import runner
    from kdlib.experiments.microbench import suite as microbench_suite
    from kdlib.experiments.microbench.spec import SuiteParams

    hosts, inv = _kubelet_hosts(host_factory)
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inv.to_data()))
    sysctls_before = hostnet.read_sysctls()
    root = tmp_path / "results"
    params = SuiteParams(run_id="hostile", backend="ssh", inventory=str(path), baselines=["k8s", "k8s+"],
                                       benches=["scale-pods"], scale_pods=[2, 3], settle_s=0.5)
    kubelet_pid = Path(inv.cluster_dir(), hosts[1].name, "run", "kubelet.pid")
    waits = []
    clear = microbench_suite.wait_real_nodes_clear

    def kill_once_the_first_run_is_torn_down(*args, **kwargs) -> int:
        # The first run measured and its containers gone; the second meets a dead kubelet. (Killed
        # any earlier, the first run's teardown would wait out its 120 s for containers a dead
        # kubelet never removes.)
        left = clear(*args, **kwargs)
        if not waits:
            os.kill(int(kubelet_pid.read_text()), signal.SIGKILL)
        waits.append(left)
        return left

    monkeypatch.setattr(microbench_suite, "wait_real_nodes_clear", kill_once_the_first_run_is_torn_down)
    with pytest.raises(KdlibError, match=rf"kubelet: exited on {hosts[1].name}"):
        microbench_suite.run_suite(params, root=root, progress=False)
    assert waits[0] == 0, "the first run's containers were removed before the kubelet was killed"
    suite = runner.load("hostile", root)
    assert suite["not_measured"] == {"k8s+": f"needs kwok nodes: no worker of {path} has kwok_nodes"}
    rows = {(o["scale"], o["status"]): o["detail"] for o in suite["attempts"][-1]["outcomes"]}
    assert set(rows) == {(2, "measured"), (3, "failed")}, rows
    assert rows[(3, "failed")].startswith(f"ComponentError: kubelet: exited on {hosts[1].name}"), rows
    _assert_nothing_of_the_worker_left(inv, hosts[1], sysctls_before)


@pytest.mark.destructive
@pytest.mark.parametrize("moment", ["kube-apiserver", pytest.param("containerd", marks=pytest.mark.real_nodes)])
def test_ctrl_c_pressed_again_while_it_cleans_up_still_leaves_nothing(host_factory, binaries, tmp_path, moment):
    import signal
    import subprocess
    import sys

    import yaml

    from kdlib.cluster.local import hostnet

    from ...conftest import REPO

    if moment == "containerd":
        _skip_without_real_nodes()
    _, hosts = host_factory(2)
    inv = cluster_inventory(hosts, kwok_nodes=1) if moment == "kube-apiserver" else _kubelet_inventory(hosts)
    sysctls_before = hostnet.read_sysctls()
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inv.to_data()))
    script = (f"from kdlib.cluster.ssh import inventory\nfrom kdlib.cluster.ssh.cluster import SshCluster\n"
              f"with SshCluster(inventory.load({str(path)!r}), state_dir={str(tmp_path / 'local')!r}):\n"
              f"    print('ready', flush=True)\n")
    owner = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    host = hosts[0] if moment == "kube-apiserver" else hosts[1]
    pid_file = Path(inv.cluster_dir(), host.name, "run", f"{moment}.pid")
    deadline = time.monotonic() + 120
    while not pid_file.exists():
        assert owner.poll() is None and time.monotonic() < deadline, owner.stderr.read()
        time.sleep(0.02)
    for _ in range(10):  # an impatient user: Ctrl-C, and again every 0.3 s while it cleans up
        if owner.poll() is not None:
            break
        owner.send_signal(signal.SIGINT)
        time.sleep(0.3)
    _, err = owner.communicate(timeout=60)
    assert owner.returncode != 0
    try:
        if moment == "containerd":
            _assert_nothing_of_the_worker_left(inv, hosts[1], sysctls_before)
        left = our_processes(Path(inv.cluster_dir()))
        assert left == [], command_lines(left)
    except AssertionError as failed:
        raise AssertionError(f"{failed}\nthe owner's stderr:\n{err[-4000:]}") from None
    assert sorted(p.name for p in Path(inv.cluster_dir()).iterdir()) == ["lock", "lock.owner"]
    assert not (tmp_path / "local").exists()


@pytest.mark.destructive
@pytest.mark.real_nodes
def test_a_kubelet_teardown_that_cannot_finish_still_stops_every_process_and_down_finishes_it(
        host_factory, binaries, tmp_path):
    import subprocess

    from kdlib.cluster.local import hostnet
    from kdlib.cluster.ssh.kubelets import Worker
    from kdlib.errors import RemoteError

    from ...conftest import run_kdlib

    hosts, inv = _kubelet_hosts(host_factory, kwok_nodes=1)  # kwok beside the kubelet
    worker = Worker(inv.host(hosts[1].name), 0, inv.cluster_dir())
    busy = Path(str(worker.root), "busy")
    cluster = SshCluster(inv, state_dir=tmp_path / "local")
    in_host = ["nsenter", "-t", str(hosts[1].sshd_pid), "-m", "--"]
    sysctls_before = hostnet.read_sysctls()
    cluster.start()
    try:
        busy.mkdir()  # a mount point in the worker's files (in the host's mount namespace): their removal fails
        subprocess.run([*in_host, "mount", "-t", "tmpfs", "hostile", str(busy)], check=True)
        with pytest.raises(RemoteError, match=rf"^{hosts[1].name}: clean-up incomplete: "):
            cluster.stop()
        # What could be stopped was: no process of the cluster runs, on either host.
        assert our_processes(Path(inv.cluster_dir())) == []
        assert not Path(inv.cluster_dir(), hosts[0].name).exists()
        assert Path(inv.cluster_dir(), hosts[1].name).exists()  # kept: `down` finishes from its files
    finally:
        subprocess.run([*in_host, "umount", str(busy)], capture_output=True)
    path, env = _inventory_file(inv, tmp_path)
    down = run_kdlib("ssh", "down", str(path), env=env)
    assert down.returncode == 0, down.stderr
    assert not Path(inv.cluster_dir(), hosts[1].name).exists()
    _assert_nothing_of_the_worker_left(inv, hosts[1], sysctls_before)


@pytest.mark.real_nodes
def test_an_unreachable_kubelet_worker_at_start_is_one_error_naming_it_and_nothing_starts(host_factory, binaries,
                                                                                         tmp_path):
    from kdlib.errors import HostUnreachable

    _, hosts = host_factory(2)
    data = _kubelet_inventory(hosts).to_data()
    data["workers"][0]["address"] = hosts.bridge_address.rsplit(".", 1)[0] + ".201"  # nobody there
    inv = inventory.parse(data, "test-hosts")
    started = time.monotonic()
    with pytest.raises(HostUnreachable) as caught:
        SshCluster(inv, state_dir=tmp_path / "local").start()
    assert str(caught.value).startswith(f"{hosts[1].name}: ") and "\n" not in str(caught.value), caught.value
    assert time.monotonic() - started < 15
    assert our_processes(Path(inv.cluster_dir())) == []
    assert not Path(inv.cluster_dir()).exists()  # not even the lock: the control plane was not touched
    assert not (tmp_path / "local").exists()
