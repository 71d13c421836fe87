"""The kubeadm configuration as data: the artifact's settings, Kd's images, v1beta4's shapes."""

from __future__ import annotations

import re

import pytest
import yaml

from kdlib.cluster import settings
from kdlib.cluster.binaries import pinned_versions
from kdlib.cluster.ssh import kubeadm_config
from kdlib.cluster.ssh.inventory import Host
from kdlib.errors import ConfigError

CP = Host("node0", "10.10.1.1")
WORKER = Host("node1", "10.10.1.2")


def documents(text: str) -> dict[str, dict]:
    docs = list(yaml.safe_load_all(text))
    return {d["kind"]: d for d in docs}


def as_flags(extra: list[dict]) -> dict[str, str]:
    assert all(set(e) == {"name", "value"} and isinstance(e["value"], str) for e in extra), extra
    return {e["name"]: e["value"] for e in extra}


def test_vanilla_init_documents_carry_the_artifacts_flags_at_the_pinned_versions():
    docs = documents(kubeadm_config.init_yaml(kubeadm_config.KubeadmSettings.vanilla(), CP, "abcdef.0123456789abcdef"))
    assert list(docs) == ["InitConfiguration", "ClusterConfiguration", "KubeletConfiguration"]
    assert all(d["apiVersion"] == "kubeadm.k8s.io/v1beta4" for k, d in docs.items() if k != "KubeletConfiguration")
    init, cluster = docs["InitConfiguration"], docs["ClusterConfiguration"]
    assert init["localAPIEndpoint"] == {"advertiseAddress": "10.10.1.1", "bindPort": 6443}
    assert init["nodeRegistration"] == {"name": "node0", "criSocket": "unix:///run/containerd/containerd.sock",
                                        "kubeletExtraArgs": [{"name": "node-ip", "value": "10.10.1.1"}]}
    assert "patches" not in init
    assert init["bootstrapTokens"][0]["token"] == "abcdef.0123456789abcdef"
    versions = pinned_versions()
    assert cluster["kubernetesVersion"] == versions.kubernetes == "v1.32.13"
    assert cluster["imageRepository"] == "registry.k8s.io"
    assert cluster["controlPlaneEndpoint"] == "10.10.1.1:6443"
    assert cluster["networking"] == {"podSubnet": "10.244.0.0/16", "serviceSubnet": "10.96.0.0/16"}
    # The artifact's flags, each exactly once, as v1beta4 lists of {name, value}.
    assert as_flags(cluster["apiServer"]["extraArgs"]) == {
        "max-mutating-requests-inflight": "200000", "max-requests-inflight": "200000",
        "feature-gates": "AuthorizeNodeWithSelectors=false"}
    assert as_flags(cluster["controllerManager"]["extraArgs"]) == {
        "concurrent-deployment-syncs": "100", "concurrent-replicaset-syncs": "100",
        "concurrent-endpoint-syncs": "50", "concurrent-service-endpoint-syncs": "50",
        "endpoint-updates-batch-period": "50ms", "endpointslice-updates-batch-period": "50ms",
        "feature-gates": "TopologyAwareHints=false"}
    assert as_flags(cluster["etcd"]["local"]["extraArgs"]) == {
        "auto-compaction-mode": "periodic", "auto-compaction-retention": "15m", "quota-backend-bytes": "4294967296"}
    assert cluster["etcd"]["local"]["imageTag"] == versions.etcd.lstrip("v") + "-0"  # our etcd pin, not kubeadm's
    assert "dns" not in cluster and "proxy" not in cluster  # kubeadm's addons, as upstream
    assert docs["KubeletConfiguration"] == {"apiVersion": "kubelet.config.k8s.io/v1beta1",
                                           "kind": "KubeletConfiguration", "cgroupDriver": "systemd"}


def test_the_scheduler_gets_the_artifacts_scoring_settings_through_a_mounted_config_file():
    cluster = kubeadm_config.cluster_configuration(kubeadm_config.KubeadmSettings.vanilla(), CP)
    assert as_flags(cluster["scheduler"]["extraArgs"]) == {"config": kubeadm_config.SCHEDULER_CONFIG}
    (volume,) = cluster["scheduler"]["extraVolumes"]
    assert volume["hostPath"] == volume["mountPath"] == kubeadm_config.SCHEDULER_CONFIG and volume["readOnly"] is True
    config = kubeadm_config.scheduler_configuration()
    assert config["kind"] == "KubeSchedulerConfiguration"
    assert config["parallelism"] == 50 and config["percentageOfNodesToScore"] == 5
    assert config["clientConnection"]["kubeconfig"] == "/etc/kubernetes/scheduler.conf"


