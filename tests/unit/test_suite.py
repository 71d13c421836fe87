"""The suite runner's lock and resume, without a cluster."""

import subprocess
import sys
import time

import pandas as pd
import pytest

from kdlib.experiments.microbench import files
from kdlib.errors import SuiteBusyError
from kdlib.experiments.microbench import SuiteParams, suite
from kdlib.experiments import runner
from kdlib.experiments.microbench.files import RunKey

from ..helpers import REPO

HOLD_LOCK = """
import time
from kdlib.experiments.runner import suite_lock
with suite_lock("holder-run"):
    print("locked", flush=True)
    time.sleep(60)
"""


@pytest.fixture(autouse=True)
def private_lock(tmp_path, monkeypatch):
    """A lock of the tests' own, so that a suite running on this machine does not interfere."""
    monkeypatch.setenv("KDLIB_SUITE_LOCK", str(tmp_path / "suite.lock"))


def test_a_second_suite_is_refused_at_once():
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        with pytest.raises(SuiteBusyError, match=r"another experiment suite is running .*holder-run"):
            with suite.suite_lock("second"):
                pass
        assert time.monotonic() - started < 1
    finally:
        holder.kill()
        holder.wait()
    with suite.suite_lock("third"):  # released when its holder dies
        pass


def test_finished_runs_are_resumed_without_a_cluster(tmp_path, monkeypatch):
    params = SuiteParams(run_id="done", benches=("scale-pods",), scale_pods=(5, 10),
                         baselines=("k8s", "k8s+", "kd", "kd+"), real_nodes=0)
    for scale in (5, 10):
        key = RunKey("scale-pods", "k8s+", scale)
        files.write_run(files.run_dir("scale-pods", "done", tmp_path), key, scale * 1000,
                          pd.DataFrame(), {}, {})

    def no_cluster(*args, **kwargs):
        raise AssertionError("a cluster was opened although every run had finished")

    from kdlib.cluster.local import LocalCluster

    monkeypatch.setattr(LocalCluster, "_start", no_cluster)
    outcome = suite.run_suite(params, root=tmp_path, progress=False)
    assert [(o.item.scale, o.status, o.total_s) for o in outcome.outcomes] == [(5, "resumed", 0.005),
                                                                              (10, "resumed", 0.01)]
    record = runner.load("done", tmp_path)
    assert record["state"] == "finished" and set(record["not_measured"]) == {"k8s", "kd", "kd+"}
    assert record["finished_runs"] == {"scale-pods": 2}
    assert record["provenance"]["git_revision"]


def test_every_attempt_is_kept_with_its_end_state(tmp_path):
    record = runner.SuiteRecord("r", "microbench", tmp_path)
    record.begin({"a": 1}, {})
    record.end(KeyboardInterrupt())
    record = runner.SuiteRecord("r", "microbench", tmp_path)
    record.begin({"a": 1}, {})
    record.end(RuntimeError("disk full\nmore"))
    loaded = runner.load("r", tmp_path)
    assert [(a["state"], a["reason"]) for a in loaded["attempts"]] == [
        ("interrupted", "SIGINT"), ("failed", "RuntimeError: disk full")]
    assert loaded["state"] == "failed"


def test_a_running_record_whose_process_is_gone_reads_as_killed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = runner.SuiteRecord("k", "microbench", tmp_path)
    record.begin({}, {})
    record.data["attempts"][-1]["pid"] = dead.pid
    record.write()
    assert runner.load("k", tmp_path)["state"] == "killed"


def test_resuming_with_other_parameters_is_refused_naming_them(tmp_path, monkeypatch):
    """Issue 19: a result's parameters are part of its identity (the microbenchmarks too)."""
    params = SuiteParams(run_id="made", benches=("scale-pods",), baselines=("k8s+",), scale_pods=(5,))
    key = RunKey("scale-pods", "k8s+", 5)
    meta = {"backend": "local", "nodes": 20, "settle_s": 2.0, "timeout_s": params.timeout_for(
        suite.BENCHES["scale-pods"].workload(5))}
    files.write_run(files.run_dir("scale-pods", "made", tmp_path), key, 5000, pd.DataFrame(), meta, {})
    other = SuiteParams(run_id="made", benches=("scale-pods",), baselines=("k8s+",), scale_pods=(5,),
                        nodes=7, settle_s=0.0)
    with pytest.raises(suite.ConfigError, match=r"nodes: 20 → 7; settle_s: 2\.0 → 0\.0.*new run_id"):
        suite.run_suite(other, root=tmp_path, progress=False)
    assert not (tmp_path / "suites" / "made.json").exists()  # refused before anything ran or was recorded


@pytest.mark.parametrize("mode", ["binaries", "kubeadm"])
def test_a_run_on_ssh_kubelets_without_kwok_workers_resumes_with_its_own_parameters(tmp_path, mode):
    """Such a cluster has no kwok node, so its runs record nodes: 0; the suite that made them
    resumes them (it did not: 0 was compared with the parameters' 20 kwok nodes)."""
    import yaml

    key_file = tmp_path / "id"
    key_file.write_text("a key\n")
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump({"cluster": "c", "mode": mode, "key": str(key_file),
                                    "control_plane": {"name": "n0", "address": "10.0.0.1"},
                                    "workers": [{"name": "n1", "address": "10.0.0.2", "kubelet": True}]}))
    params = SuiteParams(run_id="ssh-made", backend="ssh", inventory=str(path), benches=("scale-pods",),
                         baselines=("k8s",), scale_pods=(2,))
    meta = {"backend": "ssh", "nodes": 0, "settle_s": params.settle_s,
            "timeout_s": params.timeout_for(suite.BENCHES["scale-pods"].workload(2))}
    files.write_run(files.run_dir("scale-pods", "ssh-made", tmp_path), RunKey("scale-pods", "k8s", 2), 2000,
                    pd.DataFrame(), meta, {})
    outcome = suite.run_suite(params, root=tmp_path, progress=False)  # no cluster: every run is finished
    assert [(o.item.baseline, o.status) for o in outcome.outcomes] == [("k8s", "resumed")]


def test_the_last_run_on_a_cluster_is_left_to_the_clusters_stop(monkeypatch):
    """Every run but a cluster's last is cleaned up; the last one's workload goes with the cluster."""
    from kdlib.experiments.microbench import measure
    from kdlib.experiments.microbench.spec import RunItem

    class Cluster:
        class info:
            real_node_names: list[str] = []

    item = RunItem("scale-funcs", "k8s+", 3, 0)
    cleaned = []
    monkeypatch.setattr(suite, "_measure_one", lambda *args: suite.RunOutcome(item, "measured", 1.0, "", {}))
    monkeypatch.setattr(measure, "clean", lambda api, namespace, timeout, settle: cleaned.append(namespace) or 0.0)
    params = SuiteParams(run_id="t", real_nodes=0)
    bar = type("Bar", (), {"set_description_str": lambda *a, **k: None})()
    outcome = suite.SuiteOutcome("t")
    kept = suite._run_one(Cluster(), None, params, item, outcome, None, bar)
    assert cleaned == ["kdlib-scale-funcs"] and "clean" in kept.phases
    last = suite._run_one(Cluster(), None, params, item, outcome, None, bar, cluster_stops_next=True)
    assert cleaned == ["kdlib-scale-funcs"] and last.phases["clean"] == 0.0 and last.status == "measured"
