"""The machine's CPU counters over the recent past, so that the quiet wait before a run can judge
the window just before it instead of a window after it (:mod:`kdlib.machine` judges the state).

``with CpuHistory() as history: prepare(); settle(); wait(policy, history)``: when the run's
preparation and settle were quiet, the run starts at once; the window judged is still the
``window_s`` seconds just before the run, and the record says how much of it lay before the
wait (``window_before_wait_s``). Kept apart from :mod:`kdlib.machine`, which the analysis
reads (its digest names the analysis code), since how long to wait is not analysis.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from .machine import MAX_WAIT_ENV, NO_WAIT_LOOK_S, CpuTimes, QuietPolicy, busy_pct, cpu_times, load_average


def wait(policy: QuietPolicy, history: "CpuHistory") -> dict[str, Any]:
    """:func:`wait_until_quiet_since` with ``policy`` (and the tests' override of its bound, as
    :func:`kdlib.machine.wait`)."""
    used = policy.effective()
    record = wait_until_quiet_since(history, used.max_wait_s, used.window_s, used.idle_pct)
    if used != policy:
        record["policy"]["overridden_by"] = f"${MAX_WAIT_ENV}"
    return record


class CpuHistory:
    """The machine's CPU counters read every ``interval_s`` in a background thread; the samples
    older than ``keep_s`` are dropped."""

    def __init__(self, interval_s: float = 0.25, keep_s: float = 120.0) -> None:
        self.interval_s = interval_s
        self._samples: deque[tuple[float, CpuTimes]] = deque(maxlen=max(2, int(keep_s / interval_s) + 1))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kdlib-cpu-history", daemon=True)

    def __enter__(self) -> "CpuHistory":
        self.take()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def take(self) -> None:
        reading = (time.monotonic(), cpu_times())
        with self._lock:
            self._samples.append(reading)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.take()
            except (OSError, ValueError):  # a sample missed; the next one still counts
                continue

    def last(self, window_s: float) -> tuple[float, float, CpuTimes] | None:
        """(seconds covered, CPU busy %, newest counters) of the shortest span of at least
        ``window_s`` that ends at the newest sample; None while the samples span less."""
        with self._lock:
            if not self._samples:
                return None
            end_at, end = self._samples[-1]
            start = next(((at, times) for at, times in reversed(self._samples) if end_at - at >= window_s), None)
        if start is None:
            return None
        return end_at - start[0], busy_pct(start[1], end), end


def wait_until_quiet_since(history: CpuHistory, max_wait_s: float, window_s: float,
                           idle_threshold: float) -> dict[str, Any]:
    """As :func:`wait_until_quiet`, but judged on the last ``window_s`` seconds of ``history``
    (which may have begun before this call), again every ``history.interval_s`` until they are
    idle enough or ``max_wait_s`` has passed. The record says how long the window was and how
    much of it lay before the call (``window_before_wait_s``)."""
    window = min(window_s, NO_WAIT_LOOK_S) if max_wait_s <= 0 else window_s
    started = time.monotonic()
    while True:
        history.take()
        seen = history.last(window)
        waited = time.monotonic() - started
        if seen is not None:
            covered, busy, newest = seen
            quiet = 100.0 - busy >= idle_threshold
            if quiet or waited + history.interval_s > max_wait_s:
                return {"quiet": quiet, "waited_s": round(waited, 1), "cpu_busy_pct": round(busy, 1),
                        "cpu_idle_pct": round(100.0 - busy, 1), "procs_running": newest.procs_running,
                        "load_1m": round(load_average(), 2), "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                        "window_covered_s": round(covered, 2),
                        "window_before_wait_s": round(max(0.0, covered - waited), 2),
                        "policy": {"idle_pct": idle_threshold, "window_s": window, "max_wait_s": max_wait_s}}
        time.sleep(history.interval_s)





__all__ = ["CpuHistory", "wait", "wait_until_quiet_since"]
