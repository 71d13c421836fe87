"""The local cluster's command lines and kwok data carry the artifact's settings."""


import pytest
import yaml

from kdlib.cluster import kwok, settings
from kdlib.cluster.binaries import COMPONENTS, BinarySet, pinned_versions
from kdlib.cluster.controlplane import components
from kdlib.cluster.controlplane.components import Endpoints, Layout

PORTS = {"etcd": 1001, "etcd-peer": 1002, "kube-apiserver": 1003,
         "kube-controller-manager": 1004, "kube-scheduler": 1005, "kwok": 1006}


@pytest.fixture
def plane(tmp_path):
    layout = Layout(tmp_path)
    layout.config.mkdir()
    components.write_config(layout)
    binaries = BinarySet(tmp_path / "bin", {c: tmp_path / "bin" / c for c in COMPONENTS})
    return {c.name: c for c in components.control_plane(binaries, layout, Endpoints("127.0.0.1", PORTS))}


def test_start_order_and_names(plane):
    assert list(plane) == ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]


def test_components_listen_on_the_address_they_are_given(tmp_path):
    layout = Layout(tmp_path)
    layout.config.mkdir()
    binaries = BinarySet(tmp_path / "bin", {c: tmp_path / "bin" / c for c in COMPONENTS})
    for component in components.control_plane(binaries, layout, Endpoints("10.77.0.1", PORTS)):
        assert "10.77.0.1" in component.probe.url
        assert not any("127.0.0.1" in arg for arg in component.argv), component.name


def test_etcd_requires_client_certificates_of_its_own_ca(plane):
    etcd, apiserver = plane["etcd"].argv, plane["kube-apiserver"].argv
    assert "--listen-client-urls=https://127.0.0.1:1001" in etcd
    assert "--client-cert-auth=true" in etcd and "--peer-client-cert-auth=true" in etcd
    assert any(a.startswith("--trusted-ca-file=") and a.endswith("etcd-ca.crt") for a in etcd)
    assert "--etcd-servers=https://127.0.0.1:1001" in apiserver
    assert any(a.startswith("--etcd-certfile=") and a.endswith("apiserver-etcd-client.crt") for a in apiserver)
    probe = plane["etcd"].probe
    assert probe.url.startswith("https://") and probe.client_cert.name == "etcd-healthcheck-client.crt"


def test_every_component_listens_on_loopback_only(plane):
    for component in plane.values():
        for arg in component.argv:
            if "0.0.0.0" in arg:
                pytest.fail(f"{component.name} binds all interfaces: {arg}")
        assert "127.0.0.1" in component.probe.url


def test_apiserver_has_artifact_flags_and_rbac(plane):
    argv = plane["kube-apiserver"].argv
    for name, value in settings.APISERVER_FLAGS.items():
        assert f"--{name}={value}" in argv
    assert "--authorization-mode=Node,RBAC" in argv
    assert not any(a.startswith(("--insecure-port", "--anonymous-auth=true")) for a in argv)
    assert plane["kube-apiserver"].probe.url.startswith("https://")


def test_controller_manager_has_artifact_flags(plane):
    argv = plane["kube-controller-manager"].argv
    assert "--concurrent-deployment-syncs=100" in argv
    assert "--concurrent-replicaset-syncs=100" in argv
    assert "--endpointslice-updates-batch-period=50ms" in argv
    assert "--feature-gates=TopologyAwareHints=false" in argv


def test_the_artifacts_control_plane_keeps_the_default_client_limits(plane, tmp_path):
    assert not any(a.startswith(("--kube-api-qps", "--kube-api-burst")) for a in plane["kube-controller-manager"].argv)
    client = yaml.safe_load((tmp_path / "config" / "scheduler.yaml").read_text())["clientConnection"]
    assert set(client) == {"kubeconfig"}


