"""The microbenchmark notebook end to end on the local cluster, at a tiny scale."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import sys
from pathlib import Path

import nbformat
import pytest

from kdlib.experiments import runner
from kdlib.experiments.microbench import files

from ..helpers import REPO, assert_clean, our_processes, read_stderr_until

TINY = "{scale_pods: [6], scale_funcs: [3], scale_nodes: [2], nodes: 2, settle_s: 0.5, real_nodes: 0}"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """Results and cluster state of these tests live in a temporary directory."""
    root = tmp_path_factory.mktemp("microbench")
    env = {**os.environ, "KDLIB_RESULTS_DIR": str(root / "results"),
           "KDLIB_STATE_DIR": str(root / "state")}
    return root, env


def _papermill(output: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "papermill", str(REPO / "notebooks" / "microbench.ipynb"), str(output),
         "--cwd", str(REPO), *extra], env=env, capture_output=True, text=True, timeout=900)


def _run_until(env: dict[str, str], line: str, *args: str) -> subprocess.Popen:
    """Start ``python -m kdlib run ARGS`` and return once its stderr shows ``line``."""
    run = subprocess.Popen([sys.executable, "-m", "kdlib", "run", *args], cwd=REPO, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    read_stderr_until(run, line)
    return run


def _scale_pods_until_first(env: dict[str, str], run_id: str, scales: tuple[int, ...], nodes: int) -> subprocess.Popen:
    """A k8s+ scale-pods suite at ``scales`` on ``nodes`` fake nodes, returned once its first scale begins."""
    return _run_until(env, f"scaling to {scales[0]} pods", "--run-id", run_id, "--bench", "scale-pods",
                      "--scales", "scale-pods=" + ",".join(map(str, scales)), "--nodes", str(nodes),
                      "--baseline", "k8s+")


@pytest.mark.slow
def test_notebook_measures_and_resumes(binaries, sandbox):
    root, env = sandbox
    first = _papermill(root / "first.ipynb", env, "-p", "run_id", "tiny", "-y", TINY)
    assert first.returncode == 0, first.stderr[-3000:]
    results_root = root / "results"
    expected = {"scale-pods": (6, 9), "scale-funcs": (3, 10), "scale-nodes": (2, 11)}
    for bench, (scale, figure) in expected.items():
        directory = files.run_dir(bench, "tiny", results_root)
        key = files.RunKey(bench, "k8s+", scale)
        total_us = files.parse_log(files.log_path(directory, key).read_text())
        timeline = files.load_timelines(bench, "tiny", results_root)
        timeline = timeline[timeline["baseline"] == "k8s+"]  # k8s+u ran beside it (its own cluster)
        pods = {"scale-pods": 6, "scale-funcs": 3, "scale-nodes": 10}[bench]
        ready = sorted(timeline[timeline["stage"] == "ready"]["t"])
        assert len(ready) == pods
        assert total_us == round(ready[(90 * pods) // 100] * 1e6)  # the p90 pod of the timeline, the original's index
        assert ready[0] >= 0.2  # simulated sandbox: nothing Ready before 200 ms
        meta = json.loads(files.meta_path(directory, key).read_text())
        assert meta["versions"]["kube-apiserver"].startswith("Kubernetes v1.32")
        assert meta["provenance"]["git_revision"] and meta["pods"] == pods
        assert meta["client_limits"]["kube-controller-manager"].startswith("defaults")
        assert meta["usage"]["cpu_s"]["kube-apiserver"] > 0 and meta["usage"]["api_writes"]["POST pods"] >= pods
        # The unthrottled control ran on a control plane of its own, its flags recorded.
        unthrottled = json.loads(files.meta_path(directory, files.RunKey(bench, "k8s+u", scale)).read_text())
        assert unthrottled["client_limits"]["kube-controller-manager"] == "--kube-api-qps=10000 --kube-api-burst=10000"
        assert unthrottled["usage"]["cpu_s"]["kube-controller-manager"] > 0
        # The machine before (one short look: the tests do not wait) and during the run.
        assert set(meta["machine"]) == {"before", "during", "busy"}
        assert 0 <= meta["machine"]["before"]["cpu_idle_pct"] <= 100 and meta["machine"]["during"]["seconds"] > 0
        for kind in ("e2e", "stages"):
            assert (directory / f"fig{figure}_{kind}.svg").stat().st_size > 1000
            assert (directory / f"fig{figure}_{kind}.html").is_file()
        # The executed notebook shows the measured value.
        notebook = (root / "first.ipynb").read_text()
        assert f"{total_us / 1e6:.2f}" in notebook
    suite = runner.load("tiny", results_root)
    assert suite["state"] == "finished"
    assert set(suite["clusters"]) == {"vanilla", "vanilla-unthrottled"}
    assert {o["status"] for o in suite["attempts"][-1]["outcomes"]} == {"measured"}
    assert set(suite["not_measured"]) == {"k8s", "kd", "kd+"}
    executed = nbformat.read(root / "first.ipynb", as_version=4)
    not_measured_cell = next(c for c in executed.cells if c.cell_type == "code" and "not_measured(b)" in c.source)
    shown = json.dumps(not_measured_cell["outputs"])
    assert "needs real kubelets" in shown and "needs Kd binaries" in shown
    findings = next(c for c in executed.cells if c.cell_type == "code" and 'report.show("scale-pods")' in c.source)
    assert "pods/s" in json.dumps(findings["outputs"]) or "p90 Ready after" in json.dumps(findings["outputs"])
    assert "k8s+ (unthrottled)" in json.dumps(findings["outputs"])

    logs = sorted(results_root.glob("*/tiny/e2e.*.log"))
    mtimes = [p.stat().st_mtime_ns for p in logs]
    second = _papermill(root / "second.ipynb", env, "-p", "run_id", "tiny", "-y", TINY)
    assert second.returncode == 0, second.stderr[-3000:]
    record = runner.load("tiny", results_root)
    assert {o["status"] for o in record["attempts"][-1]["outcomes"]} == {"resumed"}
    assert [a["state"] for a in record["attempts"]] == ["finished", "finished"]
    assert [p.stat().st_mtime_ns for p in logs] == mtimes


def test_notebook_without_run_id_fails_before_provisioning(sandbox):
    root, env = sandbox
    result = _papermill(root / "norun.ipynb", env, "-y", "{scale_pods: [0]}")
    assert result.returncode != 0
    assert "run_id: required" in result.stderr and "scale_pods[0]: 0 is not a positive integer" in result.stderr
    assert not (root / "state").exists() or our_processes(root / "state") == []


@pytest.mark.destructive
def test_sigint_during_an_experiment_leaves_a_clean_cluster(binaries, sandbox):
    root, env = sandbox
    run = _scale_pods_until_first(env, "interrupted", (400,), nodes=4)
    state = root / "state"
    ports = json.loads((state / "suite" / "cluster.json").read_text())["ports"]
    run.send_signal(signal.SIGINT)
    assert run.wait(timeout=120) == 130
    directory = files.run_dir("scale-pods", "interrupted", root / "results")
    assert files.finished_total(directory, files.RunKey("scale-pods", "k8s+", 400)) is None
    assert not list(directory.glob(".*.partial")) if directory.exists() else True
    record = runner.load("interrupted", root / "results")
    assert record["state"] == "interrupted" and record["attempts"][-1]["reason"] == "SIGINT"
    assert_clean(state / "suite", ports)


@pytest.mark.slow
def test_kd_plus_runs_on_its_own_cluster_when_binaries_are_given(binaries, sandbox):
    """The kd+ code path, fed our vanilla binaries as if they were Kd's (a test of the path only)."""
    root, env = sandbox
    result = subprocess.run(
        [sys.executable, "-m", "kdlib", "run", "--run-id", "kdpath", "--bench", "scale-pods",
         "--scales", "scale-pods=4", "--nodes", "2", "--baseline", "k8s+", "--baseline", "kd+",
         "--kd-bin-dir", str(binaries.directory), "--settle", "0.2"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    record = runner.load("kdpath", root / "results")
    assert set(record["clusters"]) == {"vanilla", "kd"} and record["clusters"]["kd"]["kd"] is True
    assert record["not_measured"] == {}
    directory = files.run_dir("scale-pods", "kdpath", root / "results")
    for baseline, kd in (("k8s+", False), ("kd+", True)):
        key = files.RunKey("scale-pods", baseline, 4)
        assert files.finished_total(directory, key) is not None
        assert json.loads(files.meta_path(directory, key).read_text())["kd"] is kd


@pytest.mark.destructive
@pytest.mark.parametrize("component", ["kwok", "kube-apiserver"])
def test_a_component_that_dies_mid_run_is_named_and_ends_the_suite(binaries, sandbox, component):
    root, env = sandbox
    run_id = f"dies-{component}"
    run = _scale_pods_until_first(env, run_id, (400, 20), nodes=4)
    state = root / "state" / "suite"
    ports = json.loads((state / "cluster.json").read_text())["ports"]
    victim = int((state / "run" / f"{component}.pid").read_text())
    os.kill(victim, signal.SIGKILL)
    started = time.monotonic()
    _, stderr = run.communicate(timeout=180)
    assert run.returncode == 1, stderr[-2000:]
    assert time.monotonic() - started < 60, "the death was not noticed at once"
    assert f"{component}: (pid {victim}) exited with status -9" in stderr
    record = runner.load(run_id, root / "results")
    assert record["state"] == "failed" and component in record["attempts"][-1]["reason"]
    outcomes = record["attempts"][-1]["outcomes"]
    assert [(o["scale"], o["status"]) for o in outcomes] == [(400, "failed")]  # the 20-pod run never started
    assert component in outcomes[0]["detail"]
    assert (root / "results" / "suites" / f"{run_id}.logs" / "vanilla" / f"{component}.log").is_file()
    assert_clean(state, ports)


@pytest.mark.destructive
def test_a_sigkilled_suite_is_seen_by_local_status_and_cleared_by_down(binaries, sandbox):
    root, env = sandbox
    run = _scale_pods_until_first(env, "killed", (300,), nodes=2)
    run.kill()
    run.wait()
    state = root / "state" / "suite"
    ports = json.loads((state / "cluster.json").read_text())["ports"]
    assert runner.load("killed", root / "results")["state"] == "killed"
    status = subprocess.run([sys.executable, "-m", "kdlib", "local", "status", "--all"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert status.returncode == 0 and str(state) in status.stdout and "down --all" in status.stderr
    down = subprocess.run([sys.executable, "-m", "kdlib", "local", "down", "--all"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert down.returncode == 0, down.stderr
    assert_clean(state, ports)
