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


# -- kubeadm end to end: init on one VM, join on the other --------------------------------------------------------


# What a user would write in the inventory's kubeadm: section for such hosts. The VMs have one
# vCPU each (2 cores shared by every VM and the tests); kubeadm wants 2 for a control plane:
# NumCPU is ignored by name, every other preflight check counts. ECDSA keys: RSA's took 2.5 min
# of init in an emulated VM. No internet: the addons' images cannot be had.
VM_KUBEADM = {"kube_proxy": False, "coredns": False, "encryption_algorithm": "ECDSA-P256",
              "ignore_preflight_errors": ["NumCPU"]}


def _install_images(remote, bin_dir, settings, tmp_path, control_plane: bool) -> None:
    """What a user's node has before kdlib comes (no internet here): the pause image and, on the
    control plane's host, the control plane's images, made locally (tests/kubeadmhosts.py) and
    imported into the host's own containerd; the pause image also under the name its
    configuration asks for."""
    from kdlib.cluster.node import identity, images

    from ... import kubeadmhosts

    archives = [images.build_archive(bin_dir / "sleeper", tmp_path / "pause.tar")]
    if control_plane:  # 115 MB: a minute or two to import in an emulated VM
        archives.append(kubeadmhosts.control_plane_archive(bin_dir, tmp_path / "controlplane.tar",
                                                           settings.kubernetes_version, settings.etcd_version))
    for archive in archives:
        target = f"/tmp/{archive.name}"
        remote.put(archive, target, mode=0o644)
        remote.run(f"ctr -n k8s.io images import {target} >/dev/null && rm -f {target}", timeout=300)
    configured = remote.run("containerd config dump | sed -n 's/^ *sandbox_image = \"\\(.*\\)\"/\\1/p'").stdout.strip()
    if configured and configured != identity.SANDBOX_IMAGE:
        remote.run(f"ctr -n k8s.io images tag {identity.SANDBOX_IMAGE} {configured} >/dev/null")


def kubeadm_vm_inventory(lab):
    first, second = lab.vms
    return vm_inventory(lab, control_plane={"name": first.name, "address": first.address},
                        workers=[{"name": second.name, "address": second.address, "kubelet": True}],
                        mode="kubeadm", cluster="kdk", kubeadm=VM_KUBEADM)


@pytest.fixture
def kubeadm_ready(lab, binaries, tmp_path_factory):
    """Both VMs with the images a kubeadm node needs (as a user's installation made them)."""
    from kdlib.cluster.binaries import build_node_binaries
    from kdlib.cluster.ssh import kubeadm_config

    build_node_binaries(binaries.directory, names=("kubeadm", "kubelet", "sleeper"))
    inv = kubeadm_vm_inventory(lab)
    settings = kubeadm_config.KubeadmSettings.vanilla(**inv.kubeadm.settings())
    with Hosts.of(inv) as hosts:
        hosts.each(lambda r: _install_images(r, binaries.directory, settings,
                                             tmp_path_factory.mktemp(r.host.name),
                                             r.host.name == inv.control_plane.name)).check()
    return inv, settings


