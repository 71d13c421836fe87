"""The Azure Functions 2019 trace: read a directory in its format, check it, cut a subset.

A trace directory holds ``invocations.csv`` (HashOwner, HashApp, HashFunction, Trigger,
then one column per trace minute with that minute's invocation count; the minute
numbers need not start at 1), ``durations.csv`` (per-function execution-time
percentiles in ms) and, for the original's schedule, ``memory.csv`` (allocated-memory
percentiles in MiB: the loader draws a memory size per invocation). The shipped sample,
``data/azure_500/``, is checked against the sha256 sums in its README before use, so a
changed file cannot pass as the paper's data.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import TraceDataError

REPO = Path(__file__).resolve().parents[3]
#: The sample the original artifact replays (500 functions; README with source and checksums).
SHIPPED = REPO / "data" / "azure_500"
ID_COLUMNS = ("HashOwner", "HashApp", "HashFunction")
INVOCATION_COLUMNS = (*ID_COLUMNS, "Trigger")
#: The duration percentiles a runtime is drawn between, with the quantile each one stands for.
PERCENTILES = {"percentile_Average_0": 0.0, "percentile_Average_1": 0.01, "percentile_Average_25": 0.25,
               "percentile_Average_50": 0.50, "percentile_Average_75": 0.75, "percentile_Average_99": 0.99,
               "percentile_Average_100": 1.0}
#: The memory percentiles the loader draws a (discarded) memory size between, with their quantiles.
MEMORY_PERCENTILES = {"AverageAllocatedMb_pct1": 0.01, "AverageAllocatedMb_pct5": 0.05,
                      "AverageAllocatedMb_pct25": 0.25, "AverageAllocatedMb_pct50": 0.50,
                      "AverageAllocatedMb_pct75": 0.75, "AverageAllocatedMb_pct95": 0.95,
                      "AverageAllocatedMb_pct99": 0.99, "AverageAllocatedMb_pct100": 1.0}
#: How ``subset`` picks functions: the first N of the file (as the original), or N at random (seeded).
SUBSET_RULES = ("first", "random")
_README_ROW = re.compile(r"^\|\s*(?P<name>[\w.]+\.csv)\s*\|\s*(?P<bytes>\d+)\s*\|\s*(?P<sha>[0-9a-f]{64})\s*\|", re.M)


@dataclass(frozen=True)
class Trace:
    """Per-function minute counts and duration percentiles, in the same function order.

    ``counts`` is an int array (functions × minutes); ``functions`` the function hashes;
    ``durations`` one row per function with the :data:`PERCENTILES` columns (ms);
    ``memory`` the same with the :data:`MEMORY_PERCENTILES` columns (MiB), None when the
    directory has no ``memory.csv``.
    """

    source: str
    functions: tuple[str, ...]
    minutes: tuple[int, ...]
    counts: np.ndarray = field(repr=False)
    durations: pd.DataFrame = field(repr=False)
    #: Each function's row in the full file: Deployment ``trace-<row>`` replays it, as in the original.
    rows: tuple[int, ...] = ()
    subset: dict = field(default_factory=dict)
    memory: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def invocations(self) -> int:
        return int(self.counts.sum())

    def describe(self) -> dict:
        """What the metadata and the notebook say about the trace of a run."""
        active = int((self.counts.sum(axis=1) > 0).sum())
        return {"source": self.source, "functions": len(self.functions), "active_functions": active,
                "minutes": len(self.minutes), "first_minute_column": self.minutes[0] if self.minutes else None,
                "invocations": self.invocations, "subset": dict(self.subset)}


def expected_checksums(directory: Path) -> dict[str, str]:
    """``{file name: sha256}`` from the table in ``directory/README.md`` (empty without one)."""
    readme = Path(directory) / "README.md"
    if not readme.is_file():
        return {}
    return {m["name"]: m["sha"] for m in _README_ROW.finditer(readme.read_text(encoding="utf-8"))}


def verify_checksums(directory: Path) -> dict[str, str]:
    """Check every file the README lists; raises :class:`TraceDataError` on a mismatch."""
    directory = Path(directory)
    expected = expected_checksums(directory)
    for name, sha in expected.items():
        path = directory / name
        if not path.is_file():
            raise TraceDataError(f"{path} is missing (its README lists it with a checksum)")
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        if actual != sha:
            raise TraceDataError(f"{path} has sha256 {actual}, its README says {sha}: the file was changed")
    return expected


def _read_csv(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise TraceDataError(f"{path} is missing (a trace directory needs invocations.csv and durations.csv)")
    frame = pd.read_csv(path, dtype={c: str for c in required if c.startswith("Hash") or c == "Trigger"})
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise TraceDataError(f"{path} lacks the column(s) {', '.join(missing)}")
    return frame


def load(directory: Path | str = SHIPPED, *, verify: bool | None = None) -> Trace:
    """Read a trace directory in the Azure 2019 format.

    ``verify`` checks the README's checksums (default: when the README lists any).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise TraceDataError(f"trace directory {directory} does not exist")
    if verify is None or verify:
        listed = verify_checksums(directory)
        if verify and not listed:
            raise TraceDataError(f"{directory}/README.md lists no checksums to verify")
    inv = _read_csv(directory / "invocations.csv", INVOCATION_COLUMNS)
    minute_columns = [c for c in inv.columns if c not in INVOCATION_COLUMNS]
    if not minute_columns:
        raise TraceDataError(f"{directory / 'invocations.csv'} has no minute columns after {', '.join(INVOCATION_COLUMNS)}")
    bad_names = [c for c in minute_columns if not str(c).strip().isdigit()]
    if bad_names:
        raise TraceDataError(f"{directory / 'invocations.csv'}: minute columns must be integers, found {bad_names[:3]}")
    minutes = tuple(int(c) for c in minute_columns)
    counts = inv[minute_columns].apply(pd.to_numeric, errors="coerce")
    if counts.isna().to_numpy().any():
        row, col = np.argwhere(counts.isna().to_numpy())[0]
        raise TraceDataError(f"{directory / 'invocations.csv'}: non-numeric count {inv.iloc[row][minute_columns[col]]!r} "
                             f"for function {inv.iloc[row]['HashFunction']} in minute column {minute_columns[col]}")
    values = counts.to_numpy(dtype=float)
    if (values < 0).any() or (values != np.floor(values)).any():
        raise TraceDataError(f"{directory / 'invocations.csv'}: counts must be whole numbers ≥ 0")
    index = pd.MultiIndex.from_frame(inv[list(ID_COLUMNS)])
    durations = _per_function(directory / "durations.csv", PERCENTILES, index, "duration")
    memory = (_per_function(directory / "memory.csv", MEMORY_PERCENTILES, index, "memory")
              if (directory / "memory.csv").is_file() else None)
    return Trace(str(directory), tuple(inv["HashFunction"]), minutes, values.astype(np.int64), durations,
                 tuple(range(len(inv))), memory=memory)


