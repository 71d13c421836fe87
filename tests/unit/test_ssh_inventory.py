"""The SSH inventory is validated as a whole, before any connection; errors name the field's path."""

from __future__ import annotations

import pytest
import yaml

from kdlib.cluster.ssh import inventory
from kdlib.errors import ConfigError, InventoryError


@pytest.fixture
def key(tmp_path):
    path = tmp_path / "id_ed25519"
    path.write_text("not a real key; only its presence is checked\n")
    return path


def good(key):
    return {
        "cluster": "ae", "mode": "binaries", "key": str(key),
        "control_plane": {"name": "node0", "address": "10.10.1.1"},
        "workers": [
            {"name": "node1", "address": "10.10.1.2", "kwok_nodes": 20},
            {"name": "node2", "address": "10.10.1.3", "kubelet": True, "user": "ubuntu", "port": 2222},
        ],
    }


def problems(data, **kwargs):
    with pytest.raises(InventoryError) as caught:
        inventory.parse(data, **kwargs)
    return caught.value.problems


def test_a_good_inventory_reads_with_defaults_and_roles(key):
    inv = inventory.parse(good(key))
    assert inv.control_plane.target == "root@10.10.1.1:22"
    assert [h.name for h in inv.hosts] == ["node0", "node1", "node2"]
    assert [h.name for h in inv.kwok_workers] == ["node1"] and inv.kwok_node_count == 20
    assert [h.name for h in inv.kubelet_workers] == ["node2"]
    assert inv.workers[1].target == "ubuntu@10.10.1.3:2222"
    assert inv.control_plane.key == key and inv.use_ssh_config is False
    assert inv.cluster_dir() == "/var/lib/kdlib/ae"


def test_round_trip_through_yaml(key, tmp_path):
    inv = inventory.parse(good(key))
    path = tmp_path / "inventory.yaml"
    path.write_text(inv.to_yaml())
    assert inventory.load(path) == inv


def test_every_problem_is_reported_with_host_and_field(key):
    data = good(key)
    data["mode"] = "kind"
    data["workers"][0]["port"] = 70000
    data["workers"][1]["kubelet"] = "yes"
    data["workers"].append({"name": "Node_3", "address": "10.10.1.4", "kwok_nodes": 1})
    data["control_plane"]["key"] = "/nonexistent/key"
    found = problems(data)
    assert "mode: must be one of binaries, kubeadm, not 'kind'" in found
    assert any(p.startswith("workers[0].port: must be an integer in 1..65535") for p in found)
    assert any(p.startswith("workers[1].kubelet: must be true or false") for p in found)
    assert any(p.startswith("workers[2].name: required: a lowercase DNS-1123 name") for p in found)
    assert "control_plane.key: no such file: /nonexistent/key" in found
    assert len(found) == 5


def test_typos_are_unknown_fields_not_silent_defaults(key):
    data = good(key)
    data["workers"][0]["kwok_node"] = 5
    data["conect_timeout"] = 3
    data["control_plane"]["kubelet"] = True
    found = problems(data)
    assert any(p.startswith("workers[0].kwok_node: unknown field") for p in found)
    assert any(p.startswith("conect_timeout: unknown field") for p in found)
    assert any(p.startswith("control_plane.kubelet: unknown field (only workers") for p in found)


def test_duplicates_and_roleless_workers(key):
    data = good(key)
    data["workers"].append({"name": "node1", "address": "10.10.1.2"})
    found = problems(data)
    assert "workers[2].kwok_nodes: this worker has no role: set kwok_nodes: N or kubelet: true" in found
    found = problems({**data, "workers": [*data["workers"][:2], {**data["workers"][0], "kubelet": True}]})
    assert "workers[2].name: also the name of workers[0]" in found
    assert "workers[2].address: 10.10.1.2:22 is also node1" in found


def test_a_key_is_required_unless_the_user_asks_for_ssh_config(key):
    data = good(key)
    del data["key"]
    assert any(p == "control_plane.key: required (here or at the top) unless use_ssh_config is true"
               for p in problems(data))
    data["use_ssh_config"] = True
    assert inventory.parse(data).control_plane.key is None


@pytest.mark.parametrize("field, value", [("address", "10.0.0.1 bad"), ("address", None), ("user", "ro ot")])
def test_bad_host_fields(key, field, value):
    data = good(key)
    data["control_plane"][field] = value
    assert any(p.startswith(f"control_plane.{field}: ") for p in problems(data))


