"""Knative's KPA (concurrency-based autoscaler), as the original's trace client runs it.

Pure: every method takes ``now`` (seconds, any monotonic origin), so tests drive it on
scripted series. Concurrency counts from the gateway's receipt of an invocation to its
response (queueing included). Every ``bucket_s`` the average concurrency of the past
bucket is recorded; the decision every ``tick_s`` uses the stable (60 s) and panic
(10 % of it: 6 s) window averages over those buckets:

    want_stable = ceil(stable / target), want_panic = ceil(panic / target),
    both clamped to [floor(ready / max_down), ceil(ready * max_up)] with ready ≥ 1
    (and ≥ 1 while scaling from zero with requests in flight);
    panic starts when want_panic / ready ≥ threshold (200 %) and ends 60 s after the last
    time it was over; in panic the count never goes down;
    scale-down delay: the result is the maximum of the decisions of the last 30 s.

The two configurations of the original: ``dirigent()`` (target 1, a decision at once
when an invocation arrives for a function whose desired count is 0) for kd+, and
``knative()`` (target unset, so its code default 100; decisions only on the tick) for k8s+.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, replace

from ...errors import ConfigError


@dataclass(frozen=True)
class KPAConfig:
    target_concurrency: float = 1.0
    tick_s: float = 2.0
    bucket_s: float = 1.0
    stable_window_s: float = 60.0
    panic_window_pct: float = 10.0
    panic_threshold_pct: float = 200.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    scale_down_delay_s: float = 30.0
    #: Decide at once when an invocation arrives and the desired count is 0 (the original's non-async mode).
    scale_from_zero_at_once: bool = True

    @classmethod
    def dirigent(cls, **overrides) -> "KPAConfig":
        """The original's ``autoscaler.dirigent.yaml`` (its kd+ run)."""
        return replace(cls(), **overrides)

    @classmethod
    def knative(cls, **overrides) -> "KPAConfig":
        """The original's ``autoscaler.knative.yaml`` (its k8s+ run): async, target left to the code's 100."""
        return replace(cls(target_concurrency=100.0, scale_from_zero_at_once=False), **overrides)

    @property
    def panic_window_s(self) -> float:
        return self.stable_window_s * self.panic_window_pct / 100.0

    def problems(self) -> list[str]:
        found = []
        for name in ("target_concurrency", "tick_s", "bucket_s", "stable_window_s", "panic_window_pct",
                     "panic_threshold_pct", "max_scale_up_rate", "max_scale_down_rate"):
            if not getattr(self, name) > 0:
                found.append(f"kpa.{name} must be > 0, got {getattr(self, name)}")
        if self.scale_down_delay_s < 0:
            found.append(f"kpa.scale_down_delay_s must be ≥ 0, got {self.scale_down_delay_s}")
        if self.panic_window_s < self.bucket_s:
            found.append("kpa: the panic window must hold at least one bucket")
        return found

    def validate(self) -> "KPAConfig":
        problems = self.problems()
        if problems:
            raise ConfigError("; ".join(problems))
        return self


class Concurrency:
    """In-flight count and its time integral since the last report (Knative's request stats)."""

    def __init__(self) -> None:
        self.current = 0
        self._integral = 0.0
        self._in_use = 0.0
        self._last: float | None = None

    def _move(self, now: float) -> None:
        if self._last is not None and now > self._last:
            self._in_use += now - self._last
            self._integral += self.current * (now - self._last)
        if self._last is None or now > self._last:
            self._last = now

    def arrive(self, now: float) -> None:
        self._move(now)
        self.current += 1

    def leave(self, now: float) -> None:
        self._move(now)
        self.current -= 1

    def report(self, now: float) -> float:
        """Average concurrency since the previous report; starts a new period."""
        self._move(now)
        average = self._integral / self._in_use if self._in_use > 0 else 0.0
        self._integral = self._in_use = 0.0
        return average


