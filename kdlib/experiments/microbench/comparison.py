"""Kd beside vanilla Kubernetes: the ratio of their p90 times, where a run measured both.

Each Kd baseline is compared with its vanilla twin (``kd+`` with ``k8s+``, ``kd`` with
``k8s``) at the same bench and scale. The ratio is vanilla ÷ Kd: above 1, Kd brought the
p90 pod up sooner. Nothing is computed when either side is missing.
"""

from __future__ import annotations

import pandas as pd

#: Each Kd baseline and the vanilla baseline it is compared with.
PAIRS = {"kd+": "k8s+", "kd": "k8s"}
RATIO_COLUMN = "ratio to vanilla"


def ratios(summary: pd.DataFrame, bench: str) -> pd.DataFrame:
    """One row per (Kd baseline, scale) measured on both sides: both p90s and vanilla ÷ Kd."""
    data = summary[summary["bench"] == bench].set_index(["baseline", "scale"])["p90_s"]
    rows = []
    for kd, vanilla in PAIRS.items():
        for scale in sorted({s for b, s in data.index if b == kd}):
            if (vanilla, scale) in data.index and data[(kd, scale)] > 0:
                rows.append({"kd": kd, "vanilla": vanilla, "scale": scale, "vanilla_p90_s": data[(vanilla, scale)],
                             "kd_p90_s": data[(kd, scale)], "ratio": data[(vanilla, scale)] / data[(kd, scale)]})
    return pd.DataFrame(rows, columns=["kd", "vanilla", "scale", "vanilla_p90_s", "kd_p90_s", "ratio"])


def with_ratio(table: pd.DataFrame, summary: pd.DataFrame, bench: str) -> pd.DataFrame:
    """``table`` (analysis.figure_table) with a column giving, on each Kd row measured on
    both sides, e.g. ``k8s+ ÷ kd+ = 1.25``; empty elsewhere."""
    found = {(r.kd, r.scale): f"{r.vanilla} ÷ {r.kd} = {r.ratio:.2f}" for r in ratios(summary, bench).itertuples()}
    table = table.copy()
    column = [found.get((b, s), "") for b, s in zip(table["baseline"], table["scale"])]
    position = list(table.columns).index("repeats") + 1 if "repeats" in table.columns else len(table.columns)
    table.insert(position, RATIO_COLUMN, column)
    return table

