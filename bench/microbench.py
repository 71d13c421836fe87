"""Benchmark of the microbenchmark suite: where each second of a suite goes.

    python bench/microbench.py [suite] [--repeats 1] [--run-id bench-...]
    python bench/microbench.py notebook [--run-id bench-...] [-p NAME VALUE ...]
    python bench/microbench.py prepare [--funcs 100] [--times 3]

``notebook`` executes notebooks/microbench.ipynb with its defaults (papermill, as a reader
would) and reports its wall time against the runs' measured phases: the harness's overhead
ratio (everything but the measurements over the measurements; the goal of issue 21 is
≤ 0.25), split into the runs' other phases, cluster start/resize/stop, and the kernel with
the analysis; the machine's load (/proc/loadavg before and after, and the runs' recorded CPU
use) is reported beside it, since a shared machine inflates every number.

``prepare`` times scale-funcs' preparation (K Deployments of k8s+ at zero replicas, until the
controllers are done) on a local cluster of 20 kwok nodes, with the controller manager's
writes it took: its client limit (20 writes/s) is the floor.

``suite`` (the default) runs the default matrix (the notebook's default benches and scales, k8s+ on the local
cluster) and reports, per run, the seconds spent preparing (Deployments at zero
replicas, reconciled), settling, measuring (the scale-up itself) and cleaning up, the
harness's overhead per run (everything but the measurement; goal ≤ 5 s), the cluster
start, and the time the original artifact's fixed sleeps alone would take (its
scale_*.sh scripts `sleep 30` after every run). Results go to ``bench/out/``, never to
results/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kdlib.experiments import runner  # noqa: E402
from kdlib.experiments.microbench import SuiteParams, run_suite  # noqa: E402

ORIGINAL_SLEEP_AFTER_RUN_S = 30  # experiments/microbench/scale_*.sh of the original artifact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=("suite", "notebook", "prepare"), default="suite")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--run-id", default=time.strftime("bench-%Y%m%d-%H%M%S"))
    parser.add_argument("--root", type=Path, default=REPO / "bench" / "out")
    parser.add_argument("--funcs", type=int, default=100, help="prepare: K Deployments")
    parser.add_argument("--times", type=int, default=3, help="prepare: how many preparations")
    parser.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="notebook: a papermill parameter (default: none, the notebook's defaults)")
    args = parser.parse_args()
    if args.mode == "notebook":
        return notebook(args.run_id, args.root, args.p)
    if args.mode == "prepare":
        return prepare(args.funcs, args.times)
    suite(args)


def _load() -> str:
    return Path("/proc/loadavg").read_text().strip()


def notebook(run_id: str, root: Path, parameters: list[list[str]]) -> None:
    """The default notebook's wall time against its runs' measured phases."""
    results = root / "results"
    output = root / "executed" / run_id / "microbench.ipynb"
    output.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "KDLIB_RESULTS_DIR": str(results)}
    load_before = _load()
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "papermill", str(REPO / "notebooks" / "microbench.ipynb"), str(output),
                    "-p", "run_id", run_id, *(x for pair in parameters for x in ("-p", *pair))],
                   cwd=REPO, env=env, check=True, capture_output=True)
    wall = time.monotonic() - started
    load_after = _load()
    record = runner.load(run_id, results)
    attempt = record["attempts"][-1]
    runs = [r for r in attempt["outcomes"] if r["status"] == "measured"]
    phases: dict[str, float] = {}
    for run in runs:
        for name, seconds in run["phases_s"].items():
            phases[name] = round(phases.get(name, 0.0) + seconds, 1)
    measured = phases.get("measure", 0.0)
    in_runs = sum(phases.values())
    suite_s = float(record.get("seconds") or 0.0)
    busy = [m["machine"]["during"]["cpu_busy_pct_mean"] for m in _metas(run_id, results)
            if (m.get("machine") or {}).get("during")]
    print(json.dumps({
        "notebook_wall_s": round(wall, 1),
        "runs": len(runs), "failed": [r for r in attempt["outcomes"] if r["status"] == "failed"],
        "measured_s": measured,
        "overhead_ratio": round((wall - measured) / measured, 3) if measured else None,
        "not_measured_s": {"in_runs": {k: v for k, v in phases.items() if k != "measure"},
                           "clusters_start_resize_stop": round(suite_s - in_runs, 1),
                           "kernel_analysis": round(wall - suite_s, 1)},
        "load": {"before": load_before, "after": load_after,
                 "runs_cpu_busy_pct_mean": round(statistics.mean(busy), 1) if busy else None},
    }, indent=2))


def _metas(run_id: str, results: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in results.glob(f"*/{run_id}/meta.*.json")]


def prepare(funcs: int, times: int) -> None:
    """scale-funcs' preparation at K = ``funcs`` on 20 kwok nodes, ``times`` times."""
    from kdlib import LocalCluster
    from kdlib.baselines import BASELINES
    from kdlib.experiments import usage
    from kdlib.experiments.microbench import measure
    from kdlib.experiments.microbench.spec import BENCHES

    workload, namespace = BENCHES["scale-funcs"].workload(funcs), measure.namespace_for("scale-funcs")
    found = []
    with LocalCluster(nodes=20) as cluster:
        api = cluster.info.api_client()
        measure.ensure_namespace(api, namespace)
        for _ in range(times):
            writes, harness = usage.api_writes(api) or {}, time.process_time()
            started = time.monotonic()
            measure.prepare(api, namespace, workload, BASELINES["k8s+"], on_kwok=True, timeout=300)
            seconds = time.monotonic() - started
            after = usage.api_writes(api) or {}
            found.append({"prepare_s": round(seconds, 2), "load": _load(),
                          "harness_cpu_s": round(time.process_time() - harness, 2),
                          "controller_writes": {k: after[k] - writes.get(k, 0) for k in
                                                ("POST replicasets", "PUT deployments/status",
                                                 "PUT replicasets/status") if k in after}})
            measure.clean(api, namespace, 120, 0.0)
    print(json.dumps({"funcs": funcs, "median_s": statistics.median(f["prepare_s"] for f in found),
                      "runs": found}, indent=2))


def suite(args: argparse.Namespace) -> None:
    params = SuiteParams(run_id=args.run_id, baselines=("k8s+",), repeats=args.repeats)
    started = time.monotonic()
    outcome = run_suite(params, root=args.root, progress=False)
    wall = time.monotonic() - started
    failed = [o for o in outcome.outcomes if o.status == "failed"]
    if failed:
        raise SystemExit(f"{len(failed)} runs failed: {failed}")
    record = runner.load(args.run_id, args.root)
    runs = record["attempts"][-1]["outcomes"]
    per_run = [{"run": f"{r['bench']} {r['scale']} r{r['repeat']}", **r["phases_s"],
                "overhead": round(sum(v for k, v in r["phases_s"].items() if k != "measure"), 2)} for r in runs]
    accounted = sum(sum(r["phases_s"].values()) for r in runs)
    print(json.dumps({
        "runs": len(runs),
        "suite_wall_s": round(wall, 1),
        "in_runs_s": round(accounted, 1),
        "outside_runs_s (cluster start and stop, resizing)": round(wall - accounted, 1),
        "measuring_s": round(sum(r["phases_s"]["measure"] for r in runs), 1),
        "overhead_per_run_s": {"median": statistics.median(r["overhead"] for r in per_run),
                               "max": max(r["overhead"] for r in per_run)},
        "original_sleeps_alone_s": ORIGINAL_SLEEP_AFTER_RUN_S * len(runs),
        "per_run": per_run,
    }, indent=2))


if __name__ == "__main__":
    main()
