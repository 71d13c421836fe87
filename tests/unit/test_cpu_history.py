"""The quiet wait judged on the window just before the run (kdlib.cpu_history)."""

from __future__ import annotations

from kdlib import cpu_history, machine


class ScriptedHistory:
    """A CpuHistory fed by hand: each take() adds one sample ``step`` seconds after the last,
    ``busy`` percent busy since it."""

    def __init__(self, monkeypatch, step: float = 0.25) -> None:
        self.now, self.busy, self.total, self.share, self.step = 0.0, 0.0, 0.0, 0.0, step
        monkeypatch.setattr(cpu_history.time, "monotonic", lambda: self.now)
        monkeypatch.setattr(cpu_history.time, "sleep", lambda s: None)
        monkeypatch.setattr(cpu_history, "load_average", lambda path=None: 1.5)
        monkeypatch.setattr(cpu_history, "cpu_times", self.read)
        self.history = cpu_history.CpuHistory(interval_s=step)

    def read(self, path=None) -> machine.CpuTimes:
        self.now += self.step
        self.busy += self.share * self.step
        self.total += 100 * self.step
        return machine.CpuTimes(self.busy, self.total, 1)

    def run(self, seconds: float, busy_pct: float) -> None:
        self.share = busy_pct
        for _ in range(round(seconds / self.step)):
            self.history.take()


def test_a_quiet_preparation_counts_as_the_window_before_the_run(monkeypatch):
    scripted = ScriptedHistory(monkeypatch)
    scripted.run(4.0, 95)  # the previous run's clean-up
    scripted.run(6.0, 10)  # preparation and settle: quiet
    seen = cpu_history.wait_until_quiet_since(scripted.history, max_wait_s=300, window_s=5, idle_threshold=80)
    assert seen["quiet"] and seen["waited_s"] < 0.5 and seen["cpu_idle_pct"] == 90
    assert 5 <= seen["window_covered_s"] <= 5.25 and seen["window_before_wait_s"] >= 4.75
    assert cpu_history.wait_until_quiet_since(scripted.history, 0, 5, 80)["policy"]["window_s"] == machine.NO_WAIT_LOOK_S


def test_a_busy_window_before_the_run_is_waited_out_sliding(monkeypatch):
    scripted = ScriptedHistory(monkeypatch)
    scripted.run(1.0, 10)
    scripted.run(3.0, 95)  # busy until the wait starts: the window slides on until its 5 s are quiet enough
    scripted.share = 0
    seen = cpu_history.wait_until_quiet_since(scripted.history, max_wait_s=300, window_s=5, idle_threshold=80)
    # 3 s at 95 % busy need 11.25 s of idle beside them to average 20 %: the window then holds none of them.
    assert seen["quiet"] and 2.0 <= seen["waited_s"] <= 5.5 and seen["cpu_busy_pct"] <= 20
    scripted.run(6.0, 100)
    busy = cpu_history.wait_until_quiet_since(scripted.history, max_wait_s=3, window_s=5, idle_threshold=80)
    assert not busy["quiet"] and busy["waited_s"] <= 3


def test_the_real_history_is_read():
    with cpu_history.CpuHistory(interval_s=0.05) as history:
        sum(i * i for i in range(300_000))
        seen = cpu_history.wait(machine.QuietPolicy(idle_pct=0, window_s=0.2, max_wait_s=5), history)
    assert seen["quiet"] and seen["window_covered_s"] >= 0.2 and 0 <= seen["cpu_busy_pct"] <= 100
