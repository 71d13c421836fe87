"""Real nodes as data: their configuration files, image archive, names, and what the suite plans."""

from __future__ import annotations

import hashlib
import json
import tarfile
import tomllib
from pathlib import Path

import pytest

from kdlib.k8s import objects
from kdlib.cluster.local import hostnet, realnode
from kdlib.cluster.node import config as node_config
from kdlib.cluster.node import identity, images
from kdlib.cluster.local.hostnet import HostNetwork
from kdlib.cluster.local import LocalCluster
from kdlib.experiments import BASELINES
from kdlib.experiments.microbench import SuiteParams, plan
from kdlib.params import problems_of
from kdlib.experiments.runtime import PodRuntime, medians


@pytest.fixture
def node(tmp_path: Path) -> realnode.RealNode:
    return realnode.RealNode(tmp_path / "state", HostNetwork(hostnet.cluster_tag(tmp_path), "172.30.7.0/24"), 1)


def test_names_fit_the_kernel_and_addresses_stay_on_the_bridge(node):
    net = node.net
    for name in (net.bridge, *net.veth(9)):
        assert len(name) <= 15 and name.startswith("kdrn")
    assert net.host_address == "172.30.7.1" and node.address == "172.30.7.11"
    assert node.cgroup == f"/{net.tag}-n1" and node.pod_cidr == "10.244.1.0/24"
    assert len(str(node.containerd_socket) + ".ttrpc") < 104  # unix socket path limit


def test_containerd_config_is_valid_toml_with_the_settings_this_machine_needs(node):
    config = tomllib.loads(node_config.toml(node_config.containerd_config(node.layout, hostnet.CNI_DIR)))
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert config["version"] == 2 and config["grpc"]["address"] == str(node.containerd_socket)
    assert cri["restrict_oom_score_adj"] is True and cri["disable_apparmor"] is True
    assert cri["sandbox_image"] == images.SANDBOX_IMAGE
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert cri["cni"]["conf_dir"].startswith(str(node.root))
    assert config["root"].startswith(str(node.root))


def test_kubelet_config_points_at_its_own_containerd_cgroup_and_ca(node, tmp_path):
    config = node_config.kubelet_config(node.layout, tmp_path / "ca.crt")
    assert config["containerRuntimeEndpoint"] == f"unix://{node.containerd_socket}"
    assert config["cgroupRoot"] == node.cgroup and config["cgroupDriver"] == "cgroupfs"
    assert config["authentication"]["x509"]["clientCAFile"] == str(tmp_path / "ca.crt")
    assert config["registerWithTaints"] == [identity.TAINT]
    assert config["healthzBindAddress"] == node.address and config["readOnlyPort"] == 0


def test_a_local_node_and_an_ssh_worker_get_the_same_files_each_naming_its_own_root(node, tmp_path):
    from pathlib import PurePosixPath

    from kdlib.cluster.ssh.inventory import Host
    from kdlib.cluster.ssh.kubelets import Worker

    worker = Worker(Host(name="w1", address=node.address), 1, "/srv/kdlib/c")
    local, remote = node.layout, worker.layout
    assert isinstance(remote.root, PurePosixPath) and str(remote.root).startswith("/tmp/kdlib-")
    ca = PurePosixPath("/ca.crt")
    here, there = node_config.files(local, ca, "/cni"), node_config.files(remote, ca, "/cni")
    assert set(here) == set(there) == {"containerd.toml", "kubelet.yaml", "cni/net.d/10-kdlib.conflist"}
    for name in here:
        assert str(remote.root) not in here[name] and str(local.root) not in there[name]
        assert here[name].replace(str(local.runtime), "R").replace(str(local.root), "R").replace(local.cgroup, "C") == \
            there[name].replace(str(remote.root), "R").replace(remote.cgroup, "C"), name
    staged = tmp_path / "tree"
    node_config.write_tree(staged, remote, ca, "/cni")
    assert (staged / "overlay" / "var-lib" / "upper").is_dir() and (staged / "cni" / "ipam").is_dir()
    assert f"conf_dir = \"{remote.root}/cni/net.d\"" in (staged / "containerd.toml").read_text()


def test_a_systemd_host_gets_the_systemd_cgroup_driver_in_containerd_and_the_kubelet_alike(node, tmp_path):
    files = node_config.files(node.layout, tmp_path / "ca.crt", hostnet.CNI_DIR, systemd=True)
    runc = tomllib.loads(files[node_config.CONTAINERD_TOML])["plugins"]["io.containerd.grpc.v1.cri"]
    assert runc["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is True
    assert "cgroupDriver: systemd" in files[node_config.KUBELET_YAML]


def test_the_sockets_of_systemd_stay_the_hosts_under_the_overlays(node, tmp_path):
    plain = node_config.containerd_script(node.layout, tmp_path / "c.toml")
    assert "--move" not in plain and plain.endswith(f"exec containerd --config {tmp_path / 'c.toml'}")
    steps = node_config.containerd_script(node.layout, tmp_path / "c.toml", ("/run/dbus",)).split(" && ")
    aside = str(node.layout.root / "shared" / "run-dbus")
    bind = steps.index(f"mount --bind /run/dbus {aside}")
    overlay = next(i for i, step in enumerate(steps) if step.endswith(" /run"))
    assert bind < overlay < steps.index(f"mount --move {aside} /run/dbus")


def test_kubeadm_mode_keeps_its_own_bridge_and_portmap():
    from kdlib.cluster.ssh.kubeadm_cluster import bridge_conflist

    assert bridge_conflist("10.244.3.0/24") == {
        "cniVersion": "0.4.0", "name": "kdlib",
        "plugins": [{"type": "bridge", "bridge": "kdlib-cni0", "isGateway": True, "ipMasq": False,
                     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.3.0/24"}]]}},
                    {"type": "portmap", "capabilities": {"portMappings": True}}]}


def test_image_archive_holds_the_program_under_both_tags(tmp_path):
    program = tmp_path / "sleeper"
    program.write_bytes(b"\x7fELF not really")
    archive = images.build_archive(program, tmp_path / "out" / "image.tar")
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))[0]
        assert manifest["RepoTags"] == [images.SANDBOX_IMAGE, images.WORKLOAD_IMAGE]
        layer = tar.extractfile(manifest["Layers"][0]).read()
        config = json.load(tar.extractfile(manifest["Config"]))
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    assert config["config"]["Entrypoint"] == [images.ENTRYPOINT]
    with tarfile.open(fileobj=__import__("io").BytesIO(layer)) as tar:
        assert tar.extractfile("sleeper").read() == program.read_bytes()
    assert images.build_archive(program, tmp_path / "again.tar").read_bytes() == archive.read_bytes()


