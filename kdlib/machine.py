"""Is this machine quiet enough to measure on, and how busy was it while a run measured?

Other work on the machine skews every number a run measures, so before each run the
suite waits, up to a bound, until the CPUs are mostly idle, and it records the machine's
state before and during the run. Quiet is judged on the CPU time of a short window read
from ``/proc/stat`` (all CPUs together), not on the 1-minute load average: that average
decays with a time constant of a minute, so after a run on real nodes it stays high long
after the machine went quiet. The load average and the run queue (``procs_running``) are
recorded beside it, for the reader.

A run that finds no quiet machine within the bound still runs, and its record says
``busy: true``; the tables and findings show it.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Tests (on a busy, shared machine) set this to 0: no waiting, one short look (recorded).
MAX_WAIT_ENV = "KDLIB_QUIET_MAX_WAIT_S"
#: With no wait, one look of at most this long is enough to record the state.
NO_WAIT_LOOK_S = 1.0
PROC_STAT = Path("/proc/stat")
PROC_LOADAVG = Path("/proc/loadavg")


@dataclass(frozen=True)
class QuietPolicy:
    """When a machine counts as quiet, and how long a run waits for it."""

    idle_pct: float = 80.0  # of all CPUs' time over the window (the cluster's own idle work included)
    window_s: float = 5.0
    max_wait_s: float = 300.0

    def effective(self) -> "QuietPolicy":
        """This policy with the tests' override of the bound (``$KDLIB_QUIET_MAX_WAIT_S``) applied."""
        override = os.environ.get(MAX_WAIT_ENV)
        if override is None or override == "":
            return self
        return QuietPolicy(self.idle_pct, self.window_s, max(0.0, float(override)))


@dataclass(frozen=True)
class CpuTimes:
    busy: float  # clock ticks of every CPU not idle (user, nice, system, irq, softirq, steal)
    total: float
    procs_running: int


def cpu_times(path: Path = PROC_STAT) -> CpuTimes:
    """The machine's CPU counters (all CPUs) and its run queue, from ``/proc/stat``."""
    busy = total = 0.0
    running = 0
    for line in path.read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            # user nice system idle iowait irq softirq steal [guest guest_nice: already in user, nice]
            ticks = [float(v) for v in fields[1:9]]
            total = sum(ticks)
            busy = total - ticks[3] - ticks[4]
        elif fields and fields[0] == "procs_running":
            running = int(fields[1])
    if total <= 0:
        raise ValueError(f"{path}: no aggregate 'cpu' line")
    return CpuTimes(busy, total, running)


def load_average(path: Path = PROC_LOADAVG) -> float:
    """The 1-minute load average."""
    return float(path.read_text().split()[0])


def busy_pct(first: CpuTimes, second: CpuTimes) -> float:
    """The share of all CPUs' time spent busy between two readings (0 when no tick passed)."""
    elapsed = second.total - first.total
    return 100.0 * (second.busy - first.busy) / elapsed if elapsed > 0 else 0.0


def look(window_s: float) -> dict[str, Any]:
    """The machine over one window: CPU busy %, the run queue at its end, the load average."""
    first = cpu_times()
    time.sleep(window_s)
    second = cpu_times()
    busy = busy_pct(first, second)
    return {"cpu_busy_pct": round(busy, 1), "cpu_idle_pct": round(100.0 - busy, 1),
            "procs_running": second.procs_running, "load_1m": round(load_average(), 2)}


def wait_until_quiet(max_wait_s: float, window_s: float, idle_threshold: float) -> dict[str, Any]:
    """Look at the CPUs window after window until they are idle ≥ ``idle_threshold`` % of the
    time, for at most ``max_wait_s`` (0: one look of at most :data:`NO_WAIT_LOOK_S`, no wait).

    Returns the record: ``quiet`` (bool), ``waited_s``, the last window's CPU use, run
    queue and load average, and the policy it was judged by.
    """
    window = min(window_s, NO_WAIT_LOOK_S) if max_wait_s <= 0 else window_s
    started = time.monotonic()
    while True:
        seen = look(window)
        quiet = seen["cpu_idle_pct"] >= idle_threshold
        waited = time.monotonic() - started
        if quiet or waited + window > max_wait_s:
            return {"quiet": quiet, "waited_s": round(waited, 1), **seen, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "policy": {"idle_pct": idle_threshold, "window_s": window, "max_wait_s": max_wait_s}}


def wait(policy: QuietPolicy) -> dict[str, Any]:
    """:func:`wait_until_quiet` with ``policy`` (and the tests' override of its bound)."""
    used = policy.effective()
    record = wait_until_quiet(used.max_wait_s, used.window_s, used.idle_pct)
    if used != policy:
        record["policy"]["overridden_by"] = f"${MAX_WAIT_ENV}"
    return record


class Sampler:
    """Samples CPU use, run queue and load average in a background thread while a run measures.

    ``with Sampler() as s: ...`` then ``s.summary()``: the mean CPU use over the whole
    interval (from the counters at its two ends), the range of the per-sample CPU use and
    of the load average, and the largest run queue seen.
    """

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="kdlib-machine-sampler", daemon=True)
        self._busy: list[float] = []
        self._load: list[float] = []
        self._running: list[int] = []
        self._first: CpuTimes | None = None
        self._last: CpuTimes | None = None
        self._started = self._ended = 0.0

    def __enter__(self) -> "Sampler":
        self._first = self._last = cpu_times()
        self._load.append(load_average())
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._take()
        self._ended = time.monotonic()

    def _take(self) -> None:
        now = cpu_times()
        if self._last is not None and now.total > self._last.total:
            self._busy.append(busy_pct(self._last, now))
        self._last = now
        self._running.append(now.procs_running)
        self._load.append(load_average())

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._take()
            except (OSError, ValueError):  # a sample missed is a sample missed; the ends still count
                continue

    def summary(self) -> dict[str, Any]:
        if self._first is None or self._last is None:
            return {}
        return {"seconds": round(self._ended - self._started, 1), "samples": len(self._busy),
                "cpu_busy_pct_mean": round(busy_pct(self._first, self._last), 1),
                "cpu_busy_pct_max": round(max(self._busy, default=0.0), 1),
                "load_1m_min": round(min(self._load), 2), "load_1m_max": round(max(self._load), 2),
                "procs_running_max": max(self._running, default=0)}


def record(before: dict[str, Any], during: dict[str, Any]) -> dict[str, Any]:
    """A run's ``machine`` metadata: busy when the wait before it found no quiet machine."""
    return {"before": before, "during": during, "busy": not before.get("quiet", True)}


def is_busy(meta: dict[str, Any]) -> bool:
    """Whether a run's metadata says it was measured on a busy machine (older runs: unknown, False)."""
    return bool((meta.get("machine") or {}).get("busy", False))


__all__ = ["QuietPolicy", "Sampler", "cpu_times", "look", "wait_until_quiet", "wait", "record", "is_busy"]
