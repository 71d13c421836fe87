"""The SSH backend in mode `binaries` on namespace hosts: up, kwok nodes Ready, down with nothing left."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from kubernetes import client

from kdlib.cluster.ssh import inventory
from kdlib.cluster.ssh.cluster import SshCluster
from kdlib.errors import HostUnreachable, RemoteError

from ...conftest import our_processes

pytestmark = [pytest.mark.integration, pytest.mark.ssh, pytest.mark.needs_binaries]


def cluster_inventory(hosts, kwok_address=None, kwok_nodes=3):
    return inventory.parse({
        "cluster": "kdt", "key": str(hosts.key), "known_hosts": str(hosts.known_hosts),
        "connect_timeout": 5, "command_timeout": 120, "remote_dir": str(hosts.workdir / "remote"),
        "control_plane": {"name": hosts[0].name, "address": hosts[0].address},
        "workers": [{"name": hosts[1].name, "address": kwok_address or hosts[1].address, "kwok_nodes": kwok_nodes}],
    }, "test-hosts")


def test_cluster_up_kwok_nodes_ready_from_this_machine_and_down_with_nothing_left(ssh_hosts, binaries, tmp_path):
    inv = cluster_inventory(ssh_hosts)
    started = time.monotonic()
    with SshCluster(inv, state_dir=tmp_path / "local") as cluster:
        up = time.monotonic() - started
        core = client.CoreV1Api(cluster.api_client())
        nodes = core.list_node().items
        assert sorted(n.metadata.name for n in nodes) == sorted(cluster.info.node_names)
        assert len(nodes) == 3
        assert all(any(c.type == "Ready" and c.status == "True" for c in n.status.conditions) for n in nodes)
        server = cluster.api_client().configuration.host
        assert server == f"https://{ssh_hosts[0].address}:6443"
        running = sorted(Path(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()).name
                         for pid in our_processes(Path(inv.cluster_dir())))
        assert running == ["etcd", "flock", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]
    assert our_processes(Path(inv.cluster_dir())) == []
    # Per-host directories gone; the lock file stays (removing an flock file races with waiters).
    assert sorted(p.name for p in Path(inv.cluster_dir()).iterdir()) == ["lock", "lock.owner"]
    assert not (tmp_path / "local").exists()
    print(f"ssh cluster up in {up:.1f} s; timings {cluster.timings}")


def test_an_unreachable_kwok_host_at_start_is_one_error_and_nothing_starts(ssh_hosts, binaries, tmp_path):
    ghost = ssh_hosts.bridge_address.rsplit(".", 1)[0] + ".200"
    inv = cluster_inventory(ssh_hosts, kwok_address=ghost)
    started = time.monotonic()
    with pytest.raises(HostUnreachable, match=rf"^{ssh_hosts[1].name}: (no answer|cannot connect)"):
        with SshCluster(inv, state_dir=tmp_path / "local"):
            pass
    assert time.monotonic() - started < 10
    assert our_processes(Path(inv.cluster_dir())) == []
    assert not Path(inv.cluster_dir(), ssh_hosts[0].name, "run").exists()


@pytest.mark.destructive
def test_sshd_killed_mid_run_fails_naming_the_host_and_the_others_are_cleaned(host_factory, binaries, tmp_path):
    factory, hosts = host_factory(2)
    inv = cluster_inventory(hosts, kwok_nodes=1)
    cluster = SshCluster(inv, state_dir=tmp_path / "local")
    cluster.start()
    kwok_pid = int(Path(inv.cluster_dir(), hosts[1].name, "run", "kwok.pid").read_text())
    factory.kill_sshd(1, sessions=True)
    started = time.monotonic()
    with pytest.raises(RemoteError, match=rf"^{hosts[1].name}: clean-up incomplete: {hosts[1].name}: ") as caught:
        cluster.stop()
    # "cannot connect ... Connection refused", or the reset of the dying connection.
    assert "refused" in str(caught.value) or "reset" in str(caught.value) or "lost" in str(caught.value), caught.value
    assert time.monotonic() - started < 15
    # The control-plane host is clean; the dead host's kwok is still there (nobody can reach it) ...
    left = [Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] for pid in our_processes(Path(inv.cluster_dir()))]
    assert [Path(p.decode()).name for p in left] == ["kwok"]
    assert not Path(inv.cluster_dir(), hosts[0].name).exists()
    assert Path(f"/proc/{kwok_pid}").exists()  # ... and the host fixture removes it with the namespace


def test_cli_up_status_down_from_another_process(ssh_hosts, binaries, tmp_path):
    import json
    import os

    import yaml

    from ...conftest import run_kdlib

    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(cluster_inventory(ssh_hosts, kwok_nodes=2).to_data()))
    env = {**os.environ, "KDLIB_STATE_DIR": str(tmp_path / "state")}
    up = run_kdlib("ssh", "up", str(path), env=env)
    assert up.returncode == 0, up.stderr
    kubeconfig = Path(up.stdout.strip())
    assert kubeconfig.is_file() and str(tmp_path / "state" / "ssh" / "kdt") in str(kubeconfig)
    status = run_kdlib("ssh", "status", str(path), env=env)
    found = json.loads(status.stdout)
    assert status.returncode == 0 and found["running"] and found["kubeconfig"] == str(kubeconfig)
    assert set(found["hosts"][ssh_hosts[0].name]) == {"etcd", "kube-apiserver", "kube-controller-manager",
                                                       "kube-scheduler"}
    assert set(found["hosts"][ssh_hosts[1].name]) == {"kwok"}
    inv = cluster_inventory(ssh_hosts)
    down = run_kdlib("ssh", "down", str(path), env=env)
    assert down.returncode == 0, down.stderr
    assert our_processes(Path(inv.cluster_dir())) == [] and not kubeconfig.exists()
    assert run_kdlib("ssh", "status", str(path), env=env).returncode == 1
