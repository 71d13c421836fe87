"""The analysis filters on hand-made invocations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kdlib.experiments.trace import analysis


def frame(rows):
    return pd.DataFrame(rows, columns=["function", "ts_s", "delay_ms", "runtime_ms", "requested_ms", "failed"])


def test_warmup_single_invocation_slowdown_below_one_and_failures():
    rows = [
        ("a", 10.0, 1000.0, 100.0, 100, False),   # in the warm-up: dropped
        ("a", 700.0, 100.0, 100.0, 100, False),   # slowdown 2
        ("a", 800.0, 300.0, 100.0, 100, False),   # slowdown 4
        ("b", 700.0, 5.0, 50.0, 100, False),      # slowdown 0.55 < 1: dropped from slowdown only
        ("b", 750.0, 10.0, 100.0, 100, False),    # slowdown 1.1, b's only slowdown left → b dropped
        ("c", 900.0, 2.0, 10.0, 10, False),       # c has one invocation: dropped everywhere
        ("d", 900.0, np.nan, 0.0, 10, True),      # failure: counted
    ]
    n = analysis.per_function(frame(rows), warmup_minutes=10)
    assert n["invocations"] == 6 and n["failed"] == 1
    assert n["slowdown"].to_dict() == {"a": pytest.approx(3.0)}
    assert n["latency_ms"].to_dict() == {"a": pytest.approx(200.0), "b": pytest.approx(7.5)}


def test_knative_timeout_filter():
    rows = [("a", 700.0, 9000.0, 100.0, 100, False), ("a", 710.0, 100.0, 100.0, 100, False),
            ("a", 720.0, 300.0, 100.0, 100, False)]
    n = analysis.per_function(frame(rows), warmup_minutes=10, timeout_ms=8000)
    assert n["dropped_as_timeout"] == 1 and n["latency_ms"]["a"] == pytest.approx(200.0)


def test_cdf_and_summary():
    c = analysis.cdf(pd.Series([3.0, 1.0, 2.0]))
    assert c["x"].tolist() == [1.0, 2.0, 3.0] and c["p"].tolist()[-1] == 1.0
    n = analysis.per_function(frame([("a", 700.0, 100.0, 100.0, 100, False)] * 3), 10)
    table = analysis.summary({"Dr/K8s+": n}, {"Dr/K8s+": "measured"})
    assert table.iloc[0]["slowdown_p50"] == 2.0 and table.iloc[0]["failed"] == 0
    assert analysis.figure_systems(13) == ["Dirigent", "Dr/K8s+", "Dr/K8s+ (as shipped)", "Dr/Kd+"]
