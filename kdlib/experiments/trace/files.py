"""The trace's files in the results store, and reading them back checked.

``results/trace/<run_id>/`` holds ``run.json`` (the run's attempts), and per finished system
``meta.<key>.json`` and ``trace.<key>.log`` (:mod:`.run` writes them; the metadata seals the
log). The analysis reads a run only through here, so none of the replay's code is in its digest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ... import store
from ..runner import with_killed
from . import logs
from .params import FILE_KEYS, SYSTEMS

BENCH = "trace"


def run_dir(run_id: str, root: Path | None = None) -> Path:
    return store.run_dir(BENCH, run_id, root)


def log_path(directory: Path, system: str) -> Path:
    return directory / f"trace.{FILE_KEYS[system]}.log"


def meta_path(directory: Path, system: str) -> Path:
    return directory / f"meta.{FILE_KEYS[system]}.json"


def read_meta(directory: Path, system: str) -> dict[str, Any] | None:
    try:
        meta = json.loads(meta_path(directory, system).read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def read_system(directory: Path, system: str) -> tuple[Any, dict[str, Any]]:
    """(invocations, metadata) of a finished system, after every check of the integrity
    model; raises :class:`~kdlib.store.DamagedFile` naming why."""
    meta = read_meta(directory, system)
    frame, _ = logs.load_checked(log_path(directory, system), meta, sealed=True)
    return frame, meta or {}


def logs_dir(directory: Path, system: str) -> Path:
    """Where the component logs of a system whose cluster broke are saved."""
    return directory / f"logs.{FILE_KEYS[system]}"


def load_meta(run_id: str, system: str, root: Path | None = None) -> dict[str, Any]:
    return json.loads(meta_path(run_dir(run_id, root), system).read_text())


def load_run(run_id: str, root: Path | None = None) -> dict[str, Any]:
    """``run.json``; a ``running`` attempt whose process is gone reads as ``killed``."""
    return with_killed(json.loads((run_dir(run_id, root) / "run.json").read_text()))


def damaged_files(run_id: str, root: Path | None = None) -> list[str]:
    """Why each finished system's log of ``run_id`` cannot be trusted (empty: every one checks out)."""
    directory = run_dir(run_id, root)
    found = []
    for system in SYSTEMS:
        if log_path(directory, system).is_file():
            try:
                read_system(directory, system)
            except store.DamagedFile as error:
                found.append(str(error))
    return found
