"""The microbenchmark notebook with backend="ssh" on three namespace hosts, at a tiny scale.

Control plane on host 1; kwok on hosts 2 and 3 (sharing the fake nodes 2:1); a real
kubelet with containerd on host 3. `k8s` runs real containers on host 3, `k8s+` runs on
kwok; both are measured in Figures 9 and 10 (Figure 11: k8s+ on 4 fake nodes), the
executed notebook is what the book takes, and nothing of the cluster is left on any host.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kdlib.cluster.local import hostnet
from kdlib.cluster.ssh import inventory
from kdlib.cluster.ssh.kubelets import Worker
from kdlib.experiments import pages, runner
from kdlib.experiments.microbench import files
from kdlib.publish import book

from ...helpers import REPO, assert_sysctls_back, our_processes
from .test_ssh_cluster import cluster_inventory

REASON = hostnet.why_not_real_nodes()  # the same needs as a local real node: containerd, runc, CNI, cgroups
pytestmark = [pytest.mark.integration, pytest.mark.ssh, pytest.mark.needs_binaries]


def _inventory(hosts) -> inventory.Inventory:
    return inventory.parse({
        "cluster": "kdt", "key": str(hosts.key), "known_hosts": str(hosts.known_hosts),
        "connect_timeout": 5, "command_timeout": 120, "remote_dir": str(hosts.workdir / "remote"),
        "control_plane": {"name": hosts[0].name, "address": hosts[0].address},
        "workers": [{"name": hosts[1].name, "address": hosts[1].address, "kwok_nodes": 2},
                    {"name": hosts[2].name, "address": hosts[2].address, "kwok_nodes": 1, "kubelet": True}],
    }, "test-hosts")


@pytest.mark.slow
@pytest.mark.real_nodes  # a kubelet worker (the trace test below runs kwok only)
@pytest.mark.skipif(REASON is not None, reason=f"cannot run a kubelet here: {REASON}")
def test_notebook_on_ssh_hosts_measures_k8s_on_a_real_kubelet_and_k8s_plus_on_kwok(ssh_hosts, binaries, tmp_path):
    inv = _inventory(ssh_hosts)
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inv.to_data()))
    sysctls_before = hostnet.read_sysctls()
    root = tmp_path / "results"
    env = {**os.environ, "KDLIB_RESULTS_DIR": str(root), "KDLIB_STATE_DIR": str(tmp_path / "state")}
    params = ("{scale_pods: [3], scale_funcs: [2], scale_nodes: [4], nodes: 3, settle_s: 0.5, "
              f"baselines: [k8s, k8s+], backend: ssh, inventory: {path}}}")
    executed = root / "executed" / "tiny-ssh" / "microbench.ipynb"
    executed.parent.mkdir(parents=True)
    run = subprocess.run(
        [sys.executable, "-m", "papermill", str(REPO / "notebooks" / "microbench.ipynb"), str(executed),
         "--cwd", str(REPO), "-p", "run_id", "tiny-ssh", "-y", params],
        env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]

    suite = runner.load("tiny-ssh", root)
    assert suite["state"] == "finished" and suite["not_measured"] == {}
    assert suite["clusters"]["vanilla"]["backend"] == "ssh"
    assert {(o["baseline"], o["status"]) for o in suite["attempts"][-1]["outcomes"]} == {("k8s", "measured"),
                                                                                ("k8s+", "measured")}
    directory = files.run_dir("scale-pods", "tiny-ssh", root)
    for baseline, real_nodes in (("k8s", 1), ("k8s+", 0)):
        key = files.RunKey("scale-pods", baseline, 3)
        assert files.parse_log(files.log_path(directory, key).read_text()) > 0
        meta = json.loads(files.meta_path(directory, key).read_text())
        assert meta["backend"] == "ssh" and meta["real_nodes"] == real_nodes and meta["nodes"] == 3
    timeline = files.load_timelines("scale-pods", "tiny-ssh", root)
    scheduled = timeline[timeline["stage"] == "scheduled"]
    assert set(scheduled[scheduled["baseline"] == "k8s"]["node"]) == {ssh_hosts[2].name}
    assert set(scheduled[scheduled["baseline"] == "k8s+"]["node"]) <= {"kwok-node-0000", "kwok-node-0001",
                                                                      "kwok-node-0002"}
    # The runtime breakdown, read over SSH from the worker's cgroups, in order.
    real = timeline[(timeline["baseline"] == "k8s") & (timeline["kind"] == "Pod")]
    at = real.pivot_table(index="object", columns="stage", values="t")
    assert len(at) == 3 and at[["sandbox", "started"]].notna().all().all()
    assert (at["scheduled"] <= at["sandbox"]).all() and (at["sandbox"] <= at["started"]).all()
    assert (at["started"] <= at["ready"]).all()

    # Figure 11 resized the fake nodes (4, then back): every one Ready under its kwok worker.
    nodes = files.load_timelines("scale-nodes", "tiny-ssh", root)
    assert set(nodes[nodes["stage"] == "scheduled"]["node"]) <= {f"kwok-node-{i:04d}" for i in range(4)}

    # What the book takes: the executed notebooks with every glue key, of these very files.
    reanalysis = subprocess.run(
        [sys.executable, "-m", "papermill", str(REPO / "notebooks" / "reanalysis.ipynb"),
         str(executed.with_name("reanalysis.ipynb")), "--cwd", str(REPO), "-p", "run_id", "tiny-ssh"],
        env=env, capture_output=True, text=True, timeout=300)
    assert reanalysis.returncode == 0, reanalysis.stderr[-3000:]
    source = book.find_source(pages.contents(), "tiny-ssh", root)
    assert source.notebook == executed

    # Nothing left: processes, the worker's files and cgroups, its bridge; the sysctls as before.
    assert our_processes(Path(inv.cluster_dir())) == []
    worker = Worker(inv.host(ssh_hosts[2].name), 0, inv.cluster_dir())
    assert not Path(str(worker.root)).exists()
    assert not list(Path("/sys/fs/cgroup").glob(f"*/{worker.cgroup.lstrip('/')}"))
    assert our_processes(Path(str(worker.root))) == []
    bridge = subprocess.run(["ip", "netns", "exec", ssh_hosts[2].netns, "ip", "link", "show", "kdcni0"],
                            capture_output=True)
    assert bridge.returncode != 0
    assert_sysctls_back(sysctls_before)


@pytest.mark.slow
def test_trace_notebook_on_ssh_hosts_replays_every_invocation(host_factory, binaries, tmp_path):
    from kdlib.experiments.trace import logs as trace_logs, params as trace_params, run as trace_run, schedule

    _, hosts = host_factory(2)
    inv = cluster_inventory(hosts, kwok_nodes=2)
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inv.to_data()))
    root = tmp_path / "results"
    env = {**os.environ, "KDLIB_RESULTS_DIR": str(root), "KDLIB_STATE_DIR": str(tmp_path / "state")}
    # One minute at time_scale 4, no warm-up, a 60-s dispatch timeout: as tests/integration/test_trace.py.
    tiny = (f"{{functions: 10, minutes: 1, warmup_minutes: 0, nodes: 2, timeouts: {{Dr/K8s+: 60}}, time_scale: 4, "
            f"systems: [Dr/K8s+], backend: ssh, inventory: {path}}}")
    done = subprocess.run([sys.executable, "-m", "papermill", str(REPO / "notebooks" / "trace.ipynb"),
                           str(tmp_path / "trace.ipynb"), "--cwd", str(REPO), "-p", "run_id", "tiny-ssh", "-y", tiny],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    directory = trace_run.run_dir("tiny-ssh", root)
    meta = json.loads(trace_run.meta_path(directory, "Dr/K8s+").read_text())
    assert meta["backend"].startswith("ssh ") and meta["time_scale"] == 4
    planned = schedule.build(trace_run.load_trace(trace_params.TraceParams(run_id="x", functions=10, minutes=1,
                                                                           warmup_minutes=0)))
    assert meta["invocations"] == len(planned) == meta["success"] + meta["failed"]
    frame, summary = trace_logs.parse(trace_run.log_path(directory, "Dr/K8s+"))
    assert summary["total"] == len(planned) and meta["peak_ready_pods"] > 0
    assert meta["scale_down"]["pods_left"] == 0
    assert our_processes(Path(inv.cluster_dir())) == []
