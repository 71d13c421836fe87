"""Figure 13's two Dr/K8s+ autoscaler configurations side by side, and busy runs named."""

from __future__ import annotations

import pandas as pd
import pytest

from kdlib.experiments.trace import report
from kdlib.experiments.trace.params import AS_SHIPPED


def numbers(slowdowns: list[float], latencies: list[float]) -> dict:
    return {"slowdown": pd.Series(slowdowns), "latency_ms": pd.Series(latencies)}


def test_the_two_configurations_and_their_gaps_to_kd():
    per_system = {AS_SHIPPED: numbers([2, 4, 6, 8, 10], [100, 200, 300, 400, 500]),
                  "Dr/K8s+": numbers([1, 2, 3, 4, 5], [10, 20, 30, 40, 50]),
                  "Dr/Kd+": numbers([1, 1, 1.5, 2, 2], [5, 10, 15, 20, 25])}
    table = report.kpa_comparison(per_system)
    slow = table[table["metric"] == "per-function slowdown"].set_index("statistic")
    assert slow.loc["median", AS_SHIPPED] == 6 and slow.loc["median", "Dr/K8s+"] == 3
    assert slow.loc["median", "as shipped ÷ same"] == 2
    assert slow.loc["p90", AS_SHIPPED] == pytest.approx(9.2) and slow.loc["p90", "Dr/K8s+"] == pytest.approx(4.6)
    assert slow.loc["median", "paper's gap (as shipped ÷ Kd+)"] == 4
    assert slow.loc["median", "same-config gap (Dr/K8s+ ÷ Kd+)"] == 2
    latency = table[table["metric"] == "per-function latency (ms)"].set_index("statistic")
    assert latency.loc["median", "as shipped ÷ same"] == 10
    sentence = report.kpa_sentence(table)
    assert f"Figure 13 k8s+ curve corresponds to {AS_SHIPPED}" in sentence
    assert "median per-function slowdown 6.0 as shipped vs 3.0 with the same target (2.0×)" in sentence
    assert "gap is 4.0× as the paper configured it and 2.0× with the configurations made equal" in sentence


def test_no_comparison_without_both_configurations():
    assert report.kpa_comparison({"Dr/K8s+": numbers([1, 2], [1, 2])}).empty
    assert report.kpa_sentence(pd.DataFrame()) == ""
    only_pair = report.kpa_comparison({AS_SHIPPED: numbers([2, 2], [2, 2]), "Dr/K8s+": numbers([1, 1], [1, 1])})
    assert "Dr/Kd+" not in only_pair.columns and "Against Dr/Kd+" not in report.kpa_sentence(only_pair)


def test_a_busy_replay_is_marked_in_the_table():
    meta = {"invocations": 10, "success": 10, "failed": 0, "clock_kept_up": True, "scale_writes": 1,
            "scale_writes_per_s": 0.1, "peak_ready_pods": 1, "replay_cpu_percent": 3.0, "dispatch_timeout_s": 300,
            "lateness": {"p50_ms": 0.1, "p99_ms": 1.0, "max_ms": 2.0},
            "kpa": {"target_concurrency": 100.0, "scale_from_zero_at_once": False},
            "machine": {"busy": True, "before": {"quiet": False, "cpu_idle_pct": 20.0, "load_1m": 7.5},
                        "during": {"cpu_busy_pct_mean": 90.0, "load_1m_min": 7.5, "load_1m_max": 9.0}}}
    table = report._replay_table({AS_SHIPPED: meta, "Dr/K8s+": {**meta, "machine": {"busy": False, "before": {}}}})
    assert table["machine"].tolist() == ["BUSY (no quiet machine within the bound)", "quiet"]
    assert table.loc[0, "load_during"] == "7.5–9.0" and table.loc[0, "cpu_idle_before_pct"] == 20.0
    assert not table.loc[0, "scale_from_zero_at_once"]
