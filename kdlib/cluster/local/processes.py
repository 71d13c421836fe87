"""Local processes: start one component per process, probe its health, stop it.

Each component runs in its own session (so a terminal's Ctrl-C reaches kdlib, which
then stops them in order) with its output in ``<state>/logs/<name>.log`` and its pid
in ``<state>/run/<name>.pid``. Pid files let ``down`` stop a cluster whose owner was
killed; a pid counts as ours only while its command line names our state directory,
so a recycled pid is never signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from ...errors import ComponentError
from ...wait import wait_until
from ..controlplane.components import Component
from ..signals import signals_deferred

LOG_TAIL_LINES = 25


class Processes:
    """The processes of one local cluster, tracked through files in its state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.run_dir = state_dir / "run"
        self.log_dir = state_dir / "logs"
        self._children: dict[int, subprocess.Popen] = {}  # started here; reaped in stop()

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def log_tail(self, name: str, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path(name).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def start(self, component: Component) -> int:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with signals_deferred():  # a Ctrl-C in here would leave a child nobody records
            with open(self.log_path(component.name), "ab") as log:
                process = subprocess.Popen(
                    component.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.state_dir,
                    start_new_session=True,
                )
            self._children[process.pid] = process
            (self.run_dir / f"{component.name}.pid").write_text(str(process.pid))
        return process.pid

    def wait_healthy(self, component: Component, deadline: float) -> None:
        """Poll the health endpoint until it answers or the deadline passes."""
        pid = self.pid(component.name)

        def healthy() -> bool:
            if pid is None or not self.alive(pid):
                raise ComponentError(component.name, "exited during start-up", self.log_tail(component.name))
            return component.probe.ok()

        wait_until(healthy, deadline=deadline, interval=0.1, error=lambda: ComponentError(
            component.name, f"not healthy at {component.probe.url} before the start-up deadline",
            self.log_tail(component.name)))

    def pid(self, name: str) -> int | None:
        try:
            return int((self.run_dir / f"{name}.pid").read_text())
        except (OSError, ValueError):
            return None

    def pids(self) -> dict[str, int]:
        """Our live processes by component name, from the pid files."""
        if not self.run_dir.is_dir():
            return {}
        found = {}
        for pid_file in sorted(self.run_dir.glob("*.pid")):
            pid = self.pid(pid_file.stem)
            if pid is not None and self.alive(pid):
                found[pid_file.stem] = pid
        return found

    def cpu_seconds(self) -> dict[str, float]:
        """The CPU time each live process has used so far (user + system, with its reaped
        children's), by component name."""
        found = {}
        for name, pid in self.pids().items():
            seconds = process_cpu_seconds(pid)
            if seconds is not None:
                found[name] = seconds
        return found

    def exit_status(self, name: str) -> int | None:
        """The exit status of a component started by this object that has exited, else None."""
        pid = self.pid(name)
        child = self._children.get(pid) if pid is not None else None
        return child.poll() if child is not None else None

    def alive(self, pid: int) -> bool:
        """True when ``pid`` runs and its command line names our state directory.

        A child started here is judged by its exit status instead: between fork and
        exec its command line is still Python's.
        """
        child = self._children.get(pid)
        if child is not None:
            return child.poll() is None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        zombie = stat.rsplit(")", 1)[-1].split()[0] == "Z"
        return not zombie and str(self.state_dir).encode() in cmdline

    def stop(self, names: list[str], timeout: float = 10.0) -> list[str]:
        """Stop the named components in order: SIGTERM, then SIGKILL after ``timeout``.

        Returns the names that had to be killed.
        """
        killed = []
        for name in names:
            pid = self.pid(name)
            if pid is None or not self.alive(pid):
                continue
            self._signal(pid, signal.SIGTERM)
            if not self._wait_gone(pid, timeout):
                self._signal(pid, signal.SIGKILL)
                self._wait_gone(pid, 5.0)
                killed.append(name)
        return killed

    def _signal(self, pid: int, sig: signal.Signals) -> None:
        try:
            os.killpg(pid, sig)  # the whole session: nothing it forked stays behind
        except ProcessLookupError:
            pass

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        child = self._children.get(pid)
        try:
            return wait_until(lambda: (child is not None and child.poll() is not None) or not self.alive(pid),
                              timeout=timeout, interval=0.05)
        except TimeoutError:
            return False


def process_cpu_seconds(pid: int) -> float | None:
    """CPU seconds ``pid`` and its reaped children have used (``/proc/<pid>/stat`` utime,
    stime, cutime, cstime); None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
