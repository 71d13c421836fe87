"""The trace notebook end to end on the local cluster, at a tiny scale, and a clean Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from kdlib.experiments.trace import logs, params as trace_params, run as trace_run, schedule

from ..helpers import REPO, assert_clean, our_processes, read_stderr_until

pytestmark = [pytest.mark.integration, pytest.mark.needs_binaries]
AS_SHIPPED = trace_params.AS_SHIPPED
# One minute of 20 functions (~460 invocations), every one replayed and checked; no warm-up to
# drop; at 4 trace seconds per second (time_scale: 15 s per system). The dispatch timeout is
# 60 s of trace instead of the original's 300: an invocation that gets no pod fails then (it
# is still accounted for), so the replay's tail is not 5 minutes.
TINY_PARAMS = {"functions": 20, "minutes": 1, "warmup_minutes": 0, "nodes": 2,
               "timeouts": {"Dr/K8s+": 60, AS_SHIPPED: 60}, "time_scale": 4}
TINY = json.dumps({**TINY_PARAMS, "systems": ["Kn/K8s", "Kn/Kd", "Dirigent", "Dr/K8s+", AS_SHIPPED, "Dr/Kd+"]})


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    root = tmp_path_factory.mktemp("trace")
    env = {**os.environ, "KDLIB_RESULTS_DIR": str(root / "results"), "KDLIB_STATE_DIR": str(root / "state"),
           "KDLIB_SUITE_LOCK": str(root / "suite.lock")}
    return root, env


@pytest.mark.slow
def test_notebook_replays_every_invocation_and_leaves_nothing(binaries, sandbox):
    root, env = sandbox
    output = root / "executed.ipynb"
    done = subprocess.run([sys.executable, "-m", "papermill", str(REPO / "notebooks" / "trace.ipynb"), str(output),
                           "--cwd", str(REPO), "-p", "run_id", "tiny", "-y", TINY],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    directory = trace_run.run_dir("tiny", root / "results")
    meta = json.loads(trace_run.meta_path(directory, "Dr/K8s+").read_text())
    p = trace_params.TraceParams(run_id="tiny", **TINY_PARAMS)
    planned = schedule.build(trace_run.load_trace(p))
    # Every scheduled invocation is accounted for: success + failure = scheduled.
    assert meta["invocations"] == len(planned) == meta["success"] + meta["failed"]
    frame, summary = logs.parse(trace_run.log_path(directory, "Dr/K8s+"))
    assert len(frame) == len(planned) and summary["total"] == len(planned)
    assert sorted(frame["ts_s"].round(3)) == sorted(planned["t_s"].round(3))
    # IDs as the original's client writes them (its analysis matches "ID: default/"); the
    # Deployments lived in kdlib's own namespace, which the metadata names.
    first = trace_run.log_path(directory, "Dr/K8s+").read_text().splitlines()[0]
    assert first.startswith("ID: default/trace-") and ", Func: default/trace-" in first
    assert (meta["namespace"], meta["id_namespace"]) == ("kdlib-trace", "default")
    # Deployments were scaled up (pods became Ready and served) and back down to no pods.
    assert meta["scale_writes"] > 0 and meta["peak_ready_pods"] > 0 and meta["functions_scaled_up"] > 0
    assert meta["scale_down"]["pods_left"] == 0
    assert meta["lateness"]["p50_ms"] >= 0 and "clock_kept_up" in meta
    # Both autoscaler configurations of vanilla Kubernetes were replayed, each recorded with its own.
    shipped = json.loads(trace_run.meta_path(directory, AS_SHIPPED).read_text())
    assert (meta["kpa"]["target_concurrency"], meta["kpa"]["scale_from_zero_at_once"]) == (1.0, True)
    assert (shipped["kpa"]["target_concurrency"], shipped["kpa"]["scale_from_zero_at_once"]) == (100.0, False)
    assert meta["dispatch_timeout_s"] == shipped["dispatch_timeout_s"] == 60  # the test's, recorded
    assert meta["time_scale"] == shipped["time_scale"] == 4 == meta["parameters"]["time_scale"]
    assert meta["replay_wall_s"] < 60, "one minute of trace at time_scale 4 is 15 s plus the tail"
    assert "knative.yaml as shipped" in shipped["kpa_config"] and shipped["invocations"] == len(planned)
    # The machine before and during each replay (the tests do not wait: one short look).
    for m in (meta, shipped):
        assert set(m["machine"]) == {"before", "during", "busy"} and m["machine"]["during"]["samples"] > 10
        assert m["machine"]["before"]["policy"]["overridden_by"] == "$KDLIB_QUIET_MAX_WAIT_S"
    from kdlib.publish.book import glued_outputs

    comparison = "".join(glued_outputs(output)["trace_kpa_comparison"]["text/html"])
    assert AS_SHIPPED in comparison and "as shipped ÷ same" in comparison
    run = trace_run.load_run("tiny", root / "results")
    assert run["state"] == "finished" and run["measured"] == ["Dr/K8s+", AS_SHIPPED]
    assert set(run["not_measured"]) == {"Kn/K8s", "Kn/Kd", "Dirigent", "Dr/Kd+"}
    for figure in (12, 13):
        assert (directory / f"fig{figure}.svg").stat().st_size > 1000
    state = root / "state"
    assert our_processes(state) == [] and not (state / "suite").exists()
    # Resume: a second run skips the finished system.
    before = trace_run.log_path(directory, "Dr/K8s+").stat().st_mtime_ns
    outcome = trace_run.run_trace(trace_params.TraceParams(run_id="tiny", **TINY_PARAMS, systems=("Dr/K8s+",)),
                                  root=root / "results", progress=False)
    assert outcome.resumed == ["Dr/K8s+"] and outcome.measured == []
    assert trace_run.log_path(directory, "Dr/K8s+").stat().st_mtime_ns == before
    # The record keeps both attempts: the first one's wall time survives the resume.
    attempts = trace_run.load_run("tiny", root / "results")["attempts"]
    assert [(a["state"], a["measured"], a["resumed"]) for a in attempts] == [
        ("finished", ["Dr/K8s+", AS_SHIPPED], []), ("finished", [], ["Dr/K8s+"])]
    assert attempts[0]["seconds"] > attempts[1]["seconds"]


SCRIPT = """
import sys
from pathlib import Path
from kdlib.experiments.trace import params, run
run.run_trace(params.TraceParams(run_id="interrupted", functions=20, minutes=3, warmup_minutes=1, nodes=2,
                                 systems=("Dr/K8s+",)), root=Path(sys.argv[1]))
"""


@pytest.mark.destructive
def test_sigint_mid_replay_leaves_a_clean_cluster_and_no_log(binaries, sandbox):
    root, env = sandbox
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(root / "results")], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    read_stderr_until(proc, "replaying")
    time.sleep(5)  # well inside the replay
    state = root / "state" / "suite"
    ports = json.loads((state / "cluster.json").read_text())["ports"]
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=180)
    assert proc.returncode != 0
    directory = trace_run.run_dir("interrupted", root / "results")
    assert not trace_run.log_path(directory, "Dr/K8s+").exists()
    assert not list(directory.glob(".*.partial"))
    assert trace_run.load_run("interrupted", root / "results")["state"] == "interrupted"
    assert_clean(state, ports)
