"""From runs and timelines to the numbers the figures show.

The headline metric (the paper's): the time until the 90th-percentile pod is Ready, by
the original artifact's rule: the sorted Ready times of the n pods at index ``(90*n)/100``
(integer division, 0-based), i.e. the (⌊0.9·n⌋+1)-th pod, one past the nearest rank
⌈0.9·n⌉ wherever 0.9·n is whole. The stage breakdown applies the same order statistic to
every stage (clusterloader2's pod-startup method; the original's breakdown clients use the
same index rule), and keeps the nearest-rank p90 as an extra column.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from ...stats import original_percentile, percentile

STAGE_ORDER = ("scale_returned", "rs_updated", "created", "scheduled", "sandbox", "started", "ready")
POD_STAGES = ("created", "scheduled", "ready")  # what the watch records for every pod; real pods add
# "sandbox" and "started" from their processes (kdlib.experiments.runtime)
STAGE_LABELS = {
    "scale_returned": "scale call returned",
    "rs_updated": "Deployment → ReplicaSet updated",
    "created": "pod created",
    "scheduled": "pod scheduled (bound)",
    "sandbox": "sandbox started (real nodes)",
    "started": "container started (real nodes)",
    "ready": "pod Ready",
}
PERCENTILES = (50, 90, 99)


def stage_percentiles(timeline: pd.DataFrame, keys: Sequence[str] = ("bench", "baseline", "scale", "repeat")
                      ) -> pd.DataFrame:
    """p50/p90/p99 (the original's index rule) and the nearest-rank p90 of every stage per run,
    from a tidy timeline (``stage``, ``t``)."""
    keys = [k for k in keys if k in timeline.columns]
    rows = []
    for group, frame in timeline.groupby([*keys, "stage"], sort=False):
        group = group if isinstance(group, tuple) else (group,)
        row = dict(zip([*keys, "stage"], group))
        row.update({f"p{p}": original_percentile(frame["t"], p) for p in PERCENTILES})
        row["p90_nearest_rank"] = percentile(frame["t"], 90)
        row["count"] = int(frame["t"].notna().sum())
        rows.append(row)
    result = pd.DataFrame(rows, columns=[*keys, "stage", *(f"p{p}" for p in PERCENTILES), "p90_nearest_rank",
                                         "count"])
    result["stage"] = pd.Categorical(result["stage"], categories=STAGE_ORDER, ordered=True)
    return result.sort_values([*keys, "stage"]).reset_index(drop=True)


def e2e_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Median and range of the p90 e2e time over repeats, per (bench, baseline, scale)."""
    e2e = runs[runs["name"] == "e2e"]
    grouped = e2e.groupby(["bench", "baseline", "scale"], as_index=False)["total_s"]
    summary = grouped.agg(p90_s="median", min_s="min", max_s="max", repeats="count")
    return summary.sort_values(["bench", "baseline", "scale"]).reset_index(drop=True)


def stage_summary(stages: pd.DataFrame) -> pd.DataFrame:
    """Median over repeats of each stage's p90, per (bench, baseline, scale, stage)."""
    grouped = stages.groupby(["bench", "baseline", "scale", "stage"], as_index=False, observed=True)["p90"]
    return grouped.agg(p90_s="median", min_s="min", max_s="max", repeats="count")


def figure_table(summary: pd.DataFrame, bench: str, baselines: Sequence[str], scales: Sequence[int],
                 not_measured: dict[str, str], failures: dict[tuple[str, int], str] | None = None) -> pd.DataFrame:
    """One bench as a table: a row per (baseline, scale), "not measured" where no run exists,
    with the reason: the system's, or why its run failed."""
    failures = failures or {}
    rows = []
    measured = summary[summary["bench"] == bench].set_index(["baseline", "scale"])
    for baseline in baselines:
        for scale in scales:
            if (baseline, scale) in measured.index:
                cell = measured.loc[(baseline, scale)]
                rows.append({"baseline": baseline, "scale": scale, "p90 (s)": f"{cell['p90_s']:.2f}",
                             "min (s)": f"{cell['min_s']:.2f}", "max (s)": f"{cell['max_s']:.2f}",
                             "repeats": int(cell["repeats"])})
            else:
                reason = not_measured.get(baseline) or failures.get((baseline, scale), "no finished run")
                rows.append({"baseline": baseline, "scale": scale, "p90 (s)": "not measured",
                             "min (s)": "", "max (s)": "", "repeats": 0, "reason": reason})
    table = pd.DataFrame(rows)
    if "reason" not in table:
        table["reason"] = ""
    return table.fillna("")
