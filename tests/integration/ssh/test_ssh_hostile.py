"""Hostile tests of the SSH backend: a second run, signals and dead components on real hosts."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kdlib.cluster.ssh.cluster import SshCluster
from kdlib.cluster.ssh import inventory
from kdlib.errors import HostUnreachable, RemoteLockBusy

from ...conftest import our_processes
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
    import os

    import yaml

    from ...conftest import run_kdlib

    _, hosts = host_factory(2)
    inv = cluster_inventory(hosts, kwok_nodes=1)
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inv.to_data()))
    env = {**os.environ, "KDLIB_STATE_DIR": str(tmp_path / "state")}
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
