"""Helpers shared by the tests: what a clean stop leaves, and running the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
#: The caller's ``KDLIB_*`` variables, as pytest found them (conftest drops them from the environment).
INHERITED: dict[str, str] = {}


def reference_results() -> Path:
    """The results folder the read-only tests (the book's) read: the one ``$KDLIB_RESULTS_DIR``
    named when pytest started, else the checkout's ``results/``. Whatever a test writes goes
    to a temporary folder (the session's ``$KDLIB_RESULTS_DIR``, or the test's own)."""
    given = INHERITED.get("KDLIB_RESULTS_DIR")
    return Path(given).expanduser() if given else REPO / "results"


def our_processes(state_dir: Path) -> list[int]:
    """Pids whose command line names ``state_dir``: what a clean stop must leave none of."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if str(state_dir).encode() in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def command_lines(pids: list[int]) -> str:
    """What ``pids`` are, one line each (for an assertion's message)."""
    lines = []
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            lines.append(f"{pid}: {argv[:300]}")
        except OSError:
            lines.append(f"{pid}: (gone)")
    return "\n".join(lines)


def listening_ports() -> set[int]:
    """TCP ports in LISTEN state on this machine, from /proc/net/tcp{,6}."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def assert_clean(state_dir: Path, ports: dict[str, int] | None) -> None:
    assert our_processes(state_dir) == [], "a process of the cluster is still running"
    assert not state_dir.exists(), f"{state_dir} was not removed"
    if ports:
        still = set(ports.values()) & listening_ports()
        assert not still, f"ports still listening: {still}"


def run_kdlib(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kdlib", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    """``predicate()``'s first true value, looked at every ``interval`` s; fails naming ``what``
    after ``timeout`` s. The tests wait for a condition, not for a time."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def read_stderr_until(proc: subprocess.Popen, marker: str) -> str:
    """What ``proc`` wrote to stderr up to and including ``marker`` (one character at a time:
    tqdm redraws its line with \\r); fails if the process ends first."""
    buffer = ""
    while marker not in buffer:
        chunk = proc.stderr.read(1)
        assert chunk, f"the process ended before printing {marker!r}: {buffer[-2000:]}"
        buffer += chunk
    return buffer


def wait_or_kill(process: subprocess.Popen, timeout: float) -> None:
    """Wait up to ``timeout`` s for ``process`` to exit; past it, SIGKILL and reap it."""
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def running_kubelets() -> list[int]:
    """Pids of every kubelet running on this machine (whoever started it)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "kubelet":
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def assert_sysctls_back(before: dict[str, str]) -> None:
    """The machine-wide sysctls a kubelet changes are as ``before``; call it once the test's
    own kubelets are gone.

    They are one kernel's: a kubelet someone else runs (another suite beside this one, a real
    run) sets them too, and its owner writes the machine's values back when it ends. So a
    value that differs passes only with that explanation: now, another kubelet runs and the
    value is the one a kubelet sets; or, before, the value was a kubelet's (someone else's
    kubelet ran then) and it is now back to another (the machine's own, restored by its owner).
    With no kubelet on the machine before or after, every value must be back exactly."""
    from kdlib.cluster.local import hostnet
    from kdlib.cluster.ssh.kubelets import KUBELET_SETS

    now = hostnet.read_sysctls(tuple(before))
    differ = {name: (was, now.get(name)) for name, was in before.items() if now.get(name) != was}
    if not differ:
        return
    others = running_kubelets()
    unexplained = {name: (was, value) for name, (was, value) in differ.items()
                   if not (others and value == KUBELET_SETS.get(name)) and was != KUBELET_SETS.get(name)}
    assert not unexplained, (f"sysctls not written back (before, now): {unexplained}; "
                             f"other kubelets running: {others or 'none'}")
