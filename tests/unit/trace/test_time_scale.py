"""A replay at ``time_scale`` > 1: the trace clock runs faster than the loop's, everything of the
trace shrinks with it, and a reference run is refused anything but the original's pace."""

from __future__ import annotations

import pytest

from kdlib.errors import ConfigError
from kdlib.experiments.trace import run as trace_run
from kdlib.experiments.trace.kpa import KPAConfig
from kdlib.experiments.trace.params import TraceParams
from kdlib.params import problems_of
from kdlib.experiments.trace.replay import Replay


def test_time_scale_is_checked_and_refused_for_a_reference_run(tmp_path):
    assert problems_of(TraceParams, run_id="tiny", time_scale=4) == []
    for bad in (0.5, 0, float("nan"), True, "4"):
        assert any(p.startswith("time_scale: ") for p in problems_of(TraceParams, run_id="tiny", time_scale=bad)), bad
    assert any("refused for run_id 'reference'" in p for p in problems_of(TraceParams, run_id="reference", time_scale=2))
    assert problems_of(TraceParams, run_id="reference") == []
    # The run that the results folder names as its reference, whatever its id: refused before anything runs.
    (tmp_path / "reference.txt").write_text("ref-2026\n")
    with pytest.raises(ConfigError, match="refused for 'ref-2026', the reference run"):
        trace_run.run_trace(TraceParams(run_id="ref-2026", systems=("Dirigent",), time_scale=2), root=tmp_path,
                            progress=False)


class Loop:
    """A loop clock at 100 s that records what is scheduled on it."""

    def __init__(self) -> None:
        self.at: list[tuple[float, str]] = []
        self.later: list[float] = []

    def time(self) -> float:
        return 100.0

    def call_at(self, when: float, callback, *args) -> None:
        self.at.append((when, callback.__name__))

    def call_later(self, delay: float, callback) -> None:
        self.later.append(delay)


def test_the_trace_clock_runs_time_scale_times_faster_than_the_loop():
    replay = object.__new__(Replay)  # the clock alone: no cluster
    replay.loop, replay.time_scale, replay.kpa = Loop(), 4.0, KPAConfig.dirigent()
    assert replay.clock() == 400.0  # trace seconds
    replay._call_at(408.0, replay._decide_tick)  # a 2-s tick of the trace ...
    replay._call_later(30.0, lambda: None)  # ... and a 30-s runtime or timeout
    assert replay.loop.at == [(102.0, "_decide_tick")] and replay.loop.later == [7.5]  # ... in loop seconds
    replay.time_scale = 1.0  # the original's pace: one clock
    assert replay.clock() == 100.0
