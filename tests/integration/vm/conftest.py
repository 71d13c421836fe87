"""Fixtures for the tests on VM hosts: ONE lab for a run of vm tests, shared by the vm modules.

Booting an emulated VM costs 30-60 s (more on a busy machine), so the session boots two VMs
and two namespace hosts once (:data:`LAB_VMS`, :data:`LAB_NAMESPACE_HOSTS`); each test adds
and removes only its own things and checks, inside the VM, that the VM is as it was after
(:func:`vm_snapshot`). The one destructive test (a VM powered off) runs last
(``test_vm_power_off.py``; the lab's order hook keeps it last, and every vm test after the others)."""

from __future__ import annotations

import time

import pytest

from ... import vmhosts, vmimage

LAB_VMS = 2
LAB_NAMESPACE_HOSTS = 2


def pytest_collection_modifyitems(items):
    """The vm tests run together, last (one lab boot for all of them: 40-60 s each), and the
    tests that power a VM off after every other vm test, whatever the selection."""
    def order(item) -> tuple[bool, bool]:
        vm = item.get_closest_marker("vm") is not None
        return vm, vm and item.get_closest_marker("destructive") is not None

    items.sort(key=order)


_shared: list[tuple[vmhosts.VmLab, vmhosts.Lab]] = []  # the lab while vm tests run one after the other


@pytest.fixture
def vm_lab() -> tuple[vmhosts.VmLab, vmhosts.Lab]:
    """(VmLab, Lab): two VMs and two namespace hosts on one bridge, booted by the first vm test
    and shared by those that follow it; removed, and checked gone, after the last of a run of vm
    tests (:func:`pytest_runtest_teardown`: the VMs never idle beside other tests). Skips where
    QEMU or the image cannot be had."""
    if _shared:
        return _shared[0]
    reason = vmhosts.unavailable_reason()
    if reason:
        pytest.skip(f"VM test hosts unavailable: {reason}")
    still = vmhosts.sweep()  # the VMs of crashed runs
    assert not still, f"VMs of a crashed run could not be killed: {still}"
    try:
        image = vmimage.ensure()
    except vmimage.ImageUnavailable as error:
        pytest.skip(f"VM image unavailable: {error}")
    lab = vmhosts.VmLab(LAB_VMS, LAB_NAMESPACE_HOSTS, image=image)
    lab_hosts = lab.create()
    print(f"\nVM lab: {LAB_VMS} VMs booted in {lab_hosts.boot_seconds:.1f} s "
          f"({', '.join(f'{vm.name} {vm.boot_seconds:.1f} s' for vm in lab_hosts.vms)})")
    _shared.append((lab, lab_hosts))
    return _shared[0]


def pytest_runtest_teardown(item, nextitem):
    """After the last test of a run of vm tests, the lab goes (a later vm test boots another)."""
    if not _shared or (nextitem is not None and nextitem.get_closest_marker("vm") is not None):
        return
    lab, _ = _shared.pop()
    started = time.monotonic()
    remains = lab.destroy()
    print(f"\nVM lab destroyed in {time.monotonic() - started:.1f} s")
    assert not any(remains.values()), f"VM lab left behind: {remains}"


@pytest.fixture
def lab(vm_lab) -> vmhosts.Lab:
    return vm_lab[1]


def vm_inventory(lab: vmhosts.Lab, *, workers: list[dict], control_plane: dict | None = None,
                 mode: str = "binaries", command_timeout: float = 300, cluster: str = "kdv", **more):
    """An inventory of the lab: the control plane on the first namespace host unless given.
    A long connect timeout: on a busy 2-core machine an emulated VM's SSH handshake (and a
    namespace host's login shell) took 25 s."""
    from kdlib.cluster.ssh import inventory

    cp = control_plane or {"name": lab.hosts[0].name, "address": lab.hosts[0].address}
    return inventory.parse({
        "cluster": cluster, "mode": mode, "key": str(lab.key), "known_hosts": str(lab.known_hosts),
        "connect_timeout": 60, "command_timeout": command_timeout, "remote_dir": str(lab.hosts.workdir / "remote"),
        "control_plane": cp,
        "workers": workers, **more,
    }, "vm-lab")


