"""Replay a schedule against a real cluster: send on time, dispatch to pods, autoscale.

One asyncio loop (this thread) sends the invocations at their scheduled times, runs the
gateway and the per-function KPA. Two kinds of threads talk to the API server: one
raw-JSON pod watch (pod discovery: a pod is usable when it is Ready and not being
deleted) and a pool of 16 scalers (the original's ``maxConcurrentScalers``) that write
``spec.replicas`` through each Deployment's ``scale`` subresource, only when the desired
count changed. Threads hand their results to the loop with ``call_soon_threadsafe``.

Lateness = when an invocation was handed to the gateway − its scheduled time.

``health`` (the cluster's ``check``) is called every :data:`HEALTH_EVERY_S` seconds in a
thread: when a component died it raises, and the replay stops with that error instead of
going on against a dead API server.

**Time scale.** The gateway, the KPA and every stamp run on the *trace clock*, which is the
loop's clock × ``time_scale`` (1: real time, the original's). With ``time_scale`` 4 a
minute of trace is replayed in 15 s: sends, runtimes, dispatch timeouts, the KPA's ticks and
windows and the drain all shrink together, the cluster's own latencies (scheduling, a pod
turning Ready) do not, so they weigh ``time_scale`` times more in the trace's terms. For the
tests; a run records it (``time_scale``), and a reference run must be made at 1.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd
from kubernetes import client

from ...k8s.watch import Watcher as _Watcher  # the raw-JSON list+watch thread
from .gateway import Gateway, Invocation
from .kpa import Decider, KPAConfig

log = logging.getLogger(__name__)
SCALERS = 16
EXPIRE_EVERY_S = 0.1
START_LEAD_S = 1.0  # the first invocation is sent this long after the loop starts
HEALTH_EVERY_S = 1.0
# Decisions per turn of the loop. The functions' 2-s ticks fall on the same instants (each
# started at the function's first invocation, and those come at minute starts), as do the
# minute's first sends: decided all at once, ~340 decisions (~4 ms) would delay those sends.
DECIDE_CHUNK = 32


@dataclass
class ReplayResult:
    invocations: list[Invocation]
    start: float  # loop-clock time of trace time 0
    lateness_s: np.ndarray
    scale_writes: list[tuple[float, int, int]]  # (time since start, function, replicas)
    scale_errors: list[str]
    max_ready: list[int]
    wall_s: float
    cpu_s: float
    finished: bool


def _is_ready(pod: dict[str, Any]) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


class Replay:
    """One replay of ``schedule`` on the Deployments ``names`` (function i → ``names[i]``)."""

    time_scale: float = 1.0  # trace seconds per second of the loop's clock (see the module's docstring)

    def __init__(self, api: client.ApiClient, namespace: str, names: list[str], schedule: pd.DataFrame,
                 kpa: KPAConfig, timeout_s: float, drain_s: float = 15.0, label_selector: str = "",
                 progress: Callable[[float], None] | None = None,
                 health: Callable[[], None] = lambda: None, time_scale: float = 1.0) -> None:
        self.api, self.namespace, self.names = api, namespace, names
        self.time_scale = time_scale
        self.health = health
        self.index = {name: i for i, name in enumerate(names)}
        self.schedule = schedule
        self.kpa, self.timeout_s, self.drain_s = kpa, timeout_s, drain_s
        self.label_selector = label_selector
        self.progress = progress or (lambda t: None)
        self.apps = client.AppsV1Api(api)

    # ------------------------------------------------------------------ the trace clock
    def clock(self) -> float:
        """Now on the trace clock (seconds)."""
        return self.loop.time() * self.time_scale

    def _call_at(self, when: float, callback: Callable[..., None], *args: Any) -> asyncio.TimerHandle:
        """``callback(*args)`` at trace time ``when``."""
        return self.loop.call_at(when / self.time_scale, callback, *args)

    def _call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return self.loop.call_later(delay / self.time_scale, callback)

    # ------------------------------------------------------------------ the run
    def run(self) -> ReplayResult:
        """Run the replay; in a thread of its own when this thread already runs a loop (a notebook kernel)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._main())
        outcome: dict[str, Any] = {}

        def target() -> None:
            try:
                outcome["result"] = asyncio.run(self._main())
            except BaseException as error:  # handed to the caller's thread
                outcome["error"] = error

        thread = threading.Thread(target=target, name="kdlib-trace-replay", daemon=True)
        thread.start()
        try:
            while thread.is_alive():
                thread.join(0.2)
        except BaseException:  # Ctrl-C in the kernel: stop the replay, let it clean up, re-raise
            loop, task = getattr(self, "loop", None), getattr(self, "_task", None)
            if loop is not None and task is not None:
                loop.call_soon_threadsafe(task.cancel)
            thread.join(60)
            raise
        if "error" in outcome:
            raise outcome["error"]
        return outcome["result"]

    async def _main(self) -> ReplayResult:
        loop = asyncio.get_running_loop()
        self.loop, self._task = loop, asyncio.current_task()
        n = len(self.names)
        self.deciders = [Decider(self.kpa) for _ in range(n)]
        self.active = [False] * n
        self.written = [0] * n  # spec.replicas we last wrote (all start at 0)
        self.writing = [False] * n
        self.wanted = [0] * n
        self.max_ready = [0] * n
        self._start_decisions()
        self.scale_writes: list[tuple[float, int, int]] = []
        self.scale_errors: list[str] = []
        self.gateway = Gateway(n, self.timeout_s, self.clock, self._call_later, self._arrive, self._leave)
        self.pool = concurrent.futures.ThreadPoolExecutor(SCALERS, thread_name_prefix="kdlib-trace-scaler")
        core = client.CoreV1Api(self.api)
        watcher = _Watcher(core.list_namespaced_pod, self.namespace, self.label_selector, self._on_pod_thread)
        watcher.start()
        cpu0, wall0 = time.process_time(), time.monotonic()
        timers: list[asyncio.TimerHandle] = []
        finished = False
        self.invocations: list[Invocation] = []
        self.start = self.clock() + START_LEAD_S * self.time_scale
        guard = asyncio.ensure_future(self._watch_health())
        work = asyncio.ensure_future(self._work(watcher, timers))
        try:
            done, _ = await asyncio.wait({guard, work}, return_when=asyncio.FIRST_COMPLETED)
            if guard in done:  # a component died: its error, not the replay's symptoms
                work.cancel()
                await asyncio.gather(work, return_exceptions=True)
                guard.result()
            finished = work.result()
        finally:
            for task in (guard, work):
                task.cancel()
            for timer in timers:
                timer.cancel()
            watcher.stop()
            self.pool.shutdown(wait=True, cancel_futures=True)
            watcher.join(5)
        invocations = self.invocations
        # In seconds of the loop's clock: how late this client was, whatever the trace's pace.
        lateness = np.array([inv.client_send - (self.start + inv.scheduled_s) for inv in invocations]) / self.time_scale
        return ReplayResult(invocations, self.start, lateness, self.scale_writes, self.scale_errors,
                            self.max_ready, time.monotonic() - wall0, time.process_time() - cpu0, finished)

    async def _work(self, watcher: _Watcher, timers: list[asyncio.TimerHandle]) -> bool:
        loop = self.loop
        await loop.run_in_executor(None, watcher.synced.wait, 30)
        if watcher.error is not None:
            raise watcher.error
        self.start = self.clock() + START_LEAD_S * self.time_scale
        timers.append(self._call_at(self.start, self._collect_tick))
        timers.append(self._call_at(self.start, self._expire_tick))
        await self._send_all()
        # Wait for every answer (the longest: dispatch timeout + 60 s runtime), then drain.
        while self.gateway.in_flight:
            if watcher.error is not None:
                raise watcher.error
            await asyncio.sleep(0.2)
        await asyncio.sleep(self.drain_s / self.time_scale)
        return True

    async def _watch_health(self) -> None:
        """Return never; raise the cluster's error as soon as a component died."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(HEALTH_EVERY_S)
            await loop.run_in_executor(None, self.health)

    async def _send_all(self) -> list[Invocation]:
        t = self.schedule["t_s"].to_numpy()
        functions = self.schedule["function"].to_numpy()
        runtimes = self.schedule["runtime_ms"].to_numpy()
        invocations = [Invocation(i, int(functions[i]), int(runtimes[i]), float(t[i])) for i in range(len(t))]
        self.invocations = invocations
        submit = self.gateway.submit
        next_progress = 0.0
        for inv in invocations:
            target = self.start + inv.scheduled_s
            now = self.clock()
            if now < target:
                await asyncio.sleep((target - now) / self.time_scale)
                now = self.clock()
            inv.client_send = now
            submit(inv)
            if inv.scheduled_s >= next_progress:
                self.progress(inv.scheduled_s)
                next_progress = inv.scheduled_s + 1.0
        return invocations

    # ------------------------------------------------------------------ KPA
    def _arrive(self, f: int, now: float) -> None:
        decider = self.deciders[f]
        decider.concurrency.arrive(now)
        if not self.active[f]:
            self.active[f] = True
            self._call_at(now + self.kpa.tick_s, self._decide_tick, f)
        if self.kpa.scale_from_zero_at_once and decider.desired == 0 and f not in self._queued_at_once:
            self._queued_at_once.add(f)
            self._at_once.append(f)
            self._drain_soon()

    def _leave(self, f: int, now: float) -> None:
        self.deciders[f].concurrency.leave(now)

    def _collect_tick(self) -> None:
        now = self.clock()
        for f, decider in enumerate(self.deciders):
            if self.active[f]:
                decider.collect(now)
        self._call_at(now + self.kpa.bucket_s - (now - self.start) % self.kpa.bucket_s, self._collect_tick)

    def _start_decisions(self) -> None:
        self._at_once: deque[int] = deque()  # functions to decide for: an arrival at zero, first
        self._ticked: deque[int] = deque()  # then those whose tick came
        self._queued_at_once: set[int] = set()
        self._draining = False

    def _decide_tick(self, f: int) -> None:
        self._ticked.append(f)
        self._drain_soon()

    def _drain_soon(self) -> None:
        if not self._draining:
            self._draining = True
            self.loop.call_soon(self._drain)

    def _drain(self) -> None:
        """Up to :data:`DECIDE_CHUNK` decisions, then the loop's turn: a send that fell due
        meanwhile goes before the rest. An arrival at zero is decided before any tick."""
        for _ in range(DECIDE_CHUNK):
            if self._at_once:
                f = self._at_once.popleft()
                self._queued_at_once.discard(f)
                self._decide(f, self.clock())
            elif self._ticked:
                f = self._ticked.popleft()
                now = self.clock()
                self._decide(f, now)
                self._call_at(now + self.kpa.tick_s, self._decide_tick, f)
            else:
                break
        if self._at_once or self._ticked:
            self.loop.call_soon(self._drain)
        else:
            self._draining = False

    def _decide(self, f: int, now: float) -> None:
        decision = self.deciders[f].decide(now, self.gateway.ready(f))
        self.wanted[f] = decision.desired
        self._maybe_write(f)

    def _maybe_write(self, f: int) -> None:
        if self.writing[f] or self.wanted[f] == self.written[f]:
            return
        self.writing[f] = True
        replicas = self.wanted[f]
        self.pool.submit(self._write_scale, f, replicas)

    def _write_scale(self, f: int, replicas: int) -> None:  # scaler thread
        error = None
        try:
            self.apps.patch_namespaced_deployment_scale(self.names[f], self.namespace, {"spec": {"replicas": replicas}})
        except Exception as exc:  # recorded, and the next decision writes again
            error = f"scale {self.names[f]} to {replicas}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        try:
            self.loop.call_soon_threadsafe(self._written, f, replicas, error)
        except RuntimeError:
            pass  # the loop is closed: the run is over

    def _written(self, f: int, replicas: int, error: str | None) -> None:
        self.writing[f] = False
        if error is None:
            self.written[f] = replicas
            self.scale_writes.append((self.clock() - self.start, f, replicas))
        else:
            self.scale_errors.append(error)
            log.warning(error)
        self._maybe_write(f)

    def _expire_tick(self) -> None:
        self.gateway.expire()
        self.loop.call_later(EXPIRE_EVERY_S, self._expire_tick)

    # ------------------------------------------------------------------ pods
    def _on_pod_thread(self, kind: str, pod: dict[str, Any], now: float) -> None:  # watch thread
        f = self.index.get(pod["metadata"].get("labels", {}).get("app", ""))
        if f is None:
            return
        usable = kind != "DELETED" and _is_ready(pod)
        try:
            self.loop.call_soon_threadsafe(self._on_pod, f, pod["metadata"]["name"], usable)
        except RuntimeError:
            pass

    def _on_pod(self, f: int, name: str, usable: bool) -> None:
        if usable:
            self.gateway.pod_ready(f, name)
            self.max_ready[f] = max(self.max_ready[f], self.gateway.ready(f))
        else:
            self.gateway.pod_gone(f, name)


def lateness_summary(lateness_s: np.ndarray) -> dict[str, float]:
    if not len(lateness_s):
        return {"p50_ms": math.nan, "p99_ms": math.nan, "max_ms": math.nan}
    ms = lateness_s * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "max_ms": round(float(ms.max()), 3), "over_5ms": int((ms > 5).sum())}