def _per_function(path: Path, columns: dict, index: pd.MultiIndex, what: str) -> pd.DataFrame:
    """``columns`` of ``path`` for every function of ``index``, in its order (first row of a duplicate)."""
    keyed = _read_csv(path, (*ID_COLUMNS, *columns)).set_index(list(ID_COLUMNS))
    if keyed.index.has_duplicates:
        keyed = keyed[~keyed.index.duplicated()]
    missing = ~index.isin(keyed.index)
    if missing.any():
        raise TraceDataError(f"{path} has no row for {int(missing.sum())} function(s) of "
                             f"invocations.csv, e.g. {index[missing][0][-1]}")
    values = keyed.loc[index, list(columns)].apply(pd.to_numeric, errors="coerce").reset_index(drop=True)
    if values.isna().to_numpy().any():
        raise TraceDataError(f"{path}: non-numeric {what} percentile")
    return values


def subset(trace: Trace, functions: int | None = None, minutes: int | None = None, seed: int = 42,
           rule: str = "first") -> Trace:
    """The first ``minutes`` minute columns of ``functions`` functions: the first ones of the
    file (``rule="first"``, as the original: its ``#traces = N`` replays the first N), or
    chosen at random with ``seed`` (``rule="random"``).

    The chosen functions keep their order in the file, so the original's function
    numbering (its n-th Deployment replays the n-th row) is kept for the whole sample.
    """
    if rule not in SUBSET_RULES:
        raise TraceDataError(f"subset rule must be one of {SUBSET_RULES}, got {rule!r}")
    n_functions, n_minutes = trace.counts.shape
    if minutes is not None:
        if minutes < 1:
            raise TraceDataError(f"minutes must be ≥ 1, got {minutes}")
        if minutes > n_minutes:
            raise TraceDataError(f"asked for {minutes} minutes, but {trace.source} has only {n_minutes}")
    if functions is not None:
        if functions < 1:
            raise TraceDataError(f"functions must be ≥ 1, got {functions}")
        if functions > n_functions:
            raise TraceDataError(f"asked for {functions} functions, but {trace.source} has only {n_functions}")
    rows = np.arange(n_functions)
    picked = functions is not None and functions < n_functions
    if picked and rule == "random":
        rows = np.sort(np.random.default_rng(seed).choice(n_functions, size=functions, replace=False))
    elif picked:
        rows = rows[:functions]
    m = n_minutes if minutes is None else minutes
    note = {"functions": None if functions is None else functions, "of_functions": n_functions,
            "rule": rule if picked else "all", "minutes": m, "of_minutes": n_minutes,
            "seed": seed if picked and rule == "random" else None}
    return Trace(trace.source, tuple(trace.functions[i] for i in rows), trace.minutes[:m],
                 trace.counts[rows, :m].copy(), trace.durations.iloc[rows].reset_index(drop=True),
                 tuple(trace.rows[i] for i in rows), {**trace.subset, **note},
                 None if trace.memory is None else trace.memory.iloc[rows].reset_index(drop=True))


