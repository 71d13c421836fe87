"""Percentiles, stages and summaries, from hand-made timelines."""

import math

import pandas as pd
import pytest

from kdlib.experiments.microbench import analysis
from kdlib.experiments.microbench.measure import tidy_timeline


def test_percentile_is_nearest_rank():
    ten = [float(i) for i in range(1, 11)]
    assert analysis.percentile(ten, 90) == 9.0  # the 9th of 10 pods
    assert analysis.percentile(ten, 100) == 10.0
    assert analysis.percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert analysis.percentile(list(range(1, 201)), 90) == 180  # 200 pods: the 180th
    assert math.isnan(analysis.percentile([], 90))
    assert analysis.percentile([1.0, None, float("nan"), 2.0], 50) == 1.0


def test_percentile_rejects_bad_p():
    with pytest.raises(ValueError):
        analysis.percentile([1.0], 0)


def test_original_percentile_is_the_index_90n_over_100():
    ten = [float(i) for i in range(1, 11)]
    assert analysis.original_percentile(ten, 90) == 10.0  # index 9: the 10th of 10 pods, not the 9th
    assert analysis.original_percentile(list(range(1, 101)), 90) == 91  # 100 pods: the 91st
    assert analysis.original_percentile(list(range(1, 201)), 90) == 181
    assert analysis.original_percentile(list(range(1, 26)), 90) == 23  # 0.9·25 not whole: as nearest rank
    assert analysis.original_percentile(list(range(1, 26)), 90) == analysis.percentile(list(range(1, 26)), 90)
    assert analysis.original_percentile([5.0, None, float("nan"), 1.0, 3.0], 50) == 3.0
    assert math.isnan(analysis.original_percentile([], 90))
    for bad in (100, 90.5, -1):
        with pytest.raises(ValueError):
            analysis.original_percentile([1.0], bad)


def test_tidy_timeline_from_watch_records():
    pods = [{"pod": f"p{i}", "created": 10.1 + i, "scheduled": 10.2 + i, "ready": 10.5 + i, "node": "n0"}
            for i in range(3)]
    pods.append({"pod": "late", "created": 20.0, "scheduled": None, "ready": None, "node": None})
    frame = tidy_timeline(10.0, {"fn-0000": 10.05}, {"rs-a": [(9.0, 0), (10.08, 3)]}, pods, target=3)
    assert frame[frame["stage"] == "scale_returned"]["t"].round(3).tolist() == [0.05]
    assert frame[frame["stage"] == "rs_updated"]["t"].round(3).tolist() == [0.08]
    assert frame[frame["stage"] == "ready"]["t"].round(3).tolist() == [0.5, 1.5, 2.5]
    assert frame[frame["stage"] == "created"]["node"].isna().all()
    assert (frame[frame["stage"] == "scheduled"]["node"] == "n0").all()


def test_stage_percentiles_and_summary():
    rows = []
    for repeat, offset in ((0, 0.0), (1, 1.0)):
        for i in range(10):
            rows.append({"bench": "scale-pods", "baseline": "k8s+", "scale": 10, "repeat": repeat,
                         "kind": "Pod", "object": f"p{i}", "stage": "ready", "t": offset + i / 10, "node": "n"})
            rows.append({"bench": "scale-pods", "baseline": "k8s+", "scale": 10, "repeat": repeat,
                         "kind": "Pod", "object": f"p{i}", "stage": "created", "t": offset + i / 100, "node": None})
    stages = analysis.stage_percentiles(pd.DataFrame(rows))
    assert list(stages["stage"].astype(str)) == ["created", "ready", "created", "ready"]  # stage order
    ready = stages[stages["stage"] == "ready"]
    assert ready["p90"].round(3).tolist() == [0.9, 1.9]  # the original's index 9 of 10
    assert ready["p90_nearest_rank"].round(3).tolist() == [0.8, 1.8]
    summary = analysis.stage_summary(stages)
    row = summary[summary["stage"] == "ready"].iloc[0]
    assert (round(row["p90_s"], 3), round(row["min_s"], 3), round(row["max_s"], 3), row["repeats"]) == (1.4, 0.9, 1.9, 2)


def test_e2e_summary_median_and_range():
    runs = pd.DataFrame([
        {"bench": "scale-pods", "name": "e2e", "baseline": "k8s+", "scale": 100, "repeat": r, "total_s": t}
        for r, t in enumerate([1.0, 3.0, 2.0])
    ] + [{"bench": "scale-pods", "name": "_rs", "baseline": "kd", "scale": 100, "repeat": 0, "total_s": 9.0}])
    summary = analysis.e2e_summary(runs)
    assert summary.to_dict("records") == [
        {"bench": "scale-pods", "baseline": "k8s+", "scale": 100, "p90_s": 2.0, "min_s": 1.0, "max_s": 3.0,
         "repeats": 3}]


def test_figure_table_marks_missing_cells():
    summary = pd.DataFrame([{"bench": "scale-pods", "baseline": "k8s+", "scale": 50, "p90_s": 1.234,
                             "min_s": 1.2, "max_s": 1.3, "repeats": 2}])
    table = analysis.figure_table(summary, "scale-pods", ["k8s", "k8s+"], [50, 100],
                                  {"k8s": "needs real kubelets"})
    cells = {(r["baseline"], r["scale"]): r for r in table.to_dict("records")}
    assert cells[("k8s+", 50)]["p90 (s)"] == "1.23"
    assert cells[("k8s+", 100)]["p90 (s)"] == "not measured"
    assert cells[("k8s+", 100)]["reason"] == "no finished run"
    assert cells[("k8s", 50)]["reason"] == "needs real kubelets"
