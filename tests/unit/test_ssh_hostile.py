"""Hostile unit tests of the SSH backend's plumbing (no network: nothing is connected)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdlib.cluster.ssh.inventory import Host
from kdlib.cluster.ssh.remote import Hosts


def test_an_empty_host_list_means_no_host_not_every_host():
    # An inventory without kwok workers asks for kwok on hosts=[]: nothing may run anywhere.
    hosts = Hosts([Host("node0", "10.10.1.1", key=None), Host("node1", "10.10.1.2", key=None)])
    called = []
    assert hosts.each(called.append, hosts=[]) == {}
    assert called == []
    assert hosts.run("true", hosts=[]) == {}
    assert sorted(hosts.each(lambda r: r.host.name)) == ["node0", "node1"]  # no list: every host


# -- the notebooks' backend and inventory parameters (validated before anything is provisioned) -----

def _write_inventory(tmp_path, **worker) -> str:
    import yaml

    (tmp_path / "key").write_text("not a key: never read, no host is reached\n")
    path = tmp_path / "hosts.yaml"
    path.write_text(yaml.safe_dump({"cluster": "x", "key": str(tmp_path / "key"),
                                    "control_plane": {"name": "n0", "address": "10.0.0.1"},
                                    "workers": [{"name": "n1", "address": "10.0.0.2", **worker}]}))
    return str(path)


def _problems(**given) -> str:
    from kdlib.errors import ConfigError
    from kdlib.experiments.microbench.spec import SuiteParams

    with pytest.raises(ConfigError) as caught:
        SuiteParams(run_id="x", **given)
    return str(caught.value)


@pytest.mark.parametrize("value", [5, ["hosts.yaml"], {"a": 1}])
def test_an_inventory_that_is_no_path_is_named(value):
    assert f"inventory: must be the path of a YAML file, not {value!r}" in _problems(backend="ssh", inventory=value)


def test_an_unreadable_inventory_names_its_file(tmp_path):
    missing = tmp_path / "nowhere.yaml"
    assert f"inventory: {missing}: (file): cannot read it" in _problems(backend="ssh", inventory=str(missing))


def test_an_inventory_without_kwok_workers_runs_k8s_and_names_why_not_k8s_plus(tmp_path):
    from kdlib.experiments.microbench import suite
    from kdlib.experiments.microbench.spec import SuiteParams

    params = SuiteParams(run_id="x", backend="ssh", inventory=_write_inventory(tmp_path, kubelet=True),
                                       baselines=["k8s", "k8s+"], benches=["scale-pods"], scale_pods=[3])
    items, not_measured = suite.plan(params)  # opens no connection
    assert [(i.baseline, i.scale) for i in items] == [("k8s", 3)]
    assert not_measured == {"k8s+": f"needs kwok nodes: no worker of {params.inventory} has kwok_nodes"}


def test_the_ssh_backends_open_the_unthrottled_control_plane_for_k8s_plus_u(tmp_path):
    from kdlib.experiments.microbench import suite
    from kdlib.experiments.microbench.spec import SuiteParams

    params = SuiteParams(run_id="x", backend="ssh", inventory=_write_inventory(tmp_path, kwok_nodes=5),
                                       baselines=["k8s+", "k8s+u"], benches=["scale-pods"], scale_pods=[3])
    clusters = suite._clusters(params)  # opens no connection
    assert {p: c.unthrottled for p, c in clusters.items()} == {"vanilla": False, "vanilla-unthrottled": True}
    inventory = _write_inventory(tmp_path, kubelet=True)
    kubeadm_mode = tmp_path / "kubeadm.yaml"
    kubeadm_mode.write_text(Path(inventory).read_text() + "mode: kubeadm\n")
    params = SuiteParams(run_id="x", backend="ssh", inventory=str(kubeadm_mode),
                                       baselines=["k8s", "k8s+u"], benches=["scale-pods"], scale_pods=[3])
    clusters = suite._clusters(params)
    assert clusters["vanilla-unthrottled"].settings.unthrottled is True
    assert not clusters["vanilla"].settings.unthrottled
    items, not_measured = suite.plan(params, clusters)
    assert [i.baseline for i in items] == ["k8s"] and "needs kwok nodes" in not_measured["k8s+u"]


# -- a kubelet worker's prerequisites, checked by the real script in a shell here ---------------------

class _ShellHere:
    """A test double of :class:`Remote`: runs the command in a local shell with ``path`` as PATH."""

    def __init__(self, path: str) -> None:
        self.host = Host("node3", "10.10.1.4", key=None, kubelet=True)
        self.path = path

    def run(self, command: str, *, timeout: float | None = None, check: bool = True):
        import subprocess

        from kdlib.cluster.ssh.remote import CommandResult

        done = subprocess.run(["/bin/sh", "-c", command], env={"PATH": self.path}, capture_output=True, text=True,
                              timeout=timeout)
        return CommandResult(self.host.name, command, done.returncode, done.stdout, done.stderr, 0.0)


def test_a_worker_whose_shell_finds_no_containerd_is_named_with_what_is_missing(tmp_path):
    import os
    import shutil

    from kdlib.cluster.ssh import kubelets
    from kdlib.errors import RemoteError

    wanted = tuple(dict.fromkeys(("sh", "tr", "grep", "id", "cat", *kubelets.REQUIRED_COMMANDS)))
    if any(shutil.which(c) is None for c in wanted):
        pytest.skip("this machine lacks a kubelet worker's commands")
    for name in wanted:
        if name != "containerd":
            os.symlink(shutil.which(name), tmp_path / name)
    with pytest.raises(RemoteError) as caught:
        kubelets.check(_ShellHere(str(tmp_path)))
    message = str(caught.value)
    assert message.startswith("node3: missing: containerd (") and "\n" not in message, message


def test_pod_process_starts_that_cannot_be_read_on_a_worker_are_reported(tmp_path, caplog):
    from kdlib.cluster.ssh import inventory
    from kdlib.cluster.ssh.cluster import SshCluster
    from kdlib.cluster.ssh.remote import GroupResult
    from kdlib.errors import HostUnreachable

    inv = inventory.parse({"cluster": "x", "key": None, "use_ssh_config": True,
                           "control_plane": {"name": "n0", "address": "10.0.0.1"},
                           "workers": [{"name": "n1", "address": "10.0.0.2", "kubelet": True},
                                       {"name": "n2", "address": "10.0.0.3", "kubelet": True}]})
    cluster = SshCluster(inv, state_dir=tmp_path / "state")

    class _Hosts:  # a test double: n1 answers, n2 cannot be reached
        def each(self, function, *, hosts=None):
            return GroupResult({"n1": {"uid-1": [1.0, 2.0]},
                                "n2": HostUnreachable("n2", "sh -c ...", "cannot connect to root@10.0.0.3:22")})

    cluster.hosts = _Hosts()
    with caplog.at_level("WARNING", logger="kdlib.cluster.ssh.base"):
        assert cluster.pod_process_starts() == {"uid-1": [1.0, 2.0]}
    assert any("n2" in r.getMessage() and "process start" in r.getMessage() for r in caplog.records), caplog.text


def test_a_hosts_boot_is_placed_on_this_machines_monotonic_clock_without_wall_clocks():
    """Process start times on a worker count from its boot; its boot on this machine's clock is read
    by a round trip, so a worker whose wall clock is off (an emulated VM drifted a second) still agrees."""
    import os
    import time

    from kdlib.cluster.ssh import kubelets

    here = _ShellHere(os.environ["PATH"])  # this machine: its boot is known exactly
    boot = time.monotonic() - time.clock_gettime(time.CLOCK_BOOTTIME)
    assert abs(kubelets.host_boot(here) - boot) < 0.05


def test_a_host_whose_wall_clock_is_off_is_placed_by_the_round_trip_and_named(caplog, monkeypatch):
    import dataclasses
    import os
    import re
    import time

    from kdlib.cluster.ssh import kubelets

    class _ClockOff(_ShellHere):  # its wall clock 1.3 s ahead, as an emulated VM's drifted
        def run(self, command, **kwargs):
            result = super().run(command, **kwargs)
            uptime, wall = result.stdout.split()
            return dataclasses.replace(result, stdout=f"{uptime} {float(wall) + 1.3:.9f}\n")

    monkeypatch.setattr(kubelets, "_CLOCK_WARNED", set())  # warned once per host and process
    boot = time.monotonic() - time.clock_gettime(time.CLOCK_BOOTTIME)
    with caplog.at_level("WARNING", logger="kdlib.cluster.ssh.kubelets"):
        before = time.monotonic()
        placed = kubelets.host_boot(_ClockOff(os.environ["PATH"]))
        trip = time.monotonic() - before
    assert abs(placed - boot) <= trip / 2 + 0.011, (placed - boot, trip)  # what a round trip can promise
    assert re.search(r"node3: its clock differs from this machine's by 1\.[23]\d* s", caplog.text), caplog.text