def test_kd_images_take_the_control_plane_from_kds_repository_and_the_rest_from_upstream():
    s = kubeadm_config.KubeadmSettings.kd()
    cluster = kubeadm_config.cluster_configuration(s, CP)
    assert (cluster["imageRepository"], cluster["kubernetesVersion"]) == ("shengqipku", "v1.32.0-kubedirect")
    assert cluster["etcd"]["local"]["imageRepository"] == "registry.k8s.io"
    assert cluster["dns"] == {"imageRepository": "registry.k8s.io/coredns"}
    # The artifact's flags do not depend on the images.
    assert cluster["apiServer"] == kubeadm_config.cluster_configuration(kubeadm_config.KubeadmSettings.vanilla(), CP)["apiServer"]
    own = kubeadm_config.KubeadmSettings.kd(repository="registry.example:5000/kd", version="v1.32.1-kd2")
    assert kubeadm_config.cluster_configuration(own, CP)["imageRepository"] == "registry.example:5000/kd"


def test_join_configuration_pins_the_ca_and_names_the_worker():
    text = kubeadm_config.join_yaml(kubeadm_config.KubeadmSettings.vanilla(cgroup_driver="cgroupfs"), WORKER, CP,
                             "abcdef.0123456789abcdef", "sha256:" + "0" * 64, patches="/var/lib/kdlib/p")
    docs = documents(text)
    assert list(docs) == ["JoinConfiguration"]  # the kubelet's settings come from the cluster's ConfigMap
    join = docs["JoinConfiguration"]
    assert join["nodeRegistration"]["name"] == "node1"
    assert join["nodeRegistration"]["kubeletExtraArgs"] == [{"name": "node-ip", "value": "10.10.1.2"}]
    assert join["patches"] == {"directory": "/var/lib/kdlib/p"}
    assert "taints" not in join["nodeRegistration"]  # kubeadm's default: none on a worker
    labelled = kubeadm_config.join_configuration(kubeadm_config.KubeadmSettings.vanilla(), WORKER, CP, "abcdef.0123456789abcdef",
                                          "sha256:" + "0" * 64, labels={"kdlib/real-node": "true"},
                                          taints=[{"key": "kdlib/real-node", "value": "true", "effect": "NoSchedule"}])
    registration = labelled["nodeRegistration"]
    assert as_flags(registration["kubeletExtraArgs"]) == {"node-ip": "10.10.1.2", "node-labels": "kdlib/real-node=true"}
    assert registration["taints"] == [{"key": "kdlib/real-node", "value": "true", "effect": "NoSchedule"}]
    assert join["discovery"]["bootstrapToken"] == {"apiServerEndpoint": "10.10.1.1:6443",
                                                   "token": "abcdef.0123456789abcdef",
                                                   "caCertHashes": ["sha256:" + "0" * 64]}


def test_addons_can_be_turned_off_and_the_kd_dns_repository_is_kept():
    cluster = kubeadm_config.cluster_configuration(kubeadm_config.KubeadmSettings.kd(kube_proxy=False, coredns=False), CP)
    assert cluster["proxy"] == {"disabled": True}
    assert cluster["dns"] == {"imageRepository": "registry.k8s.io/coredns", "disabled": True}


def test_the_flags_come_from_the_shared_settings_not_a_copy():
    cluster = kubeadm_config.cluster_configuration(kubeadm_config.KubeadmSettings.vanilla(), CP)
    assert as_flags(cluster["apiServer"]["extraArgs"]) == settings.APISERVER_FLAGS
    assert as_flags(cluster["controllerManager"]["extraArgs"]) == settings.CONTROLLER_MANAGER_FLAGS


def test_tokens_have_kubeadms_shape_and_differ():
    tokens = {kubeadm_config.new_token() for _ in range(20)}
    assert len(tokens) == 20
    assert all(re.fullmatch(r"[a-z0-9]{6}\.[a-z0-9]{16}", t) for t in tokens)


