"""The microbenchmark notebook end to end on the local cluster, at a tiny scale."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from kdlib import results

from ..conftest import REPO, assert_clean, our_processes

TINY = "{scale_pods: [6], scale_funcs: [3], scale_nodes: [2], nodes: 2, settle_s: 0.5, real_nodes: 0}"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """Results and cluster state of these tests live in a temporary directory."""
    root = tmp_path_factory.mktemp("microbench")
    env = {**os.environ, "KDLIB_RESULTS_DIR": str(root / "results"),
           "KDLIB_STATE_DIR": str(root / "state" / "local")}
    return root, env


def _papermill(output: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "papermill", str(REPO / "notebooks" / "microbench.ipynb"), str(output),
         "--cwd", str(REPO), *extra], env=env, capture_output=True, text=True, timeout=900)


def test_notebook_measures_and_resumes(binaries, sandbox):
    root, env = sandbox
    first = _papermill(root / "first.ipynb", env, "-p", "run_id", "tiny", "-y", TINY)
    assert first.returncode == 0, first.stderr[-3000:]
    results_root = root / "results"
    expected = {"scale-pods": (6, 9), "scale-funcs": (3, 10), "scale-nodes": (2, 11)}
    for bench, (scale, figure) in expected.items():
        directory = results.run_dir(bench, "tiny", results_root)
        key = results.RunKey(bench, "k8s+", scale)
        total_us = results.parse_log(results.log_path(directory, key).read_text())
        timeline = results.load_timelines(bench, "tiny", results_root)
        pods = {"scale-pods": 6, "scale-funcs": 3, "scale-nodes": 10}[bench]
        ready = sorted(timeline[timeline["stage"] == "ready"]["t"])
        assert len(ready) == pods
        assert total_us == round(ready[-(-9 * pods // 10) - 1] * 1e6)  # the p90 pod of the timeline
        assert ready[0] >= 0.2  # simulated sandbox: nothing Ready before 200 ms
        meta = json.loads(results.meta_path(directory, key).read_text())
        assert meta["versions"]["kube-apiserver"].startswith("Kubernetes v1.32")
        assert meta["provenance"]["git_revision"] and meta["pods"] == pods
        for kind in ("e2e", "stages"):
            assert (directory / f"fig{figure}_{kind}.svg").stat().st_size > 1000
            assert (directory / f"fig{figure}_{kind}.html").is_file()
        # The executed notebook shows the measured value.
        notebook = (root / "first.ipynb").read_text()
        assert f"{total_us / 1e6:.2f}" in notebook
    suite = results.load_suite("tiny", results_root)
    assert suite["state"] == "finished"
    assert {o["status"] for o in suite["outcomes"]} == {"measured"}
    assert set(suite["not_measured"]) == {"k8s", "kd", "kd+"}
    executed = nbformat.read(root / "first.ipynb", as_version=4)
    assert "not measured" in json.dumps(executed.cells[-3]["outputs"]) or "needs real kubelets" in notebook

    logs = sorted(results_root.glob("*/tiny/e2e.*.log"))
    mtimes = [p.stat().st_mtime_ns for p in logs]
    second = _papermill(root / "second.ipynb", env, "-p", "run_id", "tiny", "-y", TINY)
    assert second.returncode == 0, second.stderr[-3000:]
    assert {o["status"] for o in results.load_suite("tiny", results_root)["outcomes"]} == {"resumed"}
    assert [p.stat().st_mtime_ns for p in logs] == mtimes


def test_notebook_without_run_id_fails_before_provisioning(sandbox):
    root, env = sandbox
    result = _papermill(root / "norun.ipynb", env, "-y", "{scale_pods: [0]}")
    assert result.returncode != 0
    assert "run_id: required" in result.stderr and "scale-pods" in result.stderr
    assert not (root / "state").exists() or our_processes(root / "state") == []


def test_sigint_during_an_experiment_leaves_a_clean_cluster(binaries, sandbox):
    root, env = sandbox
    run = subprocess.Popen(
        [sys.executable, "-m", "kdlib", "run", "--run-id", "interrupted", "--bench", "scale-pods",
         "--scales", "scale-pods=400", "--nodes", "4", "--baseline", "k8s+"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    buffer = ""
    while "scaling to 400 pods" not in buffer:  # tqdm redraws with \r, not newlines
        chunk = run.stderr.read(1)
        assert chunk, f"the run ended early: {buffer[-2000:]}"
        buffer += chunk
    state = root / "state"
    ports = json.loads((state / "suite" / "cluster.json").read_text())["ports"]
    run.send_signal(signal.SIGINT)
    assert run.wait(timeout=120) == 130
    directory = results.run_dir("scale-pods", "interrupted", root / "results")
    assert not results.is_finished(directory, results.RunKey("scale-pods", "k8s+", 400))
    assert not list(directory.glob(".*.partial")) if directory.exists() else True
    assert results.load_suite("interrupted", root / "results")["state"] == "interrupted"
    assert_clean(state / "suite", ports)


def test_kd_plus_runs_on_its_own_cluster_when_binaries_are_given(binaries, sandbox):
    """The kd+ code path, fed our vanilla binaries as if they were Kd's (a test of the path only)."""
    root, env = sandbox
    result = subprocess.run(
        [sys.executable, "-m", "kdlib", "run", "--run-id", "kdpath", "--bench", "scale-pods",
         "--scales", "scale-pods=4", "--nodes", "2", "--baseline", "k8s+", "--baseline", "kd+",
         "--kd-bin-dir", str(binaries.directory), "--settle", "0.2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    record = results.load_suite("kdpath", root / "results")
    assert set(record["clusters"]) == {"vanilla", "kd"} and record["clusters"]["kd"]["kd"] is True
    assert record["not_measured"] == {}
    directory = results.run_dir("scale-pods", "kdpath", root / "results")
    for baseline, kd in (("k8s+", False), ("kd+", True)):
        key = results.RunKey("scale-pods", baseline, 4)
        assert results.is_finished(directory, key)
        assert json.loads(results.meta_path(directory, key).read_text())["kd"] is kd
