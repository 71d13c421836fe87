"""Gateway queueing, dispatch and timeout accounting, on a scripted clock."""

from __future__ import annotations

import heapq
import itertools

from kdlib.experiments.trace.gateway import FAIL_DISPATCH, SUCCESS, Gateway, Invocation


class ScriptedClock:
    """A test double for the event loop: time moves only when the test runs it forward."""

    def __init__(self) -> None:
        self.now = 0.0
        self._queue: list = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, fn) -> None:
        heapq.heappush(self._queue, (self.now + delay, next(self._seq), fn))

    def run_until(self, t: float) -> None:
        while self._queue and self._queue[0][0] <= t:
            when, _, fn = heapq.heappop(self._queue)
            self.now = when
            fn()
        self.now = t


def make(functions=1, timeout=10.0):
    clock = ScriptedClock()
    done, events = [], []
    gw = Gateway(functions, timeout, clock.time, clock.call_later,
                 on_arrive=lambda f, now: events.append(("in", f, now)),
                 on_leave=lambda f, now: events.append(("out", f, now)), on_done=done.append)
    return clock, gw, done, events


def send(clock, gw, seq, f=0, runtime_ms=1000):
    inv = Invocation(seq, f, runtime_ms, clock.now)
    inv.client_send = clock.now
    gw.submit(inv)
    return inv


def test_fifo_one_invocation_per_pod():
    clock, gw, done, _ = make()
    a, b, c = (send(clock, gw, i) for i in range(3))
    clock.run_until(1.0)
    gw.pod_ready(0, "p1")
    assert a.gateway_send == 1.0 and b.gateway_send is None
    clock.run_until(2.0)
    assert a.status == SUCCESS and b.gateway_send == 2.0 and b.pod == "p1"
    gw.pod_ready(0, "p2")
    assert c.gateway_send == 2.0 and c.pod == "p2"
    clock.run_until(3.0)
    assert [inv.seq for inv in done] == [0, 1, 2] and gw.in_flight == 0
    assert (b.gateway_resp - b.gateway_send) == 1.0


def test_timeout_fails_and_records_never_drops():
    clock, gw, done, events = make(timeout=10.0)
    a = send(clock, gw, 0)
    clock.run_until(9.9)
    assert gw.expire() == 0
    clock.run_until(10.0)
    assert gw.expire() == 1
    assert a.status == FAIL_DISPATCH and a.gateway_send is None and a.client_recv == 10.0
    assert done == [a] and gw.in_flight == 0
    assert events == [("in", 0, 0.0), ("out", 0, 10.0)]  # the autoscaler sees it leave


def test_deleted_pod_gets_no_more_work_but_finishes_its_invocation():
    clock, gw, done, _ = make()
    gw.pod_ready(0, "p1")
    a = send(clock, gw, 0)
    gw.pod_gone(0, "p1")
    b = send(clock, gw, 1)
    clock.run_until(5.0)
    assert a.status == SUCCESS and b.gateway_send is None and gw.ready(0) == 0
    gw.pod_ready(0, "p2")
    assert b.pod == "p2"


def test_functions_are_independent_and_ready_is_idempotent():
    clock, gw, done, _ = make(functions=2)
    gw.pod_ready(1, "q")
    gw.pod_ready(1, "q")
    a = send(clock, gw, 0, f=0)
    b = send(clock, gw, 1, f=1)
    c = send(clock, gw, 2, f=1)
    assert a.gateway_send is None and b.pod == "q" and c.gateway_send is None
    assert gw.ready(1) == 1 and gw.waiting(1) == 1 and gw.busy(1) == 1


def test_every_invocation_accounted_for():
    clock, gw, done, _ = make(functions=3, timeout=5.0)
    gw.pod_ready(0, "p")
    sent = [send(clock, gw, i, f=i % 3, runtime_ms=700) for i in range(30)]
    t = 0.0
    while t < 40:
        t += 0.1
        clock.run_until(t)
        gw.expire()
    assert len(done) == len(sent) and gw.in_flight == 0
    statuses = {inv.status for inv in done}
    assert statuses == {SUCCESS, FAIL_DISPATCH}
    assert all(inv.status == FAIL_DISPATCH for inv in done if inv.function != 0)
