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


#: The notebooks that analyse a run: their text is on the pages, and the kdlib modules they
#: import start the walk that finds the analysis code (:func:`analysis_modules`).
NOTEBOOKS = ("notebooks/microbench.ipynb", "notebooks/trace.ipynb", "notebooks/reanalysis.ipynb")

#: Modules the notebooks reach by import whose code does not turn a run's files into what the
#: book shows: the walk stops there (neither digested nor followed), each for the reason given.
NOT_ANALYSIS = {
    "kdlib": "the package's front door (the clusters, the version); the analysis imports its modules, not it",
    "kdlib.experiments.microbench.suite": "runs the microbenchmarks; the analysis reads their files (microbench/files.py)",
    "kdlib.experiments.trace.run": "runs the trace replay; the analysis reads its files (trace/files.py)",
    "kdlib.experiments.trace.schedule": "draws the schedule a replay sends (its input, before anything is measured)",
    "kdlib.experiments.backend": "checks the backend and inventory parameters before a run",
    "kdlib.cluster.kd_images": "fetches Kd's binaries; a parameter check before a run asks whether it can",
    "kdlib.cluster.ssh.inventory": "reads an SSH inventory; a parameter check before a run",
    "kdlib.cluster.node.config": "a real node's configuration; a parameter check reads its pod limit",
    "kdlib.publish.book": "builds the book from the executed notebooks; the reanalysis asks it only for the reference run's id",
}


def _module_file(module: str, repo: Path) -> Path | None:
    path = repo.joinpath(*module.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _kdlib_imports(source: str, module: str, is_package: bool, repo: Path) -> set[str]:
    """The kdlib modules ``source`` imports anywhere (in functions too): a package's submodule
    when one is named (``from kdlib.x import y``), else the module the names come from."""
    import ast

    package = module if is_package else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "kdlib")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                origin = ".".join(base + ([node.module] if node.module else []))
            else:
                origin = node.module or ""
            if origin.split(".")[0] != "kdlib":
                continue
            for alias in node.names:
                sub = f"{origin}.{alias.name}"
                found.add(sub if _module_file(sub, repo) else origin)
    return found


def notebook_imports(notebook: Path, repo: Path) -> set[str]:
    """The kdlib modules a notebook's code cells import (none when it does not exist)."""
    import json

    if not notebook.is_file():
        return set()
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    source = "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")
    return _kdlib_imports(source, "notebook", False, repo)


def analysis_modules(repo: Path | None = None) -> tuple[str, ...]:
    """The kdlib modules the notebooks import, and what those import in turn, stopping at
    :data:`NOT_ANALYSIS`; a package's ``__init__`` counts only where the package itself is
    imported (its parents' are re-exports). Derived, so a new analysis module cannot be left out."""
    repo = repo or paths.repo_root()
    pending = [m for notebook in NOTEBOOKS for m in notebook_imports(repo / notebook, repo)]
    seen: set[str] = set()
    while pending:
        module = pending.pop()
        path = _module_file(module, repo)
        if module in seen or module in NOT_ANALYSIS or path is None:
            continue
        seen.add(module)
        pending.extend(_kdlib_imports(path.read_text(encoding="utf-8"), module, path.name == "__init__.py", repo))
    return tuple(sorted(seen))


def analysis_code(repo: Path | None = None) -> tuple[str, ...]:
    """The files whose digest an executed notebook records: the analysis modules and the notebooks.
    The book refuses a notebook whose digest is not the current code's, so that no page shows
    the output of older code."""
    repo = repo or paths.repo_root()
    return (*(str(_module_file(m, repo).relative_to(repo)) for m in analysis_modules(repo)), *NOTEBOOKS)


def analysis_digest(repo: Path | None = None) -> str:
    """SHA-256 over :func:`analysis_code` (name and content of each file; a missing notebook counts as empty)."""
    import hashlib

    repo = repo or paths.repo_root()
    digest = hashlib.sha256()
    for name in analysis_code(repo):
        path = repo / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0")
    return digest.hexdigest()
