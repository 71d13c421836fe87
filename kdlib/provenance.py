"""Provenance recorded beside every result: code revision, machine, package versions."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from . import paths
from .errors import ConfigError

PACKAGES = ("kubernetes", "pandas", "altair", "papermill")


def git_revision(repo: Path | None = None) -> dict[str, Any]:
    """The checkout's revision, and whether its code has uncommitted changes."""
    try:
        repo = repo or paths.repo_root()
    except ConfigError:
        return {"git_revision": "unknown (not a checkout)", "git_dirty": False}

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10)
        return result.stdout.strip() if result.returncode == 0 else ""

    try:
        revision = git("rev-parse", "HEAD")
        # Dirty means changed code; results/ changes whenever a run writes to it.
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"))
    except (OSError, subprocess.TimeoutExpired):
        revision, dirty = "", False
    return {"git_revision": revision or "unknown", "git_dirty": dirty}


def machine() -> dict[str, Any]:
    memory_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_gib": round(memory_kib / 2**20, 1),
        "python": platform.python_version(),
        # Other work on the machine while measuring skews every number: say how busy it was.
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


def packages() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def collect() -> dict[str, Any]:
    from . import __version__

    return {"kdlib": __version__, **git_revision(), "machine": machine(), "packages": packages(), "recorded_at": now()}


#: The code that turns a run's files into what the book shows: the analysis, the reports
#: and their charts, and the notebooks (their text is on the pages). An executed notebook
#: records the digest of these files; the book refuses one whose digest is not the current
#: code's, so that no page shows the output of older code.
ANALYSIS_CODE = (
    "kdlib/stats.py", "kdlib/store.py", "kdlib/machine.py", "kdlib/baselines.py", "kdlib/publish/render.py",
    *(f"kdlib/experiments/{m}.py" for m in ("verdict", "loads", "usage")),
    *(f"kdlib/experiments/microbench/{m}.py"
      for m in ("analysis", "bottleneck", "comparison", "files", "findings", "plots", "report", "spec")),
    *(f"kdlib/experiments/trace/{m}.py" for m in ("analysis", "logs", "params", "plots", "reference", "report")),
    "notebooks/microbench.ipynb", "notebooks/trace.ipynb", "notebooks/reanalysis.ipynb",
)


def analysis_digest(repo: Path | None = None) -> str:
    """SHA-256 over :data:`ANALYSIS_CODE` (name and content of each file; a missing file counts as empty)."""
    import hashlib

    repo = repo or paths.repo_root()
    digest = hashlib.sha256()
    for name in ANALYSIS_CODE:
        path = repo / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0")
    return digest.hexdigest()