def test_real_pods_go_only_to_real_nodes_with_the_local_image():
    pod = objects.deployment("f", "ns", simulated_sandbox=False, on_real_nodes=True)["spec"]["template"]
    spec_ = pod["spec"]
    assert spec_["nodeSelector"] == identity.LABEL
    assert spec_["tolerations"] == [identity.TOLERATION]
    assert spec_["containers"][0] | {} == {"name": "app", "image": images.WORKLOAD_IMAGE, "imagePullPolicy": "Never"}
    assert spec_["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    assert "kubedirect/pod-lifecycle" not in pod["metadata"]["labels"]


def test_real_baselines_are_measured_only_with_real_nodes_the_machine_can_run(monkeypatch):
    assert "real_nodes" in LocalCluster(nodes=1).why_not(BASELINES["k8s"])
    monkeypatch.setattr(hostnet, "why_not_real_nodes", lambda: None)
    assert LocalCluster(nodes=1, real_nodes=2).why_not(BASELINES["k8s"]) is None
    items, skipped = plan(SuiteParams(run_id="x", real_nodes=2))
    assert "k8s" not in skipped
    assert not [i for i in items if i.baseline == "k8s" and i.bench == "scale-nodes"]  # Figure 11: kwok only
    monkeypatch.setattr(hostnet, "why_not_real_nodes", lambda: "missing runc")
    _, skipped = plan(SuiteParams(run_id="x", real_nodes=2))
    assert skipped["k8s"] == "needs real kubelets and containers: this machine cannot run real nodes (missing runc)"
    assert LocalCluster(nodes=1).why_not(BASELINES["k8s+"]) is None


def test_real_pods_must_fit_the_kubelets():
    problems = problems_of(SuiteParams, run_id="x", real_nodes=1, scale_pods=(200,))
    assert any("200 real pods do not fit 1 real nodes" in p for p in problems)
    assert not problems_of(SuiteParams, run_id="x", real_nodes=2, scale_pods=(200,))
    assert problems_of(SuiteParams, run_id="x", real_nodes=-1)


def test_runtime_medians_over_pods_that_reached_each_stage():
    pods = [PodRuntime("a", scheduled=1.0, sandbox=1.5, started=2.0, ready=2.2),
            PodRuntime("b", scheduled=1.0, sandbox=1.7, started=2.4, ready=3.0),
            PodRuntime("c", scheduled=1.0)]
    found = medians(pods)
    assert found["scheduled→sandbox"] == pytest.approx(0.6)
    assert found["sandbox→started"] == pytest.approx(0.6)
    assert found["started→ready"] == pytest.approx(0.4)
    assert found["scheduled→ready"] == pytest.approx(1.6)
    assert found["pods"] == 3


def test_a_machine_that_cannot_run_real_nodes_gets_a_reason_not_a_crash(monkeypatch):
    monkeypatch.setattr(hostnet.os, "geteuid", lambda: 1000)
    assert hostnet.why_not_real_nodes() == "real nodes need root (network namespaces, mounts, cgroups)"
    monkeypatch.setattr(hostnet.os, "geteuid", lambda: 0)
    monkeypatch.setattr(hostnet, "_has_capability", lambda bit: True)
    monkeypatch.setattr(hostnet.shutil, "which", lambda name: None if name == "runc" else f"/usr/bin/{name}")
    reason = hostnet.why_not_real_nodes()
    assert reason.startswith("missing runc") and "setup.sh" in reason


def test_sysctls_are_restored_only_by_the_last_cluster_out(monkeypatch, tmp_path):
    values = {"kernel.panic": "1"}
    monkeypatch.setattr(hostnet, "SYSCTL_RECORD", tmp_path / "record.json")
    monkeypatch.setattr(hostnet, "read_sysctls", lambda names=None: dict(values))
    written = {}
    monkeypatch.setattr(hostnet, "restore_sysctls", lambda before: written.update(before) or dict(before))
    first, second = tmp_path / "a", tmp_path / "b"
    for state in (first, second):
        state.mkdir()
        (state / "real-nodes.json").write_text("{}")
    hostnet.claim_sysctls(first)
    values["kernel.panic"] = "10"  # the first cluster's kubelet changed it
    hostnet.claim_sysctls(second)  # must not take 10 for the original
    (first / "real-nodes.json").unlink()
    assert hostnet.release_sysctls(first) == {} and written == {}
    (second / "real-nodes.json").unlink()
    assert hostnet.release_sysctls(second) == {"kernel.panic": "1"}
    assert not (tmp_path / "record.json").exists()