#: The largest schedule built here: about 100 bytes an invocation in the schedule and as
#: many again in the replay's records, so 5 million is about a gigabyte; the shipped
#: sample's 30 minutes are 175,177.
MAX_SCHEDULED_INVOCATIONS = 5_000_000


def scheduled_invocations(trace: Trace, original_extra: bool = True) -> int:
    """How many invocations the schedule of ``trace`` will hold, known before it is built
    (the loader's extra one per active function-minute included)."""
    return trace.invocations + (int((trace.counts > 0).sum()) if original_extra else 0)


def replay_problems(trace: Trace, original_extra: bool = True) -> list[str]:
    """Why the (subset) ``trace`` cannot be replayed: no invocation, durations that are not
    finite non-negative numbers, or a schedule too large to build (estimated first)."""
    found = []
    durations = trace.durations[list(PERCENTILES)].to_numpy(dtype=float)
    bad = ~np.isfinite(durations) | (durations < 0)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        found.append(f"trace: {int(bad.any(axis=1).sum())} function(s) have a negative or infinite duration "
                     f"percentile, e.g. {trace.functions[row]} {list(PERCENTILES)[col]} = {durations[row, col]}")
    total = scheduled_invocations(trace, original_extra)
    if total == 0:
        found.append(f"trace: the chosen {len(trace.functions)} function(s) and {len(trace.minutes)} minute(s) "
                     "have no invocation: nothing to replay")
    elif total > MAX_SCHEDULED_INVOCATIONS:
        found.append(f"trace: the chosen functions and minutes make {total:,} invocations; at most "
                     f"{MAX_SCHEDULED_INVOCATIONS:,} (about 1 GB of schedule): choose fewer functions or minutes")
    return found
