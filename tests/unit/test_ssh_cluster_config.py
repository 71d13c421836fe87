"""SshCluster refuses inventories it cannot run before any connection (no host is needed:
this was an integration test that made three SSH hosts it never connected to)."""

from __future__ import annotations

import pytest

from kdlib.cluster.ssh import inventory
from kdlib.cluster.ssh.cluster import SshCluster
from kdlib.errors import ConfigError


def test_unsupported_inventories_are_refused_before_any_connection(tmp_path):
    key = tmp_path / "id_ed25519"
    key.write_text("not a real key; only its presence is checked\n")
    inv = inventory.parse({
        "cluster": "kdt", "key": str(key), "connect_timeout": 5, "command_timeout": 120,
        "remote_dir": str(tmp_path / "remote"),
        "control_plane": {"name": "h1", "address": "10.255.255.1"},
        "workers": [{"name": "h2", "address": "10.255.255.2", "kwok_nodes": 3}],
    }, "test-hosts")
    with pytest.raises(ConfigError, match="mode 'kubeadm' is not SshCluster's"):
        SshCluster(inventory.parse({**inv.to_data(), "mode": "kubeadm", "workers": [
            *inv.to_data()["workers"], {"name": "w3", "address": "10.255.255.3", "kubelet": True, "key": str(key)}]}))
    with pytest.raises(ConfigError, match="kd=True needs bin_dir"):
        SshCluster(inv, kd=True)
    kubelet_only = inventory.parse({**inv.to_data(), "workers": [
        {"name": "w3", "address": "10.255.255.3", "kubelet": True, "key": str(key)}]})
    with pytest.raises(ConfigError, match="3 kwok nodes wanted but no worker has kwok_nodes"):
        SshCluster(kubelet_only, nodes=3)
