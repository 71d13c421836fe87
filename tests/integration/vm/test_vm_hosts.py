"""The VM test hosts themselves: their own kernel, systemd as PID 1, cgroup v2, a private network."""

from __future__ import annotations

import pytest

from kdlib.cluster.ssh.remote import Hosts

from .conftest import vm_inventory

pytestmark = [pytest.mark.integration, pytest.mark.vm]


@pytest.fixture
def hosts(lab):
    inv = vm_inventory(lab, workers=[{"name": vm.name, "address": vm.address, "kubelet": True} for vm in lab.vms])
    with Hosts.of(inv) as connected:
        yield connected


def test_each_vm_runs_systemd_on_cgroup_v2_with_a_kernel_and_identity_of_its_own(lab, hosts):
    import os

    found = hosts.run("stat -f -c %T /sys/fs/cgroup; cat /proc/1/comm; systemctl is-system-running --wait; "
                      "hostname; uname -r; cat /etc/machine-id /sys/class/dmi/id/product_uuid; "
                      "cat /sys/fs/cgroup/cgroup.controllers; systemctl is-active containerd",
                      hosts=[vm.name for vm in lab.vms], timeout=180).check()
    identities = set()
    for vm in lab.vms:
        lines = found[vm.name].stdout.splitlines()
        assert lines[0] == "cgroup2fs"
        assert lines[1] == "systemd"
        assert lines[2] == "running", found[vm.name].stdout
        assert lines[3] == vm.name
        assert lines[4] != os.uname().release  # its own kernel, not this machine's
        identities.add((lines[5], lines[6]))
        assert {"cpu", "memory", "pids"} <= set(lines[7].split())
        assert lines[8] == "active"  # containerd, as a unit
    assert len(identities) == len(lab.vms)  # machine-id and product_uuid differ (kubeadm checks them)


def test_vms_reach_each_other_and_the_namespace_hosts_and_nothing_beyond(lab, hosts):
    first, second = lab.vms
    result = hosts[first.name].run(
        f"ping -c 1 -W 5 {second.address} >/dev/null && echo vm; ping -c 1 -W 5 {lab.hosts[0].address} >/dev/null "
        f"&& echo ns; ip route show default; ping -c 1 -W 2 1.1.1.1 >/dev/null 2>&1 || echo isolated",
        timeout=60)
    lines = result.stdout.splitlines()
    assert lines[0] == "vm" and lines[1] == "ns"
    assert lines[2].startswith("default via ") and lines[2].split()[2].endswith(".253")
    assert lines[3] == "isolated"
