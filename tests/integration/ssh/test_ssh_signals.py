"""Ctrl-C and SIGTERM clean an SSH cluster up as they do a local one."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ...conftest import REPO, our_processes
from .test_ssh_cluster import cluster_inventory

pytestmark = [pytest.mark.integration, pytest.mark.ssh, pytest.mark.needs_binaries]

_OWNER = """
import time
from kdlib.cluster.ssh import inventory
from kdlib.cluster.ssh.cluster import SshCluster
with SshCluster(inventory.load({path!r}), state_dir={state!r}):
    print("ready", flush=True)
    time.sleep(600)
"""


def _owner(tmp_path: Path, hosts) -> tuple[subprocess.Popen, Path, str]:
    inv = cluster_inventory(hosts, kwok_nodes=1)
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inv.to_data()))
    owner = subprocess.Popen([sys.executable, "-c", _OWNER.format(path=str(path), state=str(tmp_path / "local"))],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return owner, Path(inv.cluster_dir()), hosts[0].name


def _assert_clean(cluster_dir: Path, tmp_path: Path) -> None:
    assert our_processes(cluster_dir) == []
    assert sorted(p.name for p in cluster_dir.iterdir()) == ["lock", "lock.owner"]
    assert not (tmp_path / "local").exists()


@pytest.mark.destructive
def test_sigterm_to_a_running_cluster_cleans_every_host(ssh_hosts, binaries, tmp_path):
    owner, cluster_dir, _ = _owner(tmp_path, ssh_hosts)
    assert owner.stdout.readline().strip() == "ready", owner.stderr.read()
    assert len(our_processes(cluster_dir)) == 6  # five components and the lock holder
    owner.send_signal(signal.SIGTERM)
    owner.wait(timeout=60)
    _assert_clean(cluster_dir, tmp_path)


@pytest.mark.destructive
def test_ctrl_c_during_provisioning_cleans_every_host(ssh_hosts, binaries, tmp_path):
    owner, cluster_dir, cp = _owner(tmp_path, ssh_hosts)
    etcd_pid = cluster_dir / cp / "run" / "etcd.pid"
    deadline = time.monotonic() + 120
    while not etcd_pid.exists():  # interrupt once the control plane is starting
        assert owner.poll() is None and time.monotonic() < deadline, owner.stderr.read()
        time.sleep(0.05)
    owner.send_signal(signal.SIGINT)
    owner.wait(timeout=60)
    assert owner.returncode != 0
    _assert_clean(cluster_dir, tmp_path)
