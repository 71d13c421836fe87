"""Binaries mode with a kubelet worker on a systemd + cgroup v2 VM (a user's node), the control
plane on a namespace host: the kubelet and containerd use the systemd cgroup driver, a pod's
processes sit in cgroup v2 slices and scopes, their start times are read from there, and
`down` leaves the VM as it found it."""

from __future__ import annotations

import json
import re
import time

import pytest

from kdlib.cluster.ssh import kubelets
from kdlib.cluster.ssh.cluster import SshCluster
from kdlib.cluster.ssh.remote import Hosts

from ..ssh.test_ssh_hostile import _real_pod
from .conftest import snapshot_difference, vm_inventory, vm_snapshot

pytestmark = [pytest.mark.integration, pytest.mark.vm, pytest.mark.needs_binaries]


def test_a_kubelet_worker_on_a_systemd_cgroup_v2_vm_and_down_leaves_it_as_it_was(lab, binaries, tmp_path):
    vm = lab.vms[0]
    inv = vm_inventory(lab, workers=[{"name": vm.name, "address": vm.address, "kubelet": True}])
    worker = kubelets.workers(inv)[vm.name]
    with Hosts.of(inv) as hosts:  # held open: the login session and user manager stay the same
        remote = hosts[vm.name]
        # A node that does not forward (binaries mode does not ask for it): whatever turns it on must turn it off.
        remote.run("sysctl -q -w net.ipv4.ip_forward=0")
        before = vm_snapshot(remote, inv.remote_dir)
        started = time.monotonic()
        with SshCluster(inv, nodes=0, timeout=600, state_dir=tmp_path / "local") as cluster:
            up = time.monotonic() - started
            logs = f"{inv.cluster_dir()}/{vm.name}/logs"
            pod = _real_pod(cluster.api_client(), timeout=300)
            ready = time.monotonic() - started - up
            uid = pod.metadata.uid
            # The kubelet's effective cgroup driver (its own log of its node configuration) and containerd's.
            driver = remote.run(f"grep -o '\"CgroupDriver\":\"[a-z]*\"' {logs}/kubelet.log | head -n 1").stdout
            assert driver.strip() == '"CgroupDriver":"systemd"'
            assert "SystemdCgroup = true" in remote.run(f"cat {worker.root}/containerd.toml").stdout
            # The pod's processes: cgroup v2 (one line, "0::"), in systemd slices, each container a scope.
            escaped = uid.replace("-", "_")
            found = remote.run(f"grep -l 'pod{escaped}' /proc/[0-9]*/cgroup | head -n 1 | xargs cat").stdout
            assert re.fullmatch(rf"0::/kdlib_\w+\.slice/(kdlib_\w+-kubepods[\w-]*\.slice/)+"
                                rf"kdlib_[\w-]+-pod{escaped}\.slice/cri-containerd-([0-9a-f]{{64}})\.scope\n", found), found
            scope = found.strip().rsplit("/", 1)[1]
            assert remote.run(f"systemctl is-active {scope}").stdout.strip() == "active"
            # The runtime breakdown's input: the pod's process start times, read from cgroup v2 on the VM.
            starts = cluster.pod_process_starts()
            assert len(starts.get(uid, [])) >= 2, starts  # the sandbox's and the container's processes
            created = pod.metadata.creation_timestamp.timestamp() - (time.time() - time.monotonic())
            assert all(created - 1.0 <= s <= time.monotonic() for s in starts[uid]), (created, starts[uid])
        down = time.monotonic() - started - up - ready
        after = vm_snapshot(remote, inv.remote_dir)
    print(f"\nkubelet worker on a VM: up {up:.1f} s, a pod Ready {ready:.1f} s later, down {down:.1f} s")
    changes = snapshot_difference(before, after)
    assert not changes, json.dumps(changes, indent=1)