def test_the_unthrottled_control_plane_raises_both_client_limits(tmp_path):
    layout = Layout(tmp_path)
    layout.config.mkdir()
    components.write_config(layout, unthrottled=True)
    binaries = BinarySet(tmp_path / "bin", {c: tmp_path / "bin" / c for c in COMPONENTS})
    plane = {c.name: c for c in components.control_plane(binaries, layout, Endpoints("127.0.0.1", PORTS),
                                                           unthrottled=True)}
    argv = plane["kube-controller-manager"].argv
    assert "--kube-api-qps=10000" in argv and "--kube-api-burst=10000" in argv
    assert "--concurrent-replicaset-syncs=100" in argv  # the artifact's flags stay
    # The scheduler ignores --kube-api-qps with --config: the limit is in the file.
    assert not any(a.startswith("--kube-api") for a in plane["kube-scheduler"].argv)
    client = yaml.safe_load((tmp_path / "config" / "scheduler.yaml").read_text())["clientConnection"]
    assert client["qps"] == 10000 and client["burst"] == 10000 and client["kubeconfig"].endswith("scheduler.kubeconfig")
    limits = settings.client_limits(True)
    assert limits["kube-controller-manager"] == "--kube-api-qps=10000 --kube-api-burst=10000"
    assert "qps: 10000" in limits["kube-scheduler"] and "burst: 10000" in limits["kube-scheduler"]


def test_etcd_has_compaction_and_quota(plane):
    argv = plane["etcd"].argv
    assert "--auto-compaction-mode=periodic" in argv
    assert "--auto-compaction-retention=15m" in argv
    assert "--quota-backend-bytes=4294967296" in argv


def test_scheduler_config_file(plane, tmp_path):
    config = yaml.safe_load((tmp_path / "config" / "scheduler.yaml").read_text())
    assert config["parallelism"] == 50 and config["percentageOfNodesToScore"] == 5
    assert config["leaderElection"] == {"leaderElect": False}


def test_kwok_manages_only_labelled_nodes_with_leases(plane):
    argv = plane["kwok"].argv
    assert "--manage-nodes-with-label-selector=type=kwok" in argv
    assert "--node-lease-duration-seconds=40" in argv


def test_kwok_pod_stages_are_the_full_disjoint_set():
    stages = {s["metadata"]["name"]: s["spec"] for s in kwok.pod_stages()}
    assert set(stages) == {"pod-ready-simulated-sandbox", "pod-ready", "pod-complete", "pod-delete"}
    simulated, prompt = stages["pod-ready-simulated-sandbox"], stages["pod-ready"]
    assert simulated["delay"] == {"durationMilliseconds": 200}
    assert "delay" not in prompt
    label = '.metadata.labels["kubedirect/pod-lifecycle"]'
    ops = {e["operator"] for s in (simulated, prompt) for e in s["selector"]["matchExpressions"] if e["key"] == label}
    assert ops == {"In", "NotIn"}  # the two ready stages never both match a pod
    assert stages["pod-delete"]["next"] == {"finalizers": {"empty": True}, "delete": True}


def test_kwok_config_file_parses_as_kwok_documents():
    documents = list(yaml.safe_load_all(kwok.config_yaml()))
    assert documents[0]["kind"] == "KwokConfiguration"
    assert [d["kind"] for d in documents[1:]] == ["Stage"] * 4


def test_node_object_shape():
    node = kwok.node_object("kwok-node-0000")
    assert node["metadata"]["labels"]["type"] == "kwok"
    assert node["spec"]["taints"] == [{"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}]
    assert node["status"]["allocatable"] == {"cpu": "48", "memory": "128Gi", "pods": "110"}


def test_pinned_versions_come_from_go_mod():
    versions = pinned_versions()
    assert versions.kubernetes.startswith("v1.32.")
    assert versions.etcd.startswith("v3.5.")
    assert versions.kwok.startswith("v0.7.")


def test_a_layout_rooted_on_a_remote_host_names_only_that_hosts_paths(tmp_path):
    from pathlib import PurePosixPath

    remote = Layout(PurePosixPath("/srv/kdlib/c1/cp"))
    binaries = {c: f"/srv/kdlib/bin/0123/{c}" for c in COMPONENTS}
    plane = components.control_plane(binaries, remote, Endpoints("127.0.0.1", PORTS, api_address="10.1.1.1"))
    for component in plane:
        assert component.argv[0] == binaries[component.name]
        paths = [a.split("=", 1)[1] for a in component.argv if "=/" in a]
        assert paths and all(p.startswith("/srv/kdlib/c1/cp/") for p in paths), component.name
    staging = tmp_path / "staging"
    (staging / "config").mkdir(parents=True)
    components.write_config(remote, into=staging)  # written here, naming the host's paths
    client = yaml.safe_load((staging / "config" / "scheduler.yaml").read_text())["clientConnection"]
    assert client["kubeconfig"] == "/srv/kdlib/c1/cp/config/scheduler.kubeconfig"
    assert (staging / "config" / "kwok.yaml").read_text() == kwok.config_yaml()