# What `down` must leave as it found it on a VM. Left out, because they change by themselves
# or belong to the SSH session taking the snapshot: login sessions and the user manager,
# counters and random values in /proc/sys, the journal, udev's runtime database, kdlib's `remote_dir` (binaries are
# cached there on purpose; the cluster's lock file stays, see README), and the state directories the host's own
# containerd makes on its first CRI use and keeps while it runs (kubeadm mode uses the host's containerd).
_SNAPSHOT = r"""
mkdir -p {remote_dir}  # the user's choice, made before: what kdlib keeps there is left out below
ls /proc/sys/fs/binfmt_misc >/dev/null 2>&1  # sysctl -a below mounts it (an automount): mounted in both looks
echo '== units'
systemctl list-units --all --plain --no-legend --no-pager | awk '$3 != "inactive" {{print $1, $3, $4}}' \
  | grep -v -e '^session-[0-9]*\.scope' | sort
echo '== unit files'
find /etc/systemd /run/systemd/system /run/systemd/transient /run/systemd/system.control 2>/dev/null | sort
echo '== cgroups'
find /sys/fs/cgroup -type d | grep -v -e '^/sys/fs/cgroup/user.slice/' | sort
echo '== controllers'
cat /sys/fs/cgroup/cgroup.subtree_control
echo '== mounts'
awk '{{print $5, $(NF-2)}}' /proc/1/mountinfo | grep -v -e '^/run/user/' | sort
echo '== links'
ip -o link show | awk -F': ' '{{print $2}}' | sort
echo '== addresses'
ip -o addr show | awk '{{print $2, $4}}' | sort
echo '== routes'
ip route show table all | sort
echo '== files'
find /etc /opt /usr/local /root /tmp /var/lib /var/log /run -xdev 2>/dev/null \
  | grep -v -e '^/var/log/journal' -e '^/run/log/journal' -e '^/run/user' -e '^/run/udev/' -e '^/run/systemd/sessions' \
            -e '^/run/systemd/users' -e '^/run/systemd/units' -e '^/run/systemd/journal/streams' \
            -e '^/var/lib/systemd/' -e '^/root/.ssh' -e '^{remote_dir}' -e '^/run/containerd/' \
            -e '^/var/lib/containerd/io.containerd.grpc.v1.cri' -e '^/var/lib/containerd/io.containerd.runtime.v2.task' | sort
echo '== sysctls'
sysctl -a 2>/dev/null | grep -v -e '^fs\.dentry-state' -e '^fs\.file-nr' -e '^fs\.inode-' -e '^kernel\.random\.' \
  -e '^kernel\.ns_last_pid' -e '^kernel\.pty\.nr' -e 'nf_conntrack_count' -e '^fs\.quota\.' | sort
echo '== iptables'
for x in iptables ip6tables; do for t in filter nat mangle raw; do
  $x-save -t $t 2>/dev/null | grep -v '^#' | sed 's/ \[[0-9]*:[0-9]*\]$//' | sed "s/^/$x /"; done; done
"""


def vm_snapshot(remote, remote_dir: str) -> dict[str, list[str]]:  # remote: a kdlib Remote
    """The VM's units, unit files, cgroups, mounts, links, addresses, routes, files, sysctls and
    iptables rules, by section."""
    import shlex

    out = remote.run("sh -c " + shlex.quote(_SNAPSHOT.format(remote_dir=remote_dir)), timeout=300).stdout
    sections: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        if line.startswith("== "):
            current = sections.setdefault(line[3:], [])
        elif current is not None:
            current.append(line)
    return sections


def snapshot_difference(before: dict[str, list[str]], after: dict[str, list[str]]) -> dict[str, dict[str, list]]:
    """Per section: what appeared and what disappeared (empty when the VM is as it was)."""
    changes = {}
    for section in before.keys() | after.keys():
        old, new = set(before.get(section, [])), set(after.get(section, []))
        if old != new:
            changes[section] = {"appeared": sorted(new - old)[:40], "disappeared": sorted(old - new)[:40]}
    return changes
