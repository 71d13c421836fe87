"""The results store: ``results/<bench>/<run_id>/``, written atomically, read back as DataFrames.

Per measured run (bench, baseline, scale, repeat) three files, written in this order:

* ``timeline.<baseline>.<scale>[.r<k>].csv`` — tidy: one row per (object, stage) with
  seconds since the clock started (``kind``, ``object``, ``stage``, ``t``, ``node``);
* ``meta.<baseline>.<scale>[.r<k>].json`` — parameters and provenance of the run;
* ``e2e.<baseline>.<scale>[.r<k>].log`` — the original artifact's format, whose key
  line is ``total: <microseconds> us``. It is written last: its presence means the
  run finished, and a finished run is skipped when the suite runs again (resume).

Repeat 0 has no ``.r<k>`` suffix, so logs of the original artifact (``e2e``, ``_rs``,
``_sched``, ``_runtime``, ``_as``, ``_dp``) load as repeat 0.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

REPO_RESULTS = Path(__file__).resolve().parent.parent / "results"
LOG_NAMES = ("e2e", "_rs", "_sched", "_runtime", "_as", "_dp")
_LOG_FILE = re.compile(
    r"^(?P<name>e2e|_rs|_sched|_runtime|_as|_dp)\.(?P<baseline>[^.]+)\.(?P<scale>\d+)(?:\.r(?P<repeat>\d+))?\.log$")
# The original sometimes appends a success count: "total: 1234 us (99/100)".
_TOTAL = re.compile(r"^total:\s*(?P<us>\d+(?:\.\d+)?)\s*us\b", re.M)


@dataclass(frozen=True)
class RunKey:
    """Which run a file belongs to."""

    bench: str
    baseline: str
    scale: int
    repeat: int = 0

    @property
    def suffix(self) -> str:
        return f"{self.baseline}.{self.scale}" + (f".r{self.repeat}" if self.repeat else "")


def default_root() -> Path:
    """``$KDLIB_RESULTS_DIR``, else the repository's ``results/``."""
    return Path(os.environ.get("KDLIB_RESULTS_DIR") or REPO_RESULTS)


def run_dir(bench: str, run_id: str, root: Path | None = None) -> Path:
    return Path(root or default_root()) / bench / run_id


def log_path(directory: Path, key: RunKey, name: str = "e2e") -> Path:
    return directory / f"{name}.{key.suffix}.log"


def timeline_path(directory: Path, key: RunKey) -> Path:
    return directory / f"timeline.{key.suffix}.csv"


def meta_path(directory: Path, key: RunKey) -> Path:
    return directory / f"meta.{key.suffix}.json"


def is_finished(directory: Path, key: RunKey) -> bool:
    return log_path(directory, key).is_file()


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
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def remove_partials(directory: Path) -> None:
    for stale in directory.glob(".*.partial"):
        stale.unlink(missing_ok=True)


def format_log(total_us: int, fields: dict[str, Any]) -> str:
    lines = [f"{k}: {v}" for k, v in fields.items()]
    return "\n".join([*lines, f"total: {int(total_us)} us"]) + "\n"


def parse_log(text: str) -> int:
    """The ``total: <us> us`` value of a log (ours or the original artifact's)."""
    match = None
    for match in _TOTAL.finditer(text):
        pass  # the last total line wins, as in the original's plot script
    if match is None:
        raise ValueError("no `total: <microseconds> us` line")
    return int(float(match.group("us")))


def parse_log_name(name: str) -> tuple[str, RunKey] | None:
    """``e2e.k8s+.100.r2.log`` → ("e2e", RunKey(bench="", "k8s+", 100, 2)); None if not a log."""
    match = _LOG_FILE.match(name)
    if not match:
        return None
    key = RunKey("", match["baseline"], int(match["scale"]), int(match["repeat"] or 0))
    return match["name"], key


def write_run(directory: Path, key: RunKey, total_us: int, timeline: pd.DataFrame,
              meta: dict[str, Any], log_fields: dict[str, Any]) -> Path:
    """Save one finished run; the log goes last so that only complete runs look finished."""
    write_atomic(timeline_path(directory, key), timeline.to_csv(index=False))
    write_atomic(meta_path(directory, key), json.dumps(meta, indent=2, default=str) + "\n")
    return write_atomic(log_path(directory, key), format_log(total_us, log_fields))


COLUMNS = ["bench", "run_id", "name", "baseline", "scale", "repeat", "total_us", "total_s", "source"]


def load_dir(directory: Path | str, bench: str | None = None, run_id: str | None = None) -> pd.DataFrame:
    """Every log in ``directory`` as a tidy DataFrame (one row per log file).

    Works for our result directories and for a directory of the original artifact's
    logs (``bench`` and ``run_id`` default to the directory's parent and own name).
    """
    directory = Path(directory)
    bench = bench or directory.parent.name
    run_id = run_id or directory.name
    rows = []
    for path in sorted(directory.glob("*.log")):
        parsed = parse_log_name(path.name)
        if parsed is None:
            continue
        name, key = parsed
        try:
            total_us = parse_log(path.read_text())
        except ValueError:
            continue  # a log of a failed run: no total line
        rows.append({"bench": bench, "run_id": run_id, "name": name, "baseline": key.baseline,
                     "scale": key.scale, "repeat": key.repeat, "total_us": total_us,
                     "total_s": total_us / 1e6, "source": _source(directory, key)})
    return pd.DataFrame(rows, columns=COLUMNS)


def _source(directory: Path, key: RunKey) -> str:
    return "measured (kdlib)" if meta_path(directory, key).is_file() else "log file (original format)"


def load(bench: str, run_id: str, root: Path | None = None) -> pd.DataFrame:
    """The runs of one bench in one suite, as the notebook plots them."""
    directory = run_dir(bench, run_id, root)
    if not directory.is_dir():
        raise FileNotFoundError(f"no results for {bench} in run {run_id!r} at {directory}")
    return load_dir(directory, bench, run_id)


def load_timelines(bench: str, run_id: str, root: Path | None = None) -> pd.DataFrame:
    """Every run's timeline of one bench, concatenated with its run key."""
    directory = run_dir(bench, run_id, root)
    frames = []
    for log in sorted(directory.glob("e2e.*.log")):  # finished runs only
        parsed = parse_log_name(log.name)
        if parsed is None or not timeline_path(directory, parsed[1]).is_file():
            continue
        key = parsed[1]
        frame = pd.read_csv(timeline_path(directory, key))
        frame.insert(0, "repeat", key.repeat)
        frame.insert(0, "scale", key.scale)
        frame.insert(0, "baseline", key.baseline)
        frame.insert(0, "bench", bench)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["bench", "baseline", "scale", "repeat", "kind", "object", "stage", "t", "node"])
    return pd.concat(frames, ignore_index=True)


def load_meta(bench: str, run_id: str, key: RunKey, root: Path | None = None) -> dict[str, Any]:
    return json.loads(meta_path(run_dir(bench, run_id, root), key).read_text())


def suite_path(run_id: str, root: Path | None = None) -> Path:
    return Path(root or default_root()) / "suites" / f"{run_id}.json"


def load_suite(run_id: str, root: Path | None = None) -> dict[str, Any]:
    """The suite record: parameters, provenance, and what was not measured and why."""
    return json.loads(suite_path(run_id, root).read_text())
