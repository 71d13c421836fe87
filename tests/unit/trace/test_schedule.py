"""The invocation schedule: the original's draws, invocation for invocation, and its modes.

The reference is ``reference/loader.go``, a second Go program (sharing nothing with
``tools/loaderschedule``) that reads the trace's CSV files itself and draws with Go's
``math/rand`` the way the original's loader does; it runs at test time.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kdlib.cli import main as kdlib_main
from kdlib.errors import TraceDataError
from kdlib.experiments.trace import data, schedule

REFERENCE = Path(__file__).parent / "reference" / "loader.go"


def go_reference(rows: list[int] | None, minutes: int, seed: int = 42) -> pd.DataFrame:
    """The reference program's schedule of ``rows`` (all when None) of data/azure_500."""
    command = [shutil.which("go") or "go", "run", REFERENCE.name, "-trace", str(data.SHIPPED),
               "-minutes", str(minutes), "-seed", str(seed)]
    if rows is not None:
        command += ["-rows", ",".join(map(str, rows))]
    done = subprocess.run(command, cwd=REFERENCE.parent, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return pd.read_csv(io.StringIO(done.stdout), header=None, names=["row", "minute", "t_s", "runtime_ms"])


def in_generation_order(s: pd.DataFrame) -> pd.DataFrame:
    return s.sort_values(["row", "minute", "index"]).reset_index(drop=True)


def assert_same_invocations(ours: pd.DataFrame, go: pd.DataFrame) -> None:
    """Same invocations: functions and minutes, send times to the microsecond, runtimes to the ms."""
    ours = in_generation_order(ours)
    assert len(ours) == len(go)
    np.testing.assert_array_equal(ours["row"], go["row"])
    np.testing.assert_array_equal(ours["minute"], go["minute"])
    assert np.abs(ours["t_s"].to_numpy() - go["t_s"].to_numpy()).max() < 1e-6
    np.testing.assert_array_equal(ours["runtime_ms"], go["runtime_ms"])


def test_first_20_functions_5_minutes_equal_gos_draws():
    trace = data.subset(data.load(), 20, 5)
    assert trace.rows == tuple(range(20))  # the first 20, as the original's `run.sh kd+ 20`
    ours = schedule.build(trace)
    assert_same_invocations(ours, go_reference(list(range(20)), 5))
    assert len(ours) == trace.invocations + int((trace.counts > 0).sum())  # n + 1 per active minute


def test_full_trace_equals_gos_draws_175177_invocations():
    ours = schedule.build(data.subset(data.load(), minutes=30))
    assert len(ours) == 175_177 and int(ours["extra"].sum()) == 3_619
    assert_same_invocations(ours, go_reference(None, 30))


def test_random_subset_is_drawn_as_a_file_of_those_rows_with_its_seed():
    trace = data.subset(data.load(), 25, 4, seed=7, rule="random")
    assert trace.subset["rule"] == "random" and trace.subset["seed"] == 7
    assert_same_invocations(schedule.build(trace, seed=7), go_reference(list(trace.rows), 4, seed=7))


def test_exact_mode_keeps_the_trace_counts_and_every_other_invocation_as_drawn():
    trace = data.subset(data.load(), 40, 6)
    original = in_generation_order(schedule.build(trace))
    exact = in_generation_order(schedule.build(trace, original_extra=False))
    got = exact.groupby(["function", "minute"]).size()
    assert len(exact) == trace.invocations
    assert all(got[(f, m)] == trace.counts[f, m] for f, m in got.index)
    pd.testing.assert_frame_equal(exact, original[~original["extra"]].reset_index(drop=True))


def small_trace(memory: bool = True) -> data.Trace:
    counts = np.array([[3, 0, 1], [0, 5, 2], [0, 0, 0]])
    durations = pd.DataFrame([[1, 2, 5, 10, 20, 90, 100], [0, 0, 0, 0, 0, 0, 0], [100_000] * 7],
                             columns=list(data.PERCENTILES))
    mem = pd.DataFrame([[100, 110, 120, 130, 140, 150, 160, 170]] * 3, columns=list(data.MEMORY_PERCENTILES))
    return data.Trace("test", ("a", "b", "c"), (1, 2, 3), counts, durations, (10, 11, 12),
                      memory=mem if memory else None)


def test_original_mode_adds_one_invocation_on_each_active_minutes_end():
    s = schedule.build(small_trace())
    got = s.groupby(["function", "minute"]).size().to_dict()
    assert got == {(0, 0): 4, (0, 2): 2, (1, 1): 6, (1, 2): 3}
    extra = s[s["extra"]]
    assert len(extra) == 4 and np.allclose(extra["t_s"], (extra["minute"] + 1) * 60.0, atol=1e-6)
    assert set(s["row"]) == {10, 11} and s["t_s"].is_monotonic_increasing


def test_gaps_within_a_minute_and_times_inside_it():
    s = schedule.build(data.subset(data.load(), 50, 5), original_extra=False)
    for (_f, m), group in s.groupby(["function", "minute"]):
        t = np.sort(group["t_s"].to_numpy())
        assert t[0] == m * 60.0
        assert ((t >= m * 60.0) & (t < (m + 1) * 60.0)).all()


def test_runtimes_within_the_functions_bounds_and_clamped():
    s = schedule.build(small_trace())
    assert s[s["function"] == 0]["runtime_ms"].between(1, 100).all()
    assert (s[s["function"] == 1]["runtime_ms"] == 1).all()  # empty brackets at 0 ms: no draw, clamped to 1 ms


def test_same_seed_same_schedule_other_seed_other_schedule():
    trace = data.subset(data.load(), 30, 4)
    a, b, c = schedule.build(trace, seed=42), schedule.build(trace, seed=42), schedule.build(trace, seed=7)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == len(c) and not a["t_s"].equals(c["t_s"])


def test_a_trace_without_memory_or_with_a_decreasing_bracket_is_refused():
    with pytest.raises(TraceDataError, match="memory.csv"):
        schedule.build(small_trace(memory=False))
    broken = small_trace()
    broken.durations.iloc[0, 3] = 1  # percentile 50 below percentile 25
    with pytest.raises(TraceDataError, match="decreasing"):
        schedule.build(broken)


def test_a_trace_without_invocations_has_an_empty_schedule():
    trace = data.subset(small_trace(), 3, 1)
    trace = data.Trace("idle", trace.functions, trace.minutes, np.zeros_like(trace.counts), trace.durations,
                       trace.rows, memory=trace.memory)
    s = schedule.build(trace)
    assert len(s) == 0 and list(s.columns) == schedule.COLUMNS and schedule.summary(s)["invocations"] == 0


def test_ids_follow_the_original_pattern():
    ids = schedule.invocation_ids(schedule.build(small_trace()), "default")
    assert ids.str.match(r"^default/trace-(\d+)-(\d+)/(\d+)$").all()
    assert ids.is_unique


def test_cli_writes_the_full_schedule_as_csv(tmp_path, capsys):
    path = tmp_path / "s.csv"
    assert kdlib_main(["trace", "schedule", "-o", str(path)]) == 0
    lines = path.read_text().splitlines()
    assert lines[0] == "function,minute,send_s,runtime_ms" and len(lines) == 1 + 175_177
    written = pd.read_csv(path)
    assert written["function"].between(0, 499).all() and written["minute"].between(0, 29).all()
    assert all(len(t.split(".")[1]) == 6 for t in (line.split(",")[2] for line in lines[1:50]))
    assert "175177 invocations" in capsys.readouterr().err
    small = tmp_path / "small.csv"
    assert kdlib_main(["trace", "schedule", "--functions", "20", "--minutes", "5", "--exact", "-o", str(small)]) == 0
    assert len(pd.read_csv(small)) == data.subset(data.load(), 20, 5).invocations
