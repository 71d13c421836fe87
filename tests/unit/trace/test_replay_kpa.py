"""The replay honours each autoscaler configuration: the as-shipped (Knative) one waits for
the tick to scale a function from zero, the Dirigent one decides as the invocation arrives."""

from __future__ import annotations

from kdlib.experiments.trace.kpa import Decider, KPAConfig
from kdlib.experiments.trace.params import AS_SHIPPED, TraceParams
from kdlib.experiments.trace.replay import Replay


class Loop:
    def __init__(self) -> None:
        self.timers: list[tuple[float, str]] = []
        self.soon: list = []

    def time(self) -> float:
        return 100.0

    def call_at(self, when: float, callback, *args) -> None:
        self.timers.append((when, callback.__name__))

    def call_soon(self, callback, *args) -> None:
        self.soon.append((callback, args))

    def run_soon(self) -> None:
        while self.soon:
            callback, args = self.soon.pop(0)
            callback(*args)


class Gateway:
    def ready(self, f: int) -> int:
        return 0


def arrival(kpa: KPAConfig) -> tuple[list[int], list[tuple[float, str]]]:
    """One invocation for a function at zero: (replicas wanted right after it, timers set)."""
    replay = object.__new__(Replay)  # the KPA part alone: no cluster
    replay.kpa, replay.loop, replay.gateway = kpa, Loop(), Gateway()
    replay.deciders, replay.active, replay.wanted = [Decider(kpa)], [False], [0]
    replay._start_decisions()
    replay._maybe_write = lambda f: None
    replay._arrive(0, 100.0)
    replay._arrive(0, 100.0)  # a second one before the decision: still one decision
    replay.loop.run_soon()  # the loop's next turn, before any later send
    return replay.wanted, replay.loop.timers


def test_each_configuration_scales_from_zero_as_the_original():
    params = TraceParams(run_id="x")
    wanted, timers = arrival(params.kpa_for("Dr/K8s+"))
    assert wanted == [1] and timers == [(102.0, "_decide_tick")]  # at once, and the 2-s tick starts
    wanted, timers = arrival(params.kpa_for(AS_SHIPPED))
    assert wanted == [0] and timers == [(102.0, "_decide_tick")]  # nothing until the tick
