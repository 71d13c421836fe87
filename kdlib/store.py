"""The results store: run directories under ``results/``, atomic writes, resume.

Layout: ``results/<experiment>/<run_id>/`` holds one experiment's files of one run
(``results/scale-pods/my-run/``, ``results/trace/my-run/``); ``results/suites/<run_id>.json``
records what each suite did. Every write goes through a temporary file and a rename, so
an interrupted write never leaves a file under its final name.

One integrity model for every result file: a finished result is sealed by the sha256 of
its content, recorded in its metadata (:func:`sealed`); every read checks the seal
(:func:`check_seal`) and a mismatch raises :class:`DamagedFile` naming why, which readers
turn into a "damaged: why" row and resume into a redo. Run ids are checked once, here,
for every experiment (:func:`run_id_problem`): they name directories.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from . import paths

FILE_MODE = 0o644  # results are meant to be read and shared
MAX_RUN_ID = 100  # characters: run ids name files and directories
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class DamagedFile(ValueError):
    """A result file that cannot be trusted: its message names the file and what is wrong."""


def run_id_problem(run_id: Any) -> str | None:
    """Why ``run_id`` cannot name a run's directories (one rule for every experiment), or None
    (:data:`kdlib.params.run_id` checks every experiment's ``run_id`` parameter with it).

    The whole id must match (``fullmatch``: Python's ``$`` would let a trailing newline
    through), start with a letter or digit (so never ``.`` or ``..``) and be short enough
    for a file name.
    """
    if run_id is None or run_id == "":
        return "required (e.g. -p run_id my-first-run); it names results/<experiment>/<run_id>/"
    if isinstance(run_id, (int, float)) and not isinstance(run_id, bool):
        return (f"{run_id!r} is a number (papermill's -p reads digits as one); give it as text "
                f"with -r run_id {run_id}, or start it with a letter")
    if not isinstance(run_id, str):
        return f"{run_id!r} is a {type(run_id).__name__}, not text"
    if len(run_id) > MAX_RUN_ID:
        return f"{len(run_id)} characters; at most {MAX_RUN_ID} (it names files and directories)"
    if not _RUN_ID.fullmatch(run_id):
        return (f"{run_id!r} must be letters, digits, '.', '_' or '-' (no '/', spaces or newlines), "
                "starting with a letter or digit")
    return None


def sha256(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def check_seal(name: str, content: str | bytes, meta: dict[str, Any] | None, what: str = "log") -> None:
    """Raise :class:`DamagedFile` unless ``content`` matches the checksum ``meta`` records for ``what``.

    ``meta`` None: the file has no metadata, which for a file kdlib wrote means it is damaged.
    """
    if meta is None:
        raise DamagedFile(f"{name}: its metadata is missing or unreadable")
    expected = (meta.get("sha256") or {}).get(what)
    if not expected:
        raise DamagedFile(f"{name}: its metadata records no checksum of the {what}")
    if expected != sha256(content):
        raise DamagedFile(f"{name}: its content does not match the checksum in its metadata "
                          "(cut, edited or appended to after it was written)")


def root(given: Path | None = None) -> Path:
    """``given``, else ``$KDLIB_RESULTS_DIR``, else the checkout's ``results/``."""
    return Path(given) if given is not None else paths.results_root()


def run_dir(experiment: str, run_id: str, results_root: Path | None = None) -> Path:
    problem = run_id_problem(run_id)
    if problem:  # a last guard: callers validate parameters before this
        raise ValueError(f"run_id: {problem}")
    return root(results_root) / experiment / run_id


def suite_path(run_id: str, results_root: Path | None = None) -> Path:
    return root(results_root) / "suites" / f"{run_id}.json"


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a hidden temporary file and a rename.

    An interrupted write leaves at most a ``.<name>.*.partial`` file, never a file
    under the final name.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: Path, value: Any) -> Path:
    return write_atomic(path, json.dumps(value, indent=2, default=str) + "\n")


def remove_partials(directory: Path) -> None:
    """Remove what interrupted writes left in ``directory`` (resume starts clean)."""
    if directory.is_dir():
        for stale in directory.glob(".*.partial"):
            stale.unlink(missing_ok=True)