def test_missing_parts_and_unreadable_files(tmp_path):
    found = problems({"cluster": "Bad Name"})
    assert "control_plane: required: the host of etcd and the API server" in found
    assert "workers: required: a list of at least one worker" in found
    assert any(p.startswith("cluster:") for p in found)
    with pytest.raises(InventoryError, match="cannot read it"):
        inventory.load(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("workers: [\n")
    with pytest.raises(InventoryError, match="not valid YAML"):
        inventory.load(tmp_path / "bad.yaml")


def test_inventory_errors_are_config_errors_and_one_line(key):
    data = good(key)
    data["port"] = "x"
    with pytest.raises(ConfigError) as caught:
        inventory.parse(data, source="inv.yaml")
    assert str(caught.value).startswith("inventory inv.yaml: ") and "\n" not in str(caught.value)


HOSTS = """127.0.0.1 localhost
# The following lines are desirable for IPv6 capable hosts
::1 localhost ip6-localhost ip6-loopback
10.10.1.1 node0-link-0 node0
10.10.1.2 node1-link-0 node1
10.10.1.3 node2-link-0 node2
10.10.1.4 node3-link-0 node3
"""


def test_import_of_the_original_host_list(key):
    inv = inventory.from_hosts_file(HOSTS, "node0", key=key, exclude=("node3",), kwok_nodes=5, kwok_workers=2)
    assert inv.control_plane.address == "10.10.1.1"
    assert [(w.name, w.address, w.kwok_nodes, w.kubelet) for w in inv.workers] == [
        ("node1", "10.10.1.2", 3, True), ("node2", "10.10.1.3", 2, True)]
    assert [w.name for w in inventory.from_hosts_file(HOSTS, "node0", key=key, workers=1).workers] == ["node1"]
    assert yaml.safe_load(inv.to_yaml())["workers"][0]["kwok_nodes"] == 3


def test_import_names_a_missing_control_plane(key):
    with pytest.raises(InventoryError, match=r"control_plane: 'master' is not a host in /etc/hosts \(hosts: node0"):
        inventory.from_hosts_file(HOSTS, "master", key=key)


def test_a_kubeadm_section_sets_the_clusters_kubeadm_settings_and_checks_each_field(key, tmp_path):
    """A user's hosts may lack the addons' images or have one CPU: the inventory says so, checked
    before anything runs, and the kubeadm cluster (and a suite's, through the registry) takes it."""
    from kdlib.cluster import registry
    from kdlib.cluster.ssh.kubeadm_cluster import KubeadmCluster

    data = {**good(key), "mode": "kubeadm", "workers": [{"name": "node1", "address": "10.10.1.2", "kubelet": True}],
            "kubeadm": {"kube_proxy": False, "coredns": False, "encryption_algorithm": "ECDSA-P256",
                        "ignore_preflight_errors": ["NumCPU"]}}
    inv = inventory.parse(data)
    assert inv.kubeadm == inventory.KubeadmOptions(False, False, "ECDSA-P256", ("NumCPU",))
    assert inventory.parse(yaml.safe_load(inv.to_yaml())) == inv  # written as read
    cluster = KubeadmCluster(inv, state_dir=tmp_path / "state", preflight_ignored=("Swap",))
    s = cluster.settings
    assert (s.kube_proxy, s.coredns, s.encryption_algorithm) == (False, False, "ECDSA-P256")
    assert cluster.preflight_ignored == ("NumCPU", "Swap")
    path = tmp_path / "inventory.yaml"
    path.write_text(inv.to_yaml())
    opened = registry.open_cluster("ssh", nodes=0, kd=False, bin_dir=None, inventory=path, unthrottled=True)
    assert (opened.settings.encryption_algorithm, opened.settings.unthrottled, opened.preflight_ignored) == (
        "ECDSA-P256", True, ("NumCPU",))
    assert "kubeadm" not in inventory.parse({**data, "kubeadm": {}}).to_data()  # defaults are not written
    assert problems({**data, "kubeadm": {"encryption_algorithm": "RSA", "ignore_preflight_errors": "NumCPU",
                                         "addons": []}}) == [
        "kubeadm.encryption_algorithm: must be one of RSA-2048, RSA-3072, RSA-4096, ECDSA-P256, ECDSA-P384, not 'RSA'",
        "kubeadm.ignore_preflight_errors: must be a list of kubeadm preflight check names (like NumCPU), not 'NumCPU'",
        "kubeadm.addons: unknown field; known: kube_proxy, coredns, encryption_algorithm, ignore_preflight_errors"]
    assert problems({**good(key), "kubeadm": {}}) == ["kubeadm: only for mode: kubeadm (this inventory's mode is binaries)"]
