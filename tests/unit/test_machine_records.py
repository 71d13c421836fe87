"""Every run's machine record read back: the reproducibility page's table, busy runs in the
microbenchmark tables and findings, and the wait for the real nodes' teardown."""

from __future__ import annotations

import importlib
import json
import time

import pandas as pd
import pytest

from kdlib import store
from kdlib.experiments import loads, pages
from kdlib.experiments.microbench import files, suite

# The package exports the report *function* under the module's name.
microbench_report = importlib.import_module("kdlib.experiments.microbench.report")
microbench_findings = importlib.import_module("kdlib.experiments.microbench.findings")


def machine_state(busy: bool, idle: float, load: float) -> dict:
    return {"busy": busy, "before": {"quiet": not busy, "waited_s": 300.0 if busy else 5.0, "cpu_idle_pct": idle,
                                     "cpu_busy_pct": 100 - idle, "load_1m": load},
            "during": {"cpu_busy_pct_mean": 60.0, "cpu_busy_pct_max": 99.0, "load_1m_min": load,
                       "load_1m_max": load + 2}}


def write_runs(root):
    """Three microbenchmark runs (quiet, busy, and one from before the guard), one failed, one trace replay."""
    directory = store.run_dir("scale-pods", "r", root)
    runs = [(files.RunKey("scale-pods", "k8s+", 50, 0), machine_state(False, 95.0, 0.5)),
            (files.RunKey("scale-pods", "k8s+", 50, 1), machine_state(True, 20.0, 7.25)),
            (files.RunKey("scale-pods", "k8s", 50, 0), None)]
    for i, (key, state) in enumerate(runs):
        meta = {"baseline": key.baseline, "scale": key.scale, "repeat": key.repeat, "start_time": f"t{i}",
                "provenance": {"machine": {"load_average_1m": 3.0 + i}}}
        if state:
            meta["machine"] = state
        files.write_run(directory, key, 1_000_000 * (i + 1), pd.DataFrame({"t": [1.0]}), meta, {})
    files.write_failed(directory, files.RunKey("scale-pods", "k8s+", 100), pd.DataFrame(),
                      {"baseline": "k8s+", "scale": 100, "machine": machine_state(True, 1.0, 99.0)})
    trace = store.run_dir("trace", "r", root)
    trace.mkdir(parents=True)
    (trace / "meta.dr-k8s+.json").write_text(json.dumps({"system": "Dr/K8s+", "start_time": "t9",
                                                         "machine": machine_state(False, 88.0, 1.0)}))
    (trace / "trace.dr-k8s+.log").write_text("")
    (trace / "meta.dr-kd+.json").write_text("{damaged")
    (trace / "trace.dr-kd+.log").write_text("")


def test_every_finished_run_with_its_machine_state(tmp_path):
    write_runs(tmp_path)
    frame, left_out = loads.run_loads("r", tmp_path)
    assert left_out == ["trace/meta.dr-kd+.json: JSONDecodeError"]
    assert frame[["experiment", "system", "repeat", "busy"]].values.tolist() == [
        ["scale-pods", "k8s+", 0, False], ["scale-pods", "k8s+", 1, True], ["scale-pods", "k8s", 0, None],
        ["trace", "Dr/K8s+", 0, False]]  # the failed run (no log) is not shown
    ranges = loads.summary(frame)
    assert ranges["measured on a busy machine"] == "1" and ranges["with a machine record"] == "3"
    assert ranges["1-minute load before"] == "0.5–7.25" and ranges["1-minute load during"] == "0.5–9.25"
    assert ranges["CPU idle before (last window)"] == "20–95 %"
    page = pages.machine_load_markdown("r", tmp_path)
    assert "| measured on a busy machine | 1 |" in page and "| metadata left out (unreadable) |" in page
    assert "| scale-pods | k8s+ | 50 | 1 | t1 | **BUSY** | 20.0 | 7.25 | 60 / 99 | 7.25–9.25 | 4.0 |" in page
    assert "| scale-pods | k8s | 50 | 0 | t2 | not recorded |" in page


def test_busy_runs_are_marked_in_the_table_and_the_findings(tmp_path):
    write_runs(tmp_path)
    machine = loads.run_loads("r", tmp_path)[0]
    table = pd.DataFrame({"baseline": ["k8s+", "k8s", "kd+"], "scale": [50, 50, 50],
                          "p90 (s)": ["1.50", "3.00", "not measured"], "reason": ["", "", "needs Kd"]})
    marked = microbench_report._machine_column(table, machine, "scale-pods")
    assert marked["machine"].tolist() == ["BUSY (1 of 2 runs)", "not recorded", ""]
    assert list(marked.columns)[-1] == "reason"
    assert microbench_findings._busy_runs(machine, "scale-pods") == {("k8s+", 50): (1, 2)}
    assert microbench_findings._busy_runs(machine, "scale-funcs") == {}


class Cluster:
    """Pods whose processes go away one poll at a time."""

    def __init__(self, left: list[int]) -> None:
        self.left = left

    def pod_process_starts(self) -> dict[str, list[float]]:
        n = self.left.pop(0) if len(self.left) > 1 else self.left[0]
        return {f"uid-{i}": [0.0] for i in range(n)}


def test_the_suite_waits_for_the_real_nodes_teardown():
    assert suite.wait_real_nodes_clear(Cluster([3, 2, 0]), timeout=10, poll_s=0) == 0
    assert suite.wait_real_nodes_clear(Cluster([2]), timeout=0.05, poll_s=0.01) == 2  # bounded
    # Pods that were there before the run (a DaemonSet's) are not waited for.
    assert suite.wait_real_nodes_clear(Cluster([3, 1]), timeout=10, resident=frozenset({"uid-0"}), poll_s=0) == 0



def test_the_teardown_wait_ends_naming_a_component_that_died_not_after_its_timeout():
    from kdlib.errors import ComponentError

    class DeadKubelet(Cluster):
        def check(self) -> None:
            raise ComponentError("kubelet", "exited on node1", "")

    started = time.monotonic()
    with pytest.raises(ComponentError, match="kubelet: exited on node1"):
        suite.wait_real_nodes_clear(DeadKubelet([2]), timeout=60, poll_s=0.01, check_every_s=0.05)
    assert time.monotonic() - started < 30
