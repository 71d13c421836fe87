"""The microbenchmark notebook at a tiny scale with k8s (real nodes) and k8s+ (simulated) both measured."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from kdlib.experiments import runner
from kdlib.experiments.microbench import files
from kdlib.cluster.local import hostnet

from ..helpers import REPO

REASON = hostnet.why_not_real_nodes()
pytestmark = [pytest.mark.integration, pytest.mark.real_nodes,
              pytest.mark.skipif(REASON is not None, reason=f"cannot run real nodes here: {REASON}")]

PARAMS = ("{benches: [scale-pods, scale-funcs], scale_pods: [6], scale_funcs: [3], nodes: 2, settle_s: 0.5, "
          "baselines: [k8s, k8s+], real_nodes: 2}")


@pytest.mark.slow
def test_notebook_measures_real_and_simulated_sandboxes(binaries, tmp_path):
    env = {**os.environ, "KDLIB_RESULTS_DIR": str(tmp_path / "results"),
           "KDLIB_STATE_DIR": str(tmp_path / "state")}
    run = subprocess.run(
        [sys.executable, "-m", "papermill", str(REPO / "notebooks" / "microbench.ipynb"), str(tmp_path / "out.ipynb"),
         "--cwd", str(REPO), "-p", "run_id", "tiny-real", "-y", PARAMS],
        env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    suite = runner.load("tiny-real", tmp_path / "results")
    assert suite["state"] == "finished" and suite["not_measured"] == {}
    assert {(o["baseline"], o["status"]) for o in suite["attempts"][-1]["outcomes"]} == {("k8s", "measured"),
                                                                                ("k8s+", "measured")}
    # After each real-node run the suite waited until the real nodes had removed its containers.
    assert all("teardown" in o["phases_s"] for o in suite["attempts"][-1]["outcomes"] if o["baseline"] == "k8s")
    for bench, scale in (("scale-pods", 6), ("scale-funcs", 3)):
        directory = files.run_dir(bench, "tiny-real", tmp_path / "results")
        real = files.parse_log(files.log_path(directory, files.RunKey(bench, "k8s", scale)).read_text())
        simulated = files.parse_log(files.log_path(directory, files.RunKey(bench, "k8s+", scale)).read_text())
        assert real > 0 and simulated > 0
        meta = json.loads(files.meta_path(directory, files.RunKey(bench, "k8s", scale)).read_text())
        assert meta["real_nodes"] == 2
        # What the real pods cost: their nodes' processes and cgroups used CPU during the run.
        assert meta["usage"]["cpu_s"]["real nodes"] > 0 and meta["usage"]["cores"] >= 1
        timeline = files.load_timelines(bench, "tiny-real", tmp_path / "results")
        nodes = set(timeline[(timeline["baseline"] == "k8s") & (timeline["stage"] == "scheduled")]["node"])
        assert nodes <= {"kdlib-real-0", "kdlib-real-1"} and nodes, nodes
        # The runtime breakdown: every real pod's sandbox and container start, in order.
        real = timeline[(timeline["baseline"] == "k8s") & (timeline["kind"] == "Pod")]
        at = real.pivot_table(index="object", columns="stage", values="t")
        assert len(at) == scale and at[["sandbox", "started"]].notna().all().all()
        assert (at["sandbox"] <= at["started"]).all() and (at["started"] <= at["ready"]).all()
        assert not set(timeline[timeline["baseline"] == "k8s+"]["stage"]) & {"sandbox", "started"}
    notebook = (tmp_path / "out.ipynb").read_text()
    assert "k8s+" in notebook
    assert "pods per kubelet" in notebook and "one pod start cost" in notebook
