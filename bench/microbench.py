"""Benchmark of the microbenchmark suite (issue: Figures 9–11).

    python bench/microbench.py [--repeats 3] [--compare-settle 30] [--run-id bench-...]

1. Runs the default matrix (the notebook's default benches and scales, k8s+ on the
   local cluster) with ``--repeats`` repeats and the default settle time, and reports
   the p90 per (bench, scale) with its spread, the suite's wall time, and the time spent
   waiting for a quiet cluster — against the time the original artifact's fixed sleeps
   alone would take for the same matrix (its scale_*.sh scripts `sleep 30` after every
   run).
2. Runs a smaller matrix (one scale of scale-pods and scale-funcs) with a
   ``--compare-settle`` second settle time and compares its p90 with the same cells of
   step 1, to show the shorter wait does not change the measurement.

Results go to a separate results root (``bench/out/`` by default), never to results/.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kdlib import analysis, results  # noqa: E402
from kdlib.experiments import BENCHES, SuiteParams, run_suite  # noqa: E402

ORIGINAL_SLEEP_AFTER_RUN_S = 30  # experiments/microbench/scale_*.sh of the original artifact


def run(params: SuiteParams, root: Path) -> tuple[dict, float]:
    started = time.monotonic()
    outcome = run_suite(params, root=root)
    wall = time.monotonic() - started
    failed = [o for o in outcome.outcomes if o.status == "failed"]
    if failed:
        raise SystemExit(f"{len(failed)} runs failed: {failed}")
    record = results.load_suite(params.run_id, root)
    return record, wall


def summary(run_id: str, benches: list[str], root: Path):
    import pandas as pd

    runs = pd.concat([results.load(b, run_id, root) for b in benches], ignore_index=True)
    return analysis.e2e_summary(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare-settle", type=float, default=30.0)
    parser.add_argument("--run-id", default=time.strftime("bench-%Y%m%d-%H%M"))
    parser.add_argument("--root", type=Path, default=REPO / "bench" / "out")
    args = parser.parse_args()
    benches = list(BENCHES)

    default = SuiteParams(run_id=args.run_id, baselines=("k8s+",), repeats=args.repeats)
    record, wall = run(default, args.root)
    measured = [o for o in record["outcomes"] if o["status"] == "measured"]
    table = summary(args.run_id, benches, args.root)
    report = {
        "matrix": {b: list(default.scales_for(b)) for b in benches},
        "repeats": args.repeats,
        "runs": len(record["outcomes"]),
        "suite_wall_s": round(wall, 1),
        "quiet_wait_s": record["quiet_wait_s"],
        "original_sleeps_alone_s": ORIGINAL_SLEEP_AFTER_RUN_S * len(record["outcomes"]),
        "measured_runs": len(measured),
        "p90_s": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}
                  for row in table.to_dict("records")],
    }

    cells = {"scale-pods": (100,), "scale-funcs": (50,)}
    slow = SuiteParams(run_id=args.run_id + "-settle", baselines=("k8s+",), repeats=args.repeats,
                       benches=tuple(cells), scales=cells, settle_s=args.compare_settle)
    _, slow_wall = run(slow, args.root)
    slow_table = summary(slow.run_id, list(cells), args.root)
    comparison = []
    for row in slow_table.to_dict("records"):
        same = table[(table["bench"] == row["bench"]) & (table["scale"] == row["scale"])].iloc[0]
        comparison.append({"bench": row["bench"], "scale": row["scale"],
                           f"p90_settle_{default.settle_s:g}s": round(same["p90_s"], 3),
                           f"range_settle_{default.settle_s:g}s": [round(same["min_s"], 3), round(same["max_s"], 3)],
                           f"p90_settle_{args.compare_settle:g}s": round(row["p90_s"], 3),
                           f"range_settle_{args.compare_settle:g}s": [round(row["min_s"], 3), round(row["max_s"], 3)]})
    report["settle_comparison"] = comparison
    report["settle_comparison_wall_s"] = round(slow_wall, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