@pytest.mark.slow
def test_kubeadm_init_and_join_on_systemd_vms_two_ready_nodes_a_pod_then_reset_leaves_each_vm_as_it_was(
        lab, binaries, kubeadm_ready, tmp_path):
    import time

    from kubernetes import client

    from kdlib.k8s import objects

    from ...helpers import wait_until

    inv, settings = kubeadm_ready
    first, second = lab.vms
    with Hosts.of(inv) as hosts:  # held open: the login sessions stay the same
        before = {vm.name: vm_snapshot(hosts[vm.name], inv.remote_dir) for vm in lab.vms}
        started = time.monotonic()
        with KubeadmCluster(inv, cni="bridge", state_dir=tmp_path / "local", timeout=900) as cluster:
            assert cluster.settings == settings  # the inventory's kubeadm: section
            up = time.monotonic() - started
            core = client.CoreV1Api(cluster.api_client())

            def ready() -> bool:
                nodes = core.list_node().items
                return sorted(n.metadata.name for n in nodes) == sorted(vm.name for vm in lab.vms) and all(
                    any(c.type == "Ready" and c.status == "True" for c in n.status.conditions) for n in nodes)

            wait_until(ready, 300, "both nodes Ready", interval=2)
            apps = client.AppsV1Api(cluster.api_client())
            apps.create_namespaced_deployment("default", objects.deployment(
                "sleepers", "default", replicas=1, simulated_sandbox=False, on_real_nodes=True))

            def running() -> bool:
                pods = core.list_namespaced_pod("default", label_selector="app=sleepers").items
                return len(pods) == 1 and all(p.status.phase == "Running" and p.spec.node_name == second.name
                                              for p in pods)

            wait_until(running, 300, "a pod Running on the worker VM", interval=2)
            ready_at = time.monotonic() - started - up
            for vm in lab.vms:  # the kubelet: a systemd unit, with the systemd cgroup driver
                unit = hosts[vm.name].run("systemctl list-units --plain --no-legend 'kdlib-*kubelet*' "
                                          "| awk '{print $1, $3, $4}'").stdout.split()
                assert unit[1:] == ["active", "running"], (vm.name, unit)
                driver = hosts[vm.name].run("grep -h '^cgroupDriver' /var/lib/kubelet/config.yaml").stdout.strip()
                assert driver == "cgroupDriver: systemd"
            print(f"\nkubeadm on VMs: up {up:.1f} s ({cluster.timings}), ready and a pod {ready_at:.1f} s later")
            apps.delete_namespaced_deployment("sleepers", "default")
            suite_at = time.monotonic()
            _a_tiny_suite_on(cluster, inv, second.name, tmp_path)
            stopping = time.monotonic()
            print(f"a tiny suite on it: {stopping - suite_at:.1f} s")
        down = time.monotonic() - stopping
        after = {vm.name: vm_snapshot(hosts[vm.name], inv.remote_dir) for vm in lab.vms}
    print(f"kubeadm reset and clean-up: {down:.1f} s")
    changes = {vm: snapshot_difference(before[vm], after[vm]) for vm in before}
    assert not any(changes.values()), json.dumps(changes, indent=1)


def _a_tiny_suite_on(cluster, inv, worker: str, tmp_path) -> None:
    """The microbenchmark suite on the running kubeadm cluster, as a user's run would make it
    (``backend="ssh"`` on this inventory): k8s on the worker VM's kubelet, measured, with the
    runtime breakdown read from its cgroup v2 tree (``kubepods.slice``), in order."""
    import yaml

    from kdlib.experiments import runner
    from kdlib.experiments.microbench import files
    from kdlib.experiments.microbench.spec import SuiteParams
    from kdlib.experiments.microbench.suite import run_suite

    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inv.to_data()))
    root = tmp_path / "results"
    params = SuiteParams(run_id="kubeadm-vm", backend="ssh", inventory=str(path), baselines=["k8s", "k8s+"],
                         benches=["scale-pods"], scale_pods=[2], settle_s=0.5,
                         run_timeout_s=600)  # an emulated 1-vCPU control plane: its controllers are slow
    outcome = run_suite(params, root=root, progress=False, clusters={"vanilla": cluster})
    assert [(o.item.baseline, o.status) for o in outcome.outcomes] == [("k8s", "measured")], outcome.outcomes
    assert outcome.not_measured == {"k8s+": "needs kwok nodes: kubeadm mode runs real kubelets only in this version"}
    assert cluster.running  # the caller's cluster: left running
    suite = runner.load("kubeadm-vm", root)
    assert suite["state"] == "finished" and suite["clusters"]["vanilla"]["backend"] == "ssh"
    directory = files.run_dir("scale-pods", "kubeadm-vm", root)
    key = files.RunKey("scale-pods", "k8s", 2)
    assert files.parse_log(files.log_path(directory, key).read_text()) > 0
    meta = json.loads(files.meta_path(directory, key).read_text())
    assert meta["backend"] == "ssh" and meta["real_nodes"] == 1
    assert outcome.outcomes[0].phases["teardown"] >= 0  # cleaned up and waited for: the cluster goes on
    timeline = files.load_timelines("scale-pods", "kubeadm-vm", root)
    pods = timeline[timeline["kind"] == "Pod"]
    assert set(pods[pods["stage"] == "scheduled"]["node"]) == {worker}
    at = pods.pivot_table(index="object", columns="stage", values="t")
    assert len(at) == 2 and at[["sandbox", "started"]].notna().all().all(), at
    assert (at["scheduled"] <= at["sandbox"]).all() and (at["sandbox"] <= at["started"]).all()
    assert (at["started"] <= at["ready"]).all()
    assert not set(cluster.pod_process_starts()) - {p.metadata.uid for p in _static_pods(cluster)}, \
        "the suite's pods were torn down on the worker (only the control plane's static pods remain)"


def _static_pods(cluster):
    from kubernetes import client

    return client.CoreV1Api(cluster.api_client()).list_namespaced_pod("kube-system").items
