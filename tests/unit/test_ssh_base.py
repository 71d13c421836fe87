"""What both SSH cluster modes share (kdlib.cluster.ssh.base): hosts cleaned only under the
cluster's lock, workers before the control plane, status from every host. Test doubles
stand in for the hosts; nothing connects."""

from __future__ import annotations

import pytest

from kdlib.cluster.marker import MARKER
from kdlib.cluster.ssh import base, inventory
from kdlib.cluster.ssh.cluster import SshCluster
from kdlib.cluster.ssh.kubeadm_cluster import KubeadmCluster
from kdlib.cluster.ssh.remote import GroupResult
from kdlib.errors import HostUnreachable, RemoteError


class _Remote:
    def __init__(self, name: str) -> None:
        self.host = type("Host", (), {"name": name})()


class _Hosts:
    """Hosts that record which were asked, in which calls, and fail where told."""

    def __init__(self, names: list[str], failing: tuple[str, ...] = ()) -> None:
        self.remotes = {name: _Remote(name) for name in names}
        self.failing = failing
        self.calls: list[list[str]] = []
        self.closed = False

    def each(self, function, *, hosts=None):
        names = list(self.remotes if hosts is None else hosts)
        self.calls.append(names)
        return GroupResult({n: RemoteError(n, "clean", "refused") if n in self.failing else function(self.remotes[n])
                            for n in names})

    def close(self) -> None:
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Lock:
    released = False

    def release(self) -> None:
        self.released = True


def _inventory(tmp_path, mode: str) -> inventory.Inventory:
    key = tmp_path / "key"
    key.write_text("not used: nothing connects\n")
    return inventory.parse({"mode": mode, "key": str(key), "cluster": "c",
                            "control_plane": {"name": "cp", "address": "10.0.0.1"},
                            "workers": [{"name": "w1", "address": "10.0.0.2", "kubelet": True},
                                        {"name": "w2", "address": "10.0.0.3", "kubelet": True}]})


@pytest.mark.parametrize("mode", ["binaries", "kubeadm"])
def test_a_mode_never_cleans_hosts_without_the_clusters_lock(tmp_path, mode):
    inv = _inventory(tmp_path, mode)
    cluster = (SshCluster if mode == "binaries" else KubeadmCluster)(inv, state_dir=tmp_path / "state")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / MARKER).write_text("")
    cluster.hosts = hosts = _Hosts(["cp", "w1", "w2"])  # e.g. the lock was busy: another run's hosts
    cluster.stop()
    assert hosts.calls == [] and hosts.closed and (tmp_path / "state").is_dir()


@pytest.mark.parametrize("mode", ["binaries", "kubeadm"])
def test_a_stop_under_the_lock_cleans_the_workers_first_then_the_control_plane(tmp_path, mode, monkeypatch):
    inv = _inventory(tmp_path, mode)
    cls = SshCluster if mode == "binaries" else KubeadmCluster
    cleaned: list[str] = []
    monkeypatch.setattr(cls, "clean_host", lambda self, remote: cleaned.append(remote.host.name))
    cluster = cls(inv, state_dir=tmp_path / "state")
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / MARKER).write_text("")
    cluster.hosts, cluster.lock = _Hosts(["cp", "w1", "w2"], failing=("w2",)), _Lock()
    lock = cluster.lock
    with pytest.raises(RemoteError, match=r"^w2: clean-up incomplete: w2: "):
        cluster.stop()
    assert cleaned == ["w1", "cp"] and lock.released and not (tmp_path / "state").exists()


def test_status_names_unreachable_hosts_and_says_whether_anything_runs(tmp_path):
    inv = _inventory(tmp_path, "binaries")

    class Hosts(_Hosts):
        def each(self, function, *, hosts=None):
            return GroupResult({"cp": {"etcd": 12}, "w1": {"kubelet": None},
                                "w2": HostUnreachable("w2", "sh", "cannot connect")})

    found = base.status(inv, Hosts([]), lambda remote: {}, running=lambda procs: any(procs.values()),
                        kubeconfig=tmp_path / "none", mode="test")
    assert found == {"cluster": "c", "mode": "test", "running": True, "kubeconfig": None,
                     "hosts": {"cp": {"etcd": 12}, "w1": {"kubelet": None}, "w2": "unreachable: cannot connect"}}
