"""Benchmark of the microbenchmark suite: where each second of a suite goes.

    python bench/microbench.py [--repeats 1] [--run-id bench-...]

Runs the default matrix (the notebook's default benches and scales, k8s+ on the local
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
import statistics
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
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--run-id", default=time.strftime("bench-%Y%m%d-%H%M%S"))
    parser.add_argument("--root", type=Path, default=REPO / "bench" / "out")
    args = parser.parse_args()

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
