"""Fixtures for the tests on VM hosts: a lab of VMs and namespace hosts per test module."""

from __future__ import annotations

import pytest

from ... import vmhosts, vmimage


@pytest.fixture(scope="module")
def vm_lab_factory():
    """Makes labs (:class:`vmhosts.VmLab`) for one test module; whatever it made is removed,
    and checked gone, at the end. Skips where QEMU or the image cannot be had."""
    reason = vmhosts.unavailable_reason()
    if reason:
        pytest.skip(f"VM test hosts unavailable: {reason}")
    still = vmhosts.sweep()  # the VMs of crashed runs
    assert not still, f"VMs of a crashed run could not be killed: {still}"
    try:
        image = vmimage.ensure()
    except vmimage.ImageUnavailable as error:
        pytest.skip(f"VM image unavailable: {error}")
    labs: list[vmhosts.VmLab] = []

    def make(vms: int = 1, namespace_hosts: int = 1, **kwargs) -> tuple[vmhosts.VmLab, vmhosts.Lab]:
        lab = vmhosts.VmLab(vms, namespace_hosts, image=image, **kwargs)
        labs.append(lab)
        lab_hosts = lab.create()
        print(f"\nVM lab: {vms} VM(s) booted in {lab_hosts.boot_seconds:.1f} s "
              f"({', '.join(f'{vm.name} {vm.boot_seconds:.1f} s' for vm in lab_hosts.vms)})")
        return lab, lab_hosts

    yield make
    for lab in labs:
        remains = lab.destroy()
        assert not any(remains.values()), f"VM lab left behind: {remains}"


def vm_inventory(lab: vmhosts.Lab, *, workers: list[dict], control_plane: int = 0, mode: str = "binaries",
                 command_timeout: float = 300, cluster: str = "kdv"):
    """An inventory of the lab: the control plane on namespace host ``control_plane``."""
    from kdlib.cluster.ssh import inventory

    cp = lab.hosts[control_plane]
    return inventory.parse({
        "cluster": cluster, "mode": mode, "key": str(lab.key), "known_hosts": str(lab.known_hosts),
        "connect_timeout": 20, "command_timeout": command_timeout, "remote_dir": str(lab.hosts.workdir / "remote"),
        "control_plane": {"name": cp.name, "address": cp.address},
        "workers": workers,
    }, "vm-lab")
