"""A fault on a VM: a worker VM loses power mid-run (its qemu killed). It runs last: the session's
VM is gone after it (the lab's order hook keeps destructive vm tests last)."""

from __future__ import annotations

import time

import pytest

from kdlib.cluster.ssh.cluster import SshCluster

from .conftest import vm_inventory

pytestmark = [pytest.mark.integration, pytest.mark.vm, pytest.mark.needs_binaries, pytest.mark.destructive]


def test_a_worker_vm_powered_off_mid_run_is_named_by_the_liveness_check_and_the_rest_is_cleaned(
        vm_lab, lab, binaries, tmp_path):
    from kdlib.cluster.ssh import running
    from kdlib.errors import HostUnreachable, RemoteError

    from ...helpers import our_processes

    vm = lab.vms[0]  # the session's first VM: powered off (this test runs last)
    inv = vm_inventory(lab, workers=[{"name": vm.name, "address": vm.address, "kubelet": True}], command_timeout=120)
    cluster = SshCluster(inv, nodes=0, timeout=600, state_dir=tmp_path / "local")
    cluster.start()
    try:
        cluster.check()
        vm_lab[0].power_off(vm)
        off = time.monotonic()
        with pytest.raises(HostUnreachable, match=rf"^{vm.name}: "):
            while time.monotonic() - off < 3 * running.WATCH_INTERVAL + 2 * inv.connect_timeout + 30:
                cluster.check()
                time.sleep(0.5)
        named = time.monotonic() - off
    finally:
        with pytest.raises(RemoteError, match=rf"^{vm.name}: clean-up incomplete"):
            cluster.stop()
    print(f"\npowered-off worker VM named after {named:.1f} s")
    assert our_processes(lab.hosts.workdir / "remote") == []  # the control plane's host is clean
