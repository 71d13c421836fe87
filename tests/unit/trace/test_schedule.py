"""The invocation schedule: counts, gaps, runtimes, determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kdlib.experiments.trace import data, schedule


def small_trace():
    counts = np.array([[3, 0, 1], [0, 5, 2], [0, 0, 0]])
    durations = pd.DataFrame([[1, 2, 5, 10, 20, 90, 100], [0, 0, 0, 0, 0, 0, 0], [100_000] * 7],
                             columns=list(data.PERCENTILES))
    return data.Trace("test", ("a", "b", "c"), (1, 2, 3), counts, durations, (10, 11, 12))


def test_exact_counts_are_preserved_per_function_and_minute():
    trace = small_trace()
    s = schedule.build(trace, original_extra=False)
    got = s.groupby(["function", "minute"]).size().to_dict()
    assert got == {(0, 0): 3, (0, 2): 1, (1, 1): 5, (1, 2): 2}
    assert not s["extra"].any()


def test_original_mode_adds_one_invocation_on_each_active_minutes_end():
    trace = small_trace()
    s = schedule.build(trace)
    got = s.groupby(["function", "minute"]).size().to_dict()
    assert got == {(0, 0): 4, (0, 2): 2, (1, 1): 6, (1, 2): 3}
    extra = s[s["extra"]]
    assert len(extra) == 4 and (extra["t_s"] == (extra["minute"] + 1) * 60.0).all()


def test_gaps_within_a_minute_and_times_inside_it():
    trace = data.subset(data.load(), 50, 5, seed=3)
    s = schedule.build(trace, original_extra=False)
    for (f, m), group in s.groupby(["function", "minute"]):
        t = np.sort(group["t_s"].to_numpy())
        assert t[0] == m * 60.0
        assert ((t >= m * 60.0) & (t < (m + 1) * 60.0)).all()
        gaps = np.diff(t)
        assert ((gaps >= 0) & (gaps < 60.0)).all()
    assert s["t_s"].is_monotonic_increasing


def test_runtimes_within_the_functions_bounds_and_clamped():
    s = schedule.build(small_trace())
    a = s[s["function"] == 0]["runtime_ms"]
    assert a.between(1, 100).all()
    assert (s[s["function"] == 1]["runtime_ms"] == 1).all()  # 0 ms clamps to 1 ms


def test_same_seed_same_schedule_other_seed_other_schedule():
    trace = data.subset(data.load(), 30, 4, seed=5)
    a, b, c = schedule.build(trace, seed=42), schedule.build(trace, seed=42), schedule.build(trace, seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert not a["t_s"].equals(c["t_s"])


def test_ids_follow_the_original_pattern():
    s = schedule.build(small_trace())
    ids = schedule.invocation_ids(s, "default")
    assert ids.str.match(r"^default/trace-(\d+)-(\d+)/(\d+)$").all()
    assert ids.is_unique
