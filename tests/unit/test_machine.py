"""The quiet-machine guard (/proc/stat, /proc/loadavg) and the one machine-wide suite lock."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kdlib import machine, paths
from kdlib.errors import SuiteBusyError
from kdlib.experiments import runner

STAT = """cpu  {user} 0 {system} {idle} {iowait} 0 0 0 0 0
cpu0 1 0 1 1 0 0 0 0 0 0
intr 1
procs_running {running}
procs_blocked 0
"""


def write_stat(path: Path, user: int, system: int, idle: int, iowait: int = 0, running: int = 1) -> Path:
    path.write_text(STAT.format(user=user, system=system, idle=idle, iowait=iowait, running=running))
    return path


def test_cpu_times_count_idle_and_iowait_as_not_busy(tmp_path):
    first = machine.cpu_times(write_stat(tmp_path / "a", 100, 50, 800, 50, running=3))
    assert (first.busy, first.total, first.procs_running) == (150, 1000, 3)
    second = machine.cpu_times(write_stat(tmp_path / "b", 160, 90, 900, 50))
    assert machine.busy_pct(first, second) == pytest.approx(100 * 100 / 200)
    assert machine.busy_pct(second, second) == 0.0
    (tmp_path / "c").write_text("intr 1\n")
    with pytest.raises(ValueError):
        machine.cpu_times(tmp_path / "c")


class FakeProc:
    """A scripted /proc/stat: each window sees ``busy_pct`` of the CPU time busy."""

    def __init__(self, monkeypatch, busy_series: list[float]) -> None:
        self.series, self.busy, self.total, self.reads = list(busy_series), 0.0, 0.0, 0
        monkeypatch.setattr(machine, "cpu_times", self.read)
        monkeypatch.setattr(machine, "load_average", lambda path=None: 3.5)
        monkeypatch.setattr(machine.time, "sleep", lambda s: None)

    def read(self, path=None) -> machine.CpuTimes:
        self.reads += 1
        if self.reads % 2 == 0:  # the end of a window
            share = self.series.pop(0) if len(self.series) > 1 else self.series[0]
            self.busy += share
            self.total += 100
        return machine.CpuTimes(self.busy, self.total, 2)


def test_waits_until_a_window_is_idle_enough(monkeypatch):
    FakeProc(monkeypatch, [95, 60, 10, 95])
    clock = iter(range(0, 1000, 5))
    monkeypatch.setattr(machine.time, "monotonic", lambda: float(next(clock)))
    seen = machine.wait_until_quiet(max_wait_s=300, window_s=5, idle_threshold=80)
    assert seen["quiet"] and seen["cpu_idle_pct"] == 90 and seen["waited_s"] == 15
    assert seen["load_1m"] == 3.5 and seen["procs_running"] == 2 and seen["policy"]["idle_pct"] == 80


def test_gives_up_at_the_bound_and_says_busy(monkeypatch):
    FakeProc(monkeypatch, [95])
    clock = iter(range(0, 1000, 5))
    monkeypatch.setattr(machine.time, "monotonic", lambda: float(next(clock)))
    seen = machine.wait_until_quiet(max_wait_s=20, window_s=5, idle_threshold=80)
    assert not seen["quiet"] and seen["cpu_busy_pct"] == 95 and seen["waited_s"] <= 20
    record = machine.record(seen, {"cpu_busy_pct_mean": 99})
    assert record["busy"] and machine.is_busy({"machine": record}) and not machine.is_busy({})


def test_no_wait_is_one_short_look_and_the_override_is_recorded(monkeypatch):
    fake = FakeProc(monkeypatch, [95])
    monkeypatch.setenv(machine.MAX_WAIT_ENV, "0")
    seen = machine.wait(machine.QuietPolicy(idle_pct=80, window_s=5, max_wait_s=300))
    assert fake.reads == 2 and not seen["quiet"]
    assert seen["policy"] == {"idle_pct": 80, "window_s": machine.NO_WAIT_LOOK_S, "max_wait_s": 0.0,
                              "overridden_by": "$KDLIB_QUIET_MAX_WAIT_S"}
    monkeypatch.delenv(machine.MAX_WAIT_ENV)
    assert machine.QuietPolicy().effective() == machine.QuietPolicy()


def test_the_real_machine_is_read():
    seen = machine.wait_until_quiet(max_wait_s=0, window_s=0.2, idle_threshold=0)
    assert seen["quiet"] and 0 <= seen["cpu_busy_pct"] <= 100 and seen["load_1m"] >= 0
    with machine.Sampler(interval_s=0.05) as sampler:
        sum(i * i for i in range(300_000))
        time.sleep(0.2)
    summary = sampler.summary()
    assert summary["samples"] >= 2 and 0 < summary["cpu_busy_pct_mean"] <= 100
    assert summary["load_1m_min"] <= summary["load_1m_max"] and summary["seconds"] >= 0.2


def test_the_lock_does_not_move_with_the_caches(tmp_path, monkeypatch):
    monkeypatch.delenv("KDLIB_SUITE_LOCK", raising=False)
    monkeypatch.setenv("KDLIB_CACHE_DIR", str(tmp_path / "one"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "two"))
    first = runner.lock_path()
    monkeypatch.setenv("KDLIB_CACHE_DIR", str(tmp_path / "three"))
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert runner.lock_path() == first and tmp_path not in first.parents
    assert first.parent in runner.LOCK_DIRS
    monkeypatch.setenv("KDLIB_SUITE_LOCK", str(tmp_path / "explicit.lock"))
    assert runner.lock_path() == tmp_path / "explicit.lock"


def test_the_trace_and_the_microbenchmarks_share_the_lock(tmp_path, monkeypatch):
    """A suite holding the lock refuses a trace run and a microbenchmark suite, whatever their caches."""
    from kdlib.experiments.microbench import SuiteParams, suite
    from kdlib.experiments.trace import params as trace_params, run as trace_run

    monkeypatch.delenv("KDLIB_SUITE_LOCK", raising=False)
    monkeypatch.setattr(runner, "LOCK_DIRS", (tmp_path / "machine",))  # this test's own machine-wide place
    (tmp_path / "machine").mkdir()
    # Other caches, but the built tools linked (as the session's cache): the trace's schedule
    # tool is not built again (a Go build of 17-50 s) before the lock is tried.
    built = paths.cache_root() / "bin"
    for cache in ("elsewhere", "another"):
        (tmp_path / cache).mkdir()
        (tmp_path / cache / "bin").symlink_to(built.resolve(), target_is_directory=True)
    with runner.suite_lock("holder"):
        monkeypatch.setenv("KDLIB_CACHE_DIR", str(tmp_path / "elsewhere"))
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        with pytest.raises(SuiteBusyError, match="holder"):
            trace_run.run_trace(trace_params.TraceParams(run_id="t", functions=20, minutes=1, warmup_minutes=0,
                                                         systems=("Dirigent",)), root=tmp_path, progress=False)
        monkeypatch.setenv("KDLIB_CACHE_DIR", str(tmp_path / "another"))
        with pytest.raises(SuiteBusyError, match="holder"):
            suite.run_suite(SuiteParams(run_id="m", benches=("scale-pods",), scale_pods=(5,),
                                        baselines=("k8s+",)), root=tmp_path, progress=False)
