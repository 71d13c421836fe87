"""The results store: run directories under ``results/``, atomic writes, resume.

Layout: ``results/<experiment>/<run_id>/`` holds one experiment's files of one run
(``results/scale-pods/my-run/``, ``results/trace/my-run/``); ``results/suites/<run_id>.json``
records what each suite did. Every write goes through a temporary file and a rename, so
an interrupted write never leaves a file under its final name.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from . import paths

FILE_MODE = 0o644  # results are meant to be read and shared


def root(given: Path | None = None) -> Path:
    """``given``, else ``$KDLIB_RESULTS_DIR``, else the checkout's ``results/``."""
    return Path(given) if given is not None else paths.results_root()


def run_dir(experiment: str, run_id: str, results_root: Path | None = None) -> Path:
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


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