class WindowAverage:
    """Knative's timed buckets: the average of the buckets in the last ``window_s``.

    Buckets are kept sorted (two parallel lists), so an average is two bisections and one
    C-level ``sum`` over the window's values in bucket order — the same additions, in the
    same order, as summing the window bucket by bucket, but cheap enough that the replay's
    loop can decide for hundreds of functions at one instant without sending late.
    """

    def __init__(self, window_s: float, bucket_s: float) -> None:
        self.bucket_s = bucket_s
        self.size = max(1, int(round(window_s / bucket_s)))
        self._buckets: list[int] = []
        self._values: list[float] = []
        self._first: int | None = None
        self._last: int | None = None

    def _index(self, now: float) -> int:
        return int(math.floor(now / self.bucket_s + 1e-9))

    def record(self, now: float, value: float) -> None:
        b = self._index(now)
        buckets, values = self._buckets, self._values
        if buckets and buckets[-1] == b:
            values[-1] += value
        elif not buckets or buckets[-1] < b:
            buckets.append(b)
            values.append(value)
        else:  # a bucket before the newest: rare, kept exact
            at = bisect.bisect_left(buckets, b)
            if buckets[at] == b:
                values[at] += value
            else:
                buckets.insert(at, b)
                values.insert(at, value)
        self._first = b if self._first is None else self._first
        self._last = b if self._last is None else max(self._last, b)
        old = bisect.bisect_right(buckets, b - self.size)
        if old:
            del buckets[:old], values[:old]

    def average(self, now: float) -> float:
        if self._last is None:
            return 0.0
        b = self._index(now)
        low = max(self._first, b - self.size + 1)
        high = min(self._last, b)
        if high < low:
            return 0.0
        buckets = self._buckets
        total = sum(self._values[bisect.bisect_left(buckets, low):bisect.bisect_right(buckets, high)])
        return total / (high - low + 1)


class WindowMax:
    """Knative's max time window: the largest value recorded in the last ``window_s``."""

    def __init__(self, window_s: float, bucket_s: float) -> None:
        self.bucket_s = bucket_s
        self.size = max(1, int(round(window_s / bucket_s)))
        self._entries: deque[tuple[int, int]] = deque()

    def record(self, now: float, value: int) -> None:
        b = int(math.floor(now / self.bucket_s + 1e-9))
        while self._entries and self._entries[0][0] <= b - self.size:
            self._entries.popleft()
        if self._entries and self._entries[-1][0] == b:
            self._entries[-1] = (b, max(self._entries[-1][1], value))
        else:
            self._entries.append((b, value))

    def current(self) -> int:
        return max((v for _, v in self._entries), default=0)


@dataclass(frozen=True)
class Decision:
    desired: int
    mode: str  # stable | panic
    stable: float
    panic: float


class Decider:
    """The KPA of one function."""

    def __init__(self, config: KPAConfig) -> None:
        self.config = config
        self.concurrency = Concurrency()
        self.stable = WindowAverage(config.stable_window_s, config.bucket_s)
        self.panic = WindowAverage(config.panic_window_s, config.bucket_s)
        self.delay = WindowMax(config.scale_down_delay_s, config.tick_s) if config.scale_down_delay_s > 0 else None
        self.panic_since: float | None = None
        self.max_panic_pods = 0
        self.desired = 0

    def collect(self, now: float) -> None:
        """Record the past bucket's average concurrency (call every ``bucket_s``)."""
        value = self.concurrency.report(now)
        self.stable.record(now, value)
        self.panic.record(now, value)

    def decide(self, now: float, ready: int) -> Decision:
        c = self.config
        stable, panic = self.stable.average(now), self.panic.average(now)
        from_zero = ready == 0
        ready = max(1, ready)
        up = math.ceil(c.max_scale_up_rate * ready)
        low = math.floor(ready / c.max_scale_down_rate)
        if from_zero and self.concurrency.current > 0:
            up, low = max(up, 1), max(low, 1)
        want_stable = math.ceil(stable / c.target_concurrency - 1e-12)
        want_panic = math.ceil(panic / c.target_concurrency - 1e-12)
        desired_stable = int(min(max(want_stable, low), up))
        desired_panic = int(min(max(want_panic, low), up))
        over = want_panic / ready >= c.panic_threshold_pct / 100.0
        if over:
            self.panic_since = now
        elif self.panic_since is not None and self.panic_since + c.stable_window_s < now:
            self.panic_since, self.max_panic_pods = None, 0
        desired, mode = desired_stable, "stable"
        if self.panic_since is not None:
            mode = "panic"
            self.max_panic_pods = max(self.max_panic_pods, desired, desired_panic)
            desired = self.max_panic_pods
        if self.delay is not None:
            self.delay.record(now, desired)
            desired = self.delay.current()
        self.desired = desired
        return Decision(desired, mode, stable, panic)
