"""The microbenchmarks' files in the results store, written atomically and read back as DataFrames.

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

import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ... import store
from ...log import get as get_logger
from ...store import run_dir, write_atomic

log = get_logger(__name__)

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


def log_path(directory: Path, key: RunKey, name: str = "e2e") -> Path:
    return directory / f"{name}.{key.suffix}.log"


def timeline_path(directory: Path, key: RunKey) -> Path:
    return directory / f"timeline.{key.suffix}.csv"


def meta_path(directory: Path, key: RunKey) -> Path:
    return directory / f"meta.{key.suffix}.json"


#: The integrity model of every result file (kdlib.store), the same for the trace.
DamagedLog = store.DamagedFile
sha256 = store.sha256


def format_log(total_us: int, fields: dict[str, Any]) -> str:
    lines = [f"{k}: {v}" for k, v in fields.items()]
    return "\n".join([*lines, f"total: {int(total_us)} us"]) + "\n"


def parse_log(text: str) -> int:
    """The ``total: <us> us`` value of a log (ours or the original artifact's).

    Exactly one complete total line: a log cut mid-number or with a second total
    appended is damaged. (Our own logs are also checked against their metadata.)
    """
    totals = list(_TOTAL.finditer(text))
    if not totals:
        raise DamagedLog("no `total: <microseconds> us` line")
    if len(totals) > 1:
        raise DamagedLog(f"{len(totals)} total lines; a log has one")
    return int(float(totals[0].group("us")))


def parse_log_name(name: str) -> tuple[str, RunKey] | None:
    """``e2e.k8s+.100.r2.log`` → ("e2e", RunKey(bench="", "k8s+", 100, 2)); None if not a log."""
    match = _LOG_FILE.match(name)
    if not match:
        return None
    key = RunKey("", match["baseline"], int(match["scale"]), int(match["repeat"] or 0))
    return match["name"], key


def write_run(directory: Path, key: RunKey, total_us: int, timeline: pd.DataFrame,
              meta: dict[str, Any], log_fields: dict[str, Any]) -> Path:
    """Save one finished run; the log goes last so that only complete runs look finished.

    The metadata carries a checksum of the timeline and of the log, so that a damaged or
    edited file is detected when it is read back.
    """
    timeline_text = timeline.to_csv(index=False)
    log_text = format_log(total_us, log_fields)
    write_atomic(timeline_path(directory, key), timeline_text)
    store.write_json(meta_path(directory, key), {**meta, "sha256": {"log": sha256(log_text),
                                                                     "timeline": sha256(timeline_text)}})
    return write_atomic(log_path(directory, key), log_text)


def write_failed(directory: Path, key: RunKey, timeline: pd.DataFrame, meta: dict[str, Any]) -> None:
    """Save what a failed run saw (its partial timeline and why), but no log: it is redone next time."""
    write_atomic(timeline_path(directory, key), timeline.to_csv(index=False))
    store.write_json(meta_path(directory, key), meta)


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise DamagedLog(f"{path.name} is not text") from None


def read_run(directory: Path, key: RunKey, name: str = "e2e") -> tuple[int, str]:
    """(total in µs, source) of one log, after checking it against its metadata.

    Our own logs must match the checksum in their ``meta`` file; a log that says it was
    written by kdlib but has no metadata is damaged, not an original-format log.
    Raises :class:`DamagedLog` naming the file.
    """
    path = log_path(directory, key, name)
    try:
        text = _read_text(path)
        total_us = parse_log(text)
        meta_file = meta_path(directory, key)
        if name != "e2e" or (not meta_file.is_file() and "\nmetric: " not in f"\n{text}"):
            return total_us, "log file (original format)"
        if not meta_file.is_file():
            raise DamagedLog(f"its metadata {meta_file.name} is missing")
        try:
            meta = json.loads(_read_text(meta_file))
        except ValueError:
            raise DamagedLog(f"its metadata {meta_file.name} is not valid JSON") from None
        expected = (meta.get("sha256") or {}).get("log")
        if expected and expected != sha256(text):
            raise DamagedLog("its content does not match the checksum in its metadata")
        return total_us, "measured (kdlib)"
    except DamagedLog as error:
        raise DamagedLog(f"{path}: {error}") from None


def finished_total(directory: Path, key: RunKey) -> int | None:
    """The total of a finished run, or None when it must be (re)done: no log, or a damaged one."""
    if not log_path(directory, key).is_file():
        return None
    try:
        return read_run(directory, key)[0]
    except DamagedLog as error:
        log.warning("redoing a damaged run: %s", error)
        return None


COLUMNS = ["bench", "run_id", "name", "baseline", "scale", "repeat", "total_us", "total_s", "source"]


def load_dir(directory: Path | str, bench: str | None = None, run_id: str | None = None) -> pd.DataFrame:
    """Every log in ``directory`` as a tidy DataFrame (one row per log file).

    Works for our result directories and for a directory of the original artifact's
    logs (``bench`` and ``run_id`` default to the directory's parent and own name).
    A damaged log is a row with no number and ``source`` "damaged: <why>".
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
            total_us, source = read_run(directory, key, name)
            total: float | None = float(total_us)
        except DamagedLog as error:
            total, source = None, f"damaged: {str(error).split(': ', 1)[-1]}"
        rows.append({"bench": bench, "run_id": run_id, "name": name, "baseline": key.baseline,
                     "scale": key.scale, "repeat": key.repeat, "total_us": total,
                     "total_s": None if total is None else total / 1e6, "source": source})
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.sort_values(["name", "baseline", "scale", "repeat"], kind="stable").reset_index(drop=True)


def load(bench: str, run_id: str, root: Path | None = None) -> pd.DataFrame:
    """The runs of one bench in one suite, as the notebook plots them."""
    directory = run_dir(bench, run_id, root)
    if not directory.is_dir():
        raise FileNotFoundError(f"no results for {bench} in run {run_id!r} at {directory}")
    return load_dir(directory, bench, run_id)


def load_timelines(bench: str, run_id: str, root: Path | None = None) -> pd.DataFrame:
    """Every finished, undamaged run's timeline of one bench, concatenated with its run key."""
    directory = run_dir(bench, run_id, root)
    frames = []
    for path in sorted(directory.glob("e2e.*.log")):
        parsed = parse_log_name(path.name)
        if parsed is None:
            continue
        key = parsed[1]
        timeline_file = timeline_path(directory, key)
        try:
            read_run(directory, key)
            text = _read_text(timeline_file)
            expected = (json.loads(meta_path(directory, key).read_text()).get("sha256") or {}).get("timeline")
            if expected and expected != sha256(text):
                raise DamagedLog(f"{timeline_file}: its content does not match the checksum in its metadata")
            frame = pd.read_csv(io.StringIO(text))
        except (DamagedLog, OSError, ValueError) as error:
            log.warning("leaving out a damaged run's timeline: %s", error)
            continue
        frame.insert(0, "repeat", key.repeat)
        frame.insert(0, "scale", key.scale)
        frame.insert(0, "baseline", key.baseline)
        frame.insert(0, "bench", bench)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["bench", "baseline", "scale", "repeat", "kind", "object", "stage", "t", "node"])
    return pd.concat(frames, ignore_index=True)


def digest(run_id: str, benches: list[str], root: Path | None = None) -> str:
    """One checksum of every file of a run: the book compares it with the executed notebook's."""
    h = hashlib.sha256()
    for bench in sorted(benches):
        directory = run_dir(bench, run_id, root)
        for path in sorted(directory.glob("*")) if directory.is_dir() else []:
            if path.suffix in (".log", ".json", ".csv"):
                h.update(f"{bench}/{path.name}\0".encode())
                h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def load_metas(bench: str, run_id: str, root: Path | None = None) -> dict[RunKey, dict[str, Any]]:
    """The metadata of every finished, undamaged run of one bench, by run key."""
    directory = run_dir(bench, run_id, root)
    found = {}
    for path in sorted(directory.glob("e2e.*.log")) if directory.is_dir() else []:
        parsed = parse_log_name(path.name)
        if parsed is None:
            continue
        key = RunKey(bench, parsed[1].baseline, parsed[1].scale, parsed[1].repeat)
        try:
            read_run(directory, key)
            found[key] = json.loads(_read_text(meta_path(directory, key)))
        except (DamagedLog, OSError, ValueError) as error:
            log.warning("leaving out a damaged run's metadata: %s", error)
    return found
