"""kubeadm over SSH on a real test host: our kubeadm validates our configuration and dry-runs
`kubeadm init` with it; a wrong configuration and a host without the prerequisites are
refused with errors naming the host. The full cluster: test_kubeadm_cluster.py."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from kdlib.cluster.ssh import kubeadm, kubeadm_config, prerequisites
from kdlib.cluster.ssh.inventory import Host
from kdlib.cluster.ssh.remote import Hosts, SshOptions
from kdlib.errors import RemoteError

pytestmark = [pytest.mark.integration, pytest.mark.ssh, pytest.mark.needs_binaries]


@pytest.fixture(scope="module")
def kubeadm_binaries(binaries) -> dict[str, Path]:
    """kubeadm (built on first use, like the kubelet) and the kubelet its preflight asks for."""
    from kdlib.cluster.binaries import build_node_binaries

    return build_node_binaries(binaries.directory, names=("kubeadm", "kubelet"))


@pytest.fixture(scope="module")
def host(module_host_factory, kubeadm_binaries):
    """One test host with kubeadm installed, shared by the module: its tests validate and dry-run
    configurations of their own and read what the host lacks; none of them changes the host."""
    _, hosts = module_host_factory(1)
    test_host = Host(hosts[0].name, hosts[0].address, key=hosts.key)
    with Hosts([test_host], SshOptions(connect_timeout=5, command_timeout=60, known_hosts=hosts.known_hosts)) as group:
        remote = group[test_host.name]
        work = f"{hosts.workdir}/remote/{test_host.name}"
        tools = kubeadm.install(remote, kubeadm_binaries, f"{hosts.workdir}/remote", work)
        yield test_host, group, tools


def test_validate_and_dry_run_of_our_configuration_on_a_test_host(host):
    test_host, _, tools = host
    etc_kubernetes_before = Path("/etc/kubernetes").exists()
    started = time.monotonic()
    for settings in (kubeadm_config.KubeadmSettings.vanilla(cgroup_driver="cgroupfs"), kubeadm_config.KubeadmSettings.kd()):
        config = f"{tools.work_dir}/kubeadm-init.yaml"
        kubeadm.put_text(tools.remote, kubeadm_config.init_yaml(settings, test_host, kubeadm_config.new_token()), config)
        kubeadm.validate(tools, config)
        output = kubeadm.dry_run(tools, config, ignored=tuple(kubeadm_config.TEST_HOST_PREFLIGHT_IGNORED))
        assert "Your Kubernetes control-plane has initialized successfully!" in output
        # What kubeadm would run: the artifact's flags and the chosen images, read back from its manifests.
        dry = Path(tools.work_dir, "dryrun")  # the test host shares this machine's filesystem
        apiserver = yaml.safe_load((dry / "kube-apiserver.yaml").read_text())["spec"]["containers"][0]
        assert "--max-requests-inflight=200000" in apiserver["command"]
        assert "--feature-gates=AuthorizeNodeWithSelectors=false" in apiserver["command"]
        assert f"--advertise-address={test_host.address}" in apiserver["command"]
        assert apiserver["image"] == f"{settings.image_repository}/kube-apiserver:{settings.kubernetes_version}"
        manager = yaml.safe_load((dry / "kube-controller-manager.yaml").read_text())["spec"]["containers"][0]
        assert "--concurrent-replicaset-syncs=100" in manager["command"]
        scheduler = yaml.safe_load((dry / "kube-scheduler.yaml").read_text())["spec"]["containers"][0]
        assert f"--config={kubeadm_config.SCHEDULER_CONFIG}" in scheduler["command"]
        etcd = yaml.safe_load((dry / "etcd.yaml").read_text())["spec"]["containers"][0]
        assert "--quota-backend-bytes=4294967296" in etcd["command"]
        assert etcd["image"] == f"registry.k8s.io/etcd:{settings.etcd_version.lstrip('v')}-0"
    # Reset's dry run names what it would remove; nothing of this machine's /etc is touched.
    assert "/etc/kubernetes/manifests" in kubeadm.reset(tools, dry_run=True)
    assert Path("/etc/kubernetes").exists() == etc_kubernetes_before
    print(f"validate + dry run, vanilla and Kd, in {time.monotonic() - started:.1f} s")


def test_a_wrong_configuration_is_refused_with_an_error_naming_the_host(host):
    test_host, _, tools = host
    documents = [kubeadm_config.init_configuration(kubeadm_config.KubeadmSettings.vanilla(), test_host),
                 kubeadm_config.cluster_configuration(kubeadm_config.KubeadmSettings.vanilla(), test_host)]
    # v1beta3's shape (a map of flags) where v1beta4 wants a list of {name, value}.
    documents[1]["apiServer"]["extraArgs"] = {"max-requests-inflight": "200000"}
    config = f"{tools.work_dir}/wrong.yaml"
    kubeadm.put_text(tools.remote, kubeadm_config.render(*documents), config)
    refusal = rf"^{test_host.name}: kubeadm config validate refused the configuration \(exit 1\): "
    with pytest.raises(RemoteError, match=refusal) as refused:
        kubeadm.validate(tools, config)
    assert refused.value.host == test_host.name
    assert "extraArgs" in refused.value.output  # kubeadm's own words, in the error's tail


def test_the_dry_run_keeps_every_preflight_check_not_ignored_by_name(host):
    test_host, _, tools = host
    config = f"{tools.work_dir}/kubeadm-init.yaml"
    kubeadm.put_text(tools.remote, kubeadm_config.init_yaml(kubeadm_config.KubeadmSettings.vanilla(), test_host), config)
    with pytest.raises(RemoteError, match=rf"^{test_host.name}: kubeadm init --dry-run failed") as failed:
        kubeadm.dry_run(tools, config)
    assert "[ERROR FileContent--proc-sys-net-ipv4-ip_forward]" in failed.value.output


def test_a_host_without_the_prerequisites_is_one_error_naming_it_and_what_it_lacks(host):
    test_host, group, _ = host
    with pytest.raises(RemoteError, match=rf"^{test_host.name}: missing prerequisites: ") as lacking:
        prerequisites.check_hosts(group, [test_host.name])
    message = str(lacking.value)
    # The test host runs no containerd and keeps forwarding off (see the reference on test hosts).
    assert "containerd listening on unix:///run/containerd/containerd.sock" in message
    assert "net.ipv4.ip_forward=1" in message
    assert "swap off" not in message  # what the host has is not listed
