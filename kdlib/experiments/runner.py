"""What every experiment suite shares: the machine-wide lock and an honest suite record.

The record ``results/suites/<run_id>.json`` keeps every attempt at a run id with its end
state — ``finished``, ``failed`` (with the reason) or ``interrupted`` (with the signal) —
and the outcome of each run of that attempt. A record still saying ``running`` whose
process is gone is read back as ``killed``.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .. import paths, provenance, store
from ..errors import SuiteBusyError


def lock_path() -> Path:
    """The machine-wide lock file (``$KDLIB_SUITE_LOCK`` moves it, e.g. for tests)."""
    return Path(os.environ.get("KDLIB_SUITE_LOCK") or paths.cache_root() / "suite.lock")


@contextmanager
def suite_lock(run_id: str) -> Iterator[None]:
    """Hold the machine-wide suite lock, or fail at once naming the holder."""
    path = lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise SuiteBusyError(f"another experiment suite is running on this machine ({holder}); "
                             "wait for it to finish or stop it, then run again") from None
    handle.truncate(0)
    handle.write(f"pid {os.getpid()}, run_id {run_id}, since {provenance.now()}")
    handle.flush()
    try:
        yield
    finally:
        handle.truncate(0)
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def end_state(error: BaseException | None) -> tuple[str, str]:
    """(state, reason) of an attempt that ended with ``error`` (None: it finished)."""
    if error is None:
        return "finished", ""
    if isinstance(error, KeyboardInterrupt):
        signame = "SIGTERM" if type(error).__name__ == "_Terminated" else "SIGINT"
        return "interrupted", signame
    return "failed", f"{type(error).__name__}: {error}".splitlines()[0]


def _alive(pid: int) -> bool:
    if pid <= 0:  # os.kill(-1, 0) would ask about every process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class SuiteRecord:
    """The record of one run id, appended to by each attempt and written atomically."""

    def __init__(self, run_id: str, experiment: str, root: Path | None = None) -> None:
        self.path = store.suite_path(run_id, root)
        self.data: dict[str, Any] = {"run_id": run_id, "experiment": experiment, "attempts": []}
        previous = load(run_id, root) if self.path.is_file() else None
        if previous is not None:
            self.data["attempts"] = previous.get("attempts", [])
        self.attempt: dict[str, Any] = {}

    def begin(self, parameters: dict[str, Any], not_measured: dict[str, str]) -> None:
        self.data.update(parameters=parameters, not_measured=not_measured, provenance=provenance.collect())
        self.attempt = {"pid": os.getpid(), "started_at": provenance.now(), "state": "running", "outcomes": []}
        self.data["attempts"].append(self.attempt)
        self.write()

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        self.write()

    def end(self, error: BaseException | None, **fields: Any) -> None:
        state, reason = end_state(error)
        self.attempt.update(state=state, reason=reason, ended_at=provenance.now())
        self.data.update(fields)
        self.write()

    def write(self) -> None:
        last = self.data["attempts"][-1] if self.data["attempts"] else {}
        self.data["state"] = last.get("state", "new")
        store.write_json(self.path, self.data)


def with_killed(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` with every ``running`` attempt whose process is gone read as ``killed``
    (the same rule for every experiment's record; an attempt without a pid counts as gone)."""
    for attempt in record.get("attempts", []):
        if attempt.get("state") == "running" and not _alive(int(attempt.get("pid") or 0)):
            attempt["state"], attempt["reason"] = "killed", "its process is gone (SIGKILL or a crash)"
    if record.get("attempts"):
        record["state"] = record["attempts"][-1]["state"]
    return record


def load(run_id: str, root: Path | None = None) -> dict[str, Any]:
    """A suite record; a ``running`` attempt whose process is gone reads as ``killed``."""
    return with_killed(json.loads(store.suite_path(run_id, root).read_text()))


def suite_holder() -> str | None:
    """Who holds the machine-wide suite lock ("pid …, run_id …, since …"), or None when no suite runs."""
    path = lock_path()
    if not path.is_file():
        return None
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            return handle.read().strip() or "unknown"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


__all__ = ["SuiteRecord", "load", "lock_path", "suite_lock", "end_state", "with_killed", "suite_holder"]
