"""kubeadm mode on a systemd VM: a host whose own kubelet.service is enabled is refused, untouched."""

from __future__ import annotations

import json

import pytest

from kdlib.cluster.ssh.kubeadm_cluster import KubeadmCluster
from kdlib.cluster.ssh.remote import Hosts
from kdlib.errors import RemoteError

from .conftest import snapshot_difference, vm_inventory, vm_snapshot

pytestmark = [pytest.mark.integration, pytest.mark.vm, pytest.mark.needs_binaries]

FOREIGN_UNIT = """[Unit]
Description=A kubelet installed by the host's packages (a stand-in that only sleeps)
[Service]
ExecStart=/bin/sleep infinity
[Install]
WantedBy=multi-user.target
"""


@pytest.fixture(scope="module")
def lab(vm_lab_factory):
    return vm_lab_factory(vms=1, namespace_hosts=1)[1]


def test_a_host_with_its_own_kubelet_service_enabled_is_refused_and_left_as_it_was(lab, binaries, tmp_path):
    vm = lab.vms[0]
    # The control plane on the namespace host (it lacks containerd: named too), the VM a worker.
    inv = vm_inventory(lab, workers=[{"name": vm.name, "address": vm.address, "kubelet": True}], mode="kubeadm")
    with Hosts.of(inv) as hosts:
        remote = hosts[vm.name]
        remote.run(f"cat > /etc/systemd/system/kubelet.service <<'EOF'\n{FOREIGN_UNIT}EOF\n"
                   "systemctl daemon-reload && systemctl enable --now --quiet kubelet.service")
        try:
            before = vm_snapshot(remote, inv.remote_dir)
            with pytest.raises(RemoteError, match="missing prerequisites") as caught:
                with KubeadmCluster(inv, state_dir=tmp_path / "local", timeout=120):
                    pass
            lacking = dict(part.split(": ", 1) for part in caught.value.reason.removeprefix(
                "missing prerequisites: ").split(" | "))
            assert lacking[vm.name] == ("no kubelet.service enabled (kdlib runs the kubelet itself: "
                                        "systemctl disable --now kubelet)")  # and nothing else lacking
            after = vm_snapshot(remote, inv.remote_dir)
            assert remote.run("systemctl is-active kubelet.service").stdout.strip() == "active"  # not touched
        finally:
            remote.run("systemctl disable --now --quiet kubelet.service; rm -f /etc/systemd/system/kubelet.service; "
                       "systemctl daemon-reload", check=False)
    changes = snapshot_difference(before, after)
    assert not changes, json.dumps(changes, indent=1)