def test_bad_settings_are_refused_before_anything_runs_each_problem_named():
    s = kubeadm_config.KubeadmSettings.vanilla(kubernetes_version="1.32", pod_subnet="10.96.0.0/12",
                                        cgroup_driver="upstart", cri_socket="/run/containerd.sock",
                                        image_repository="Not A Repo")
    problems = s.problems()
    assert [p.split(":")[0] for p in problems] == ["kubernetes_version", "image_repository", "pod_subnet",
                                                    "cri_socket", "cgroup_driver"]
    with pytest.raises(ConfigError, match=r"^kubeadm settings: kubernetes_version: .*'1.32'"):
        kubeadm_config.init_yaml(s, CP)
    assert kubeadm_config.KubeadmSettings.vanilla().problems() == []
    assert kubeadm_config.KubeadmSettings.kd().problems() == []


def test_the_kubeadm_cluster_refuses_what_it_cannot_run_before_any_connection(tmp_path):
    from kdlib.cluster.ssh import inventory
    from kdlib.cluster.ssh.kubeadm_cluster import KubeadmCluster

    key = tmp_path / "key"
    key.write_text("not used: nothing connects\n")
    inv = inventory.parse({"mode": "kubeadm", "key": str(key), "control_plane": {"name": "cp", "address": "10.0.0.1"},
                           "workers": [{"name": "w1", "address": "10.0.0.2", "kubelet": True},
                                       {"name": "w2", "address": "10.0.0.3", "kwok_nodes": 10}]})
    with pytest.raises(ConfigError) as refused:
        KubeadmCluster(inv, cni="flannel", kubelet_patches={"w9": {"cgroupRoot": "/x"}},
                       settings=kubeadm_config.KubeadmSettings.vanilla(cgroup_driver="upstart"))
    message = str(refused.value)
    assert "settings: cgroup_driver" in message
    assert "w2: kwok_nodes: kwok workers are not implemented in kubeadm mode yet" in message
    assert "cni: must be None or 'bridge', not 'flannel'" in message
    assert "kubelet_patches: no such host: w9" in message
    binaries_mode = inventory.parse({**inv.to_data(), "mode": "binaries", "workers": [inv.to_data()["workers"][0]]})
    with pytest.raises(ConfigError, match="mode is 'binaries', not 'kubeadm'"):
        KubeadmCluster(binaries_mode)


def test_ca_cert_hash_is_what_kubeadms_documented_openssl_recipe_gives(tmp_path):
    import shutil
    import subprocess

    from kdlib.cluster.controlplane import pki
    from kdlib.cluster.ssh.kubeadm_cluster import ca_cert_hash

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    pair = pki.create_ca(tmp_path)
    # kubeadm's docs: openssl x509 -pubkey -in ca.crt | openssl pkey -pubin -outform der | openssl dgst -sha256
    public = subprocess.run(["openssl", "x509", "-pubkey", "-noout", "-in", str(pair.cert)],
                            capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=public,
                         capture_output=True, check=True).stdout
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-r"], input=der, capture_output=True,
                            check=True).stdout.split()[0].decode()
    assert ca_cert_hash(pair.cert.read_bytes()) == f"sha256:{digest}"


def test_reset_runs_from_its_own_configuration_with_a_short_api_timeout():
    config = kubeadm_config.reset_configuration("unix:///run/k3s.sock", dry_run=True)
    assert config == {"apiVersion": "kubeadm.k8s.io/v1beta4", "kind": "ResetConfiguration", "force": True,
                      "criSocket": "unix:///run/k3s.sock", "dryRun": True,
                      "timeouts": {"kubernetesAPICall": "10s"}}


def test_kubeadm_raises_the_client_limits_of_the_unthrottled_control_plane():
    plain = kubeadm_config.cluster_configuration(kubeadm_config.KubeadmSettings.vanilla(), CP)
    assert "kube-api-qps" not in as_flags(plain["controllerManager"]["extraArgs"])
    cluster = kubeadm_config.cluster_configuration(kubeadm_config.KubeadmSettings.vanilla(unthrottled=True), CP)
    flags = as_flags(cluster["controllerManager"]["extraArgs"])
    assert flags["kube-api-qps"] == "10000" and flags["kube-api-burst"] == "10000"
    assert flags["concurrent-replicaset-syncs"] == "100"
    client = kubeadm_config.scheduler_configuration(unthrottled=True)["clientConnection"]
    assert client == {"kubeconfig": "/etc/kubernetes/scheduler.conf", "qps": 10000, "burst": 10000}
