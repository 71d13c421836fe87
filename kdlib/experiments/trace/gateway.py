"""The gateway: hands each invocation to a Ready pod of its function, one at a time per pod.

As the original's k8s gateway with its fake backend: an invocation waits FIFO for a
free Ready pod of its function; the pod is held for the invocation's requested runtime
(the backend's work), then freed. An invocation that found no pod within the dispatch
timeout fails with ``FAIL_DISPATCH``: it is recorded, never dropped. A pod that is
deleted (or stops being Ready) gets no more work; an invocation already on it finishes.

The gateway is single-threaded and clock-agnostic: ``clock()`` gives the time and
``call_later(delay, fn)`` runs ``fn`` later (an asyncio loop's, or a test's scripted
clock). Timeouts are checked by :meth:`expire`, which the owner calls periodically
(every 100 ms in the replay): a timer per waiting invocation would cost more than the
send itself at the minute-boundary bursts.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

SUCCESS = "SUCCESS"
FAIL_DISPATCH = "FAIL_DISPATCH"


@dataclass(slots=True)
class Invocation:
    """One invocation and its time stamps (seconds on the gateway's clock; None = never)."""

    seq: int
    function: int
    runtime_ms: int
    scheduled_s: float  # its time in the schedule, from the replay's start
    client_send: float | None = None
    gateway_recv: float | None = None
    gateway_send: float | None = None
    gateway_resp: float | None = None
    client_recv: float | None = None
    pod: str | None = None
    status: str | None = None


class _Function:
    __slots__ = ("waiting", "free", "ready", "busy")

    def __init__(self) -> None:
        self.waiting: deque[Invocation] = deque()
        self.free: deque[str] = deque()  # tokens; a token of a pod no longer Ready is discarded
        self.ready: set[str] = set()
        self.busy = 0


class Gateway:
    """FIFO dispatch per function; ``on_arrive``/``on_leave`` feed the autoscaler's concurrency."""

    def __init__(self, functions: int, timeout_s: float, clock: Callable[[], float],
                 call_later: Callable[[float, Callable[[], None]], Any],
                 on_arrive: Callable[[int, float], None] = lambda f, now: None,
                 on_leave: Callable[[int, float], None] = lambda f, now: None,
                 on_done: Callable[[Invocation], None] = lambda inv: None) -> None:
        self.timeout_s = timeout_s
        self.clock, self.call_later = clock, call_later
        self.on_arrive, self.on_leave, self.on_done = on_arrive, on_leave, on_done
        self._functions = [_Function() for _ in range(functions)]
        self.in_flight = 0  # received and not yet answered

    # --- invocations -------------------------------------------------------------------
    def submit(self, inv: Invocation) -> None:
        now = self.clock()
        inv.gateway_recv = now
        self.in_flight += 1
        self.on_arrive(inv.function, now)
        fn = self._functions[inv.function]
        fn.waiting.append(inv)
        if fn.free:
            self._dispatch(inv.function, fn)

    def _dispatch(self, f: int, fn: _Function) -> None:
        while fn.waiting and fn.free:
            pod = fn.free.popleft()
            if pod not in fn.ready:
                continue  # the pod went away after it was freed
            inv = fn.waiting.popleft()
            inv.pod, inv.gateway_send = pod, self.clock()
            fn.busy += 1
            self.call_later(inv.runtime_ms / 1000.0, lambda inv=inv: self._finish(inv))

    def _finish(self, inv: Invocation) -> None:
        now = self.clock()
        inv.gateway_resp = inv.client_recv = now
        inv.status = SUCCESS
        fn = self._functions[inv.function]
        fn.busy -= 1
        if inv.pod in fn.ready:
            fn.free.append(inv.pod)
        self._answer(inv, now)
        self._dispatch(inv.function, fn)

    def _answer(self, inv: Invocation, now: float) -> None:
        self.in_flight -= 1
        self.on_leave(inv.function, now)
        self.on_done(inv)

    def expire(self) -> int:
        """Fail every invocation that waited longer than the timeout; returns how many."""
        now = self.clock()
        failed = 0
        for fn in self._functions:
            while fn.waiting and now - fn.waiting[0].gateway_recv >= self.timeout_s:
                inv = fn.waiting.popleft()
                inv.status, inv.client_recv = FAIL_DISPATCH, now
                self._answer(inv, now)
                failed += 1
        return failed

    # --- pods (from the watch) ---------------------------------------------------------
    def pod_ready(self, f: int, pod: str) -> None:
        fn = self._functions[f]
        if pod in fn.ready:
            return
        fn.ready.add(pod)
        fn.free.append(pod)
        self._dispatch(f, fn)

    def pod_gone(self, f: int, pod: str) -> None:
        self._functions[f].ready.discard(pod)

    def ready(self, f: int) -> int:
        return len(self._functions[f].ready)

    def waiting(self, f: int) -> int:
        return len(self._functions[f].waiting)

    def busy(self, f: int) -> int:
        return self._functions[f].busy
