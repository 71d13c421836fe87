"""The KPA's decisions on scripted concurrency series, computed from its definition."""

from __future__ import annotations

import math
import random

import pytest

from kdlib.errors import ConfigError
from kdlib.experiments.trace.kpa import Concurrency, Decider, KPAConfig, WindowAverage


def hold(decider: Decider, level: int, start: float, end: float) -> None:
    """Concurrency ``level`` from ``start`` to ``end``, collecting every second."""
    c = decider.concurrency
    while c.current < level:
        c.arrive(start)
    while c.current > level:
        c.leave(start)
    t = start
    while t + 1 <= end + 1e-9:
        t += 1
        decider.collect(t)


def test_concurrency_is_time_weighted():
    c = Concurrency()
    c.arrive(0.0)
    c.arrive(0.5)
    c.leave(1.0)
    assert c.report(1.0) == pytest.approx(1.5)
    assert c.report(2.0) == pytest.approx(1.0)


def test_window_average_counts_only_buckets_since_the_first():
    w = WindowAverage(60, 1)
    w.record(1, 4.0)
    w.record(2, 2.0)
    assert w.average(2) == pytest.approx(3.0)
    for t in range(3, 100):
        w.record(t, 1.0)
    assert w.average(99) == pytest.approx(1.0)


class _PlainWindow:
    """The window's definition, bucket by bucket (a dict of all buckets, summed in bucket order)."""

    def __init__(self, window_s: float, bucket_s: float) -> None:
        self.bucket_s, self.size, self.values, self.first, self.last = bucket_s, int(round(window_s / bucket_s)), {}, None, None

    def record(self, now: float, value: float) -> None:
        b = int(math.floor(now / self.bucket_s + 1e-9))
        self.values[b] = self.values.get(b, 0.0) + value
        self.first = b if self.first is None else self.first
        self.last = b if self.last is None else max(self.last, b)

    def average(self, now: float) -> float:
        if self.last is None:
            return 0.0
        b = int(math.floor(now / self.bucket_s + 1e-9))
        low, high = max(self.first, b - self.size + 1), min(self.last, b)
        if high < low:
            return 0.0
        return sum(self.values[k] for k in sorted(self.values) if low <= k <= high) / (high - low + 1)


@pytest.mark.parametrize("window_s, bucket_s", [(60, 1), (6, 1), (30, 2)])
def test_window_average_equals_the_bucket_by_bucket_definition_exactly(window_s, bucket_s):
    rng = random.Random(7)
    fast, plain = WindowAverage(window_s, bucket_s), _PlainWindow(window_s, bucket_s)
    now = 3.0
    for _ in range(5000):
        now += rng.choice([0.0, 0.3, bucket_s, bucket_s, 2.5 * bucket_s, 70.0 * rng.random()])
        when = now - bucket_s * rng.randrange(3) if rng.random() < 0.05 else now  # a few late records
        value = rng.choice([0.0, rng.random() * 50, 1 / 3])
        fast.record(when, value)
        plain.record(when, value)
        for later in (now, now + bucket_s * rng.random() * 3):
            assert fast.average(later) == plain.average(later)  # the same float, not approximately


def test_stable_mode_tracks_concurrency_over_target():
    d = Decider(KPAConfig(target_concurrency=1))
    hold(d, 3, 0, 60)
    decision = d.decide(60, ready=3)
    assert (decision.desired, decision.mode) == (3, "stable")
    d2 = Decider(KPAConfig(target_concurrency=2))
    hold(d2, 3, 0, 60)
    assert d2.decide(60, ready=2).desired == 2  # ceil(3 / 2)


def test_scale_from_zero_gives_one_pod_at_once():
    d = Decider(KPAConfig())
    d.concurrency.arrive(0.0)
    assert d.decide(0.0, ready=0).desired == 1  # no bucket yet, but a request waits


def test_panic_scales_up_on_a_burst_and_does_not_scale_down_while_panicking():
    cfg = KPAConfig(scale_down_delay_s=0)  # isolate panic from the delay window
    d = Decider(cfg)
    hold(d, 1, 0, 54)
    hold(d, 10, 54, 60)  # 6 s burst: panic window average 10, stable (54 + 60) / 60
    decision = d.decide(60, ready=1)
    assert decision.mode == "panic" and decision.desired == 10
    assert decision.stable == pytest.approx(114 / 60)
    hold(d, 0, 60, 80)
    later = d.decide(80, ready=10)
    assert later.mode == "panic" and later.desired == 10  # panic holds the maximum
    hold(d, 0, 80, 130)
    calm = d.decide(130, ready=10)  # 60 s after the last time over the threshold
    assert calm.mode == "stable" and calm.desired == 5  # floor(10 / max_scale_down_rate 2)


def test_scale_down_waits_for_the_delay_window_and_is_rate_limited():
    cfg = KPAConfig(stable_window_s=2, panic_window_pct=50, panic_threshold_pct=1e9, scale_down_delay_s=30)
    d = Decider(cfg)
    hold(d, 4, 0, 10)
    assert d.decide(10, ready=4).desired == 4
    hold(d, 0, 10, 14)
    desired = {}
    t = 12.0
    while t <= 44:
        desired[t] = d.decide(t, ready=4).desired
        t += 2
    assert all(v == 4 for k, v in desired.items() if k < 40)  # the 4 of t=10 stays in the window
    assert desired[44] == 2  # then down, but by at most half per decision


def test_scale_up_rate_limit():
    d = Decider(KPAConfig(max_scale_up_rate=3, panic_threshold_pct=1e9))
    hold(d, 50, 0, 60)
    assert d.decide(60, ready=2).desired == 6  # ceil(3 * 2)


def test_original_configs_and_validation():
    assert KPAConfig.knative().target_concurrency == 100 and not KPAConfig.knative().scale_from_zero_at_once
    assert KPAConfig.dirigent().target_concurrency == 1 and KPAConfig.dirigent().scale_from_zero_at_once
    assert KPAConfig().panic_window_s == 6
    with pytest.raises(ConfigError, match="target_concurrency"):
        KPAConfig(target_concurrency=0).validate()
