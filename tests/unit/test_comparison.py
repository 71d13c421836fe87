"""The vanilla ÷ Kd ratio on the figure tables."""

import pandas as pd

from kdlib.experiments.microbench import analysis, comparison


def _summary(rows):
    return pd.DataFrame([{"bench": "scale-pods", "baseline": b, "scale": s, "p90_s": v, "min_s": v, "max_s": v,
                          "repeats": 1} for b, s, v in rows])


def test_ratio_only_where_both_sides_were_measured():
    summary = _summary([("k8s+", 50, 2.0), ("kd+", 50, 0.5), ("k8s+", 100, 4.0)])
    found = comparison.ratios(summary, "scale-pods")
    assert found[["kd", "vanilla", "scale", "ratio"]].values.tolist() == [["kd+", "k8s+", 50, 4.0]]
    table = analysis.figure_table(summary, "scale-pods", ["k8s+", "kd+"], [50, 100], {})
    table = comparison.with_ratio(table, summary, "scale-pods")
    assert table[comparison.RATIO_COLUMN].tolist() == ["", "", "k8s+ ÷ kd+ = 4.00", ""]
    assert list(table.columns).index(comparison.RATIO_COLUMN) == list(table.columns).index("repeats") + 1


def test_no_kd_no_ratio():
    summary = _summary([("k8s+", 50, 2.0)])
    assert comparison.ratios(summary, "scale-pods").empty
    assert comparison.ratios(summary, "scale-funcs").empty
