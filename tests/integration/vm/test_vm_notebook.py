"""The microbenchmark notebook with backend="ssh" on an inventory with a VM, at a tiny scale, and
the trace notebook's rules for such inventories.

Control plane on the session's first namespace host, kwok on the second (3 fake nodes), a real
kubelet on the first VM (systemd, cgroup v2): `k8s` runs real containers on the VM, `k8s+` on
kwok, as tests/integration/ssh/test_ssh_suite.py does on namespace hosts; the VM is as it was
after the suite (compared inside it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from kdlib.cluster.ssh.remote import Hosts

from ...helpers import REPO, our_processes
from .conftest import snapshot_difference, vm_inventory, vm_snapshot

pytestmark = [pytest.mark.integration, pytest.mark.vm, pytest.mark.needs_binaries]


def _inventory(lab, **changes):
    vm, kwok = lab.vms[0], lab.hosts[1]
    return vm_inventory(lab, workers=[{"name": kwok.name, "address": kwok.address, "kwok_nodes": 3},
                                      {"name": vm.name, "address": vm.address, "kubelet": True}], **changes)


@pytest.mark.slow
def test_microbench_notebook_on_an_inventory_with_a_vm_kubelet_measures_k8s_there_and_k8s_plus_on_kwok(
        lab, binaries, tmp_path):
    from kdlib.experiments import runner
    from kdlib.experiments.microbench import files

    vm = lab.vms[0]
    inv = _inventory(lab)
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inv.to_data()))
    root = tmp_path / "results"
    env = {**os.environ, "KDLIB_RESULTS_DIR": str(root), "KDLIB_STATE_DIR": str(tmp_path / "state")}
    params = ("{benches: [scale-pods], scale_pods: [2], nodes: 3, settle_s: 0.5, "
              f"baselines: [k8s, k8s+], backend: ssh, inventory: {path}}}")
    executed = root / "executed" / "tiny-vm" / "microbench.ipynb"
    executed.parent.mkdir(parents=True)
    with Hosts.of(inv) as hosts:
        remote = hosts[vm.name]
        before = vm_snapshot(remote, inv.remote_dir)
        run = subprocess.run(
            [sys.executable, "-m", "papermill", str(REPO / "notebooks" / "microbench.ipynb"), str(executed),
             "--cwd", str(REPO), "-p", "run_id", "tiny-vm", "-y", params],
            env=env, capture_output=True, text=True, timeout=1200)
        assert run.returncode == 0, run.stderr[-3000:]
        after = vm_snapshot(remote, inv.remote_dir)

    suite = runner.load("tiny-vm", root)
    assert suite["state"] == "finished" and suite["not_measured"] == {}
    assert suite["clusters"]["vanilla"]["backend"] == "ssh"
    assert {(o["baseline"], o["status"]) for o in suite["attempts"][-1]["outcomes"]} == {("k8s", "measured"),
                                                                                ("k8s+", "measured")}
    directory = files.run_dir("scale-pods", "tiny-vm", root)
    for baseline, real_nodes in (("k8s", 1), ("k8s+", 0)):
        key = files.RunKey("scale-pods", baseline, 2)
        assert files.parse_log(files.log_path(directory, key).read_text()) > 0
        meta = json.loads(files.meta_path(directory, key).read_text())
        assert meta["backend"] == "ssh" and meta["real_nodes"] == real_nodes
    timeline = files.load_timelines("scale-pods", "tiny-vm", root)
    scheduled = timeline[timeline["stage"] == "scheduled"]
    assert set(scheduled[scheduled["baseline"] == "k8s"]["node"]) == {vm.name}
    assert set(scheduled[scheduled["baseline"] == "k8s+"]["node"]) <= {f"kwok-node-{i:04d}" for i in range(3)}
    # The runtime breakdown, read over SSH from the VM's cgroup v2 tree, in order.
    real = timeline[(timeline["baseline"] == "k8s") & (timeline["kind"] == "Pod")]
    at = real.pivot_table(index="object", columns="stage", values="t")
    assert len(at) == 2 and at[["sandbox", "started"]].notna().all().all()
    assert (at["scheduled"] <= at["sandbox"]).all() and (at["sandbox"] <= at["started"]).all()
    assert (at["started"] <= at["ready"]).all()
    assert our_processes(lab.hosts.workdir / "remote") == []  # the namespace hosts: nothing left
    changes = snapshot_difference(before, after)
    assert not changes, json.dumps(changes, indent=1)


def test_trace_notebook_takes_an_inventory_with_a_kwok_worker_and_refuses_one_without_or_of_kubeadm(lab, tmp_path):
    """The trace's systems run on kwok nodes: an inventory of VMs alone (a kubelet worker, or
    kubeadm mode) is refused before anything is provisioned, naming the file; one with a kwok
    worker beside the VM is taken; a reference run keeps the original's pace."""
    from kdlib.errors import ParametersError
    from kdlib.experiments.trace.params import REFERENCE_RUN_ID, TraceParams

    vm = lab.vms[0]
    inventories = {
        "kwok beside a VM": _inventory(lab),
        "a VM kubelet only": vm_inventory(lab, workers=[{"name": vm.name, "address": vm.address, "kubelet": True}]),
        "kubeadm on VMs": vm_inventory(lab, control_plane={"name": vm.name, "address": vm.address},
                                       workers=[{"name": lab.vms[1].name, "address": lab.vms[1].address,
                                                 "kubelet": True}], mode="kubeadm"),
    }
    paths = {}
    for name, inv in inventories.items():
        paths[name] = tmp_path / f"{name.replace(' ', '-')}.yaml"
        paths[name].write_text(yaml.safe_dump(inv.to_data()))
    taken = TraceParams(run_id="tiny-vm", backend="ssh", inventory=str(paths["kwok beside a VM"]), time_scale=4)
    assert str(taken.inventory) == str(paths["kwok beside a VM"])
    for name in ("a VM kubelet only", "kubeadm on VMs"):
        with pytest.raises(ParametersError, match="the trace runs on kwok nodes: it needs mode binaries and a "
                                                  "worker with kwok_nodes") as refused:
            TraceParams(run_id="tiny-vm", backend="ssh", inventory=str(paths[name]))
        assert str(paths[name]) in str(refused.value)
    with pytest.raises(ParametersError, match=f"refused for run_id {REFERENCE_RUN_ID!r}"):
        TraceParams(run_id=REFERENCE_RUN_ID, backend="ssh", inventory=str(paths["kwok beside a VM"]), time_scale=4)
