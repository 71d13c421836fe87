"""The invocation schedule: when each invocation is sent and how long it asks to run.

As the original's loader (invitro, the Dirigent loader) does it, per function and
minute with n > 0 invocations: n exponential gaps, rescaled so that they sum to 60 s;
the first invocation at the minute's start and the next n − 1 after the first n − 1
gaps. The loader also prepends a zero gap to every active minute, so it sends n + 1
invocations and the extra one lands on the minute's end, i.e. together with the next
minute's first (``original_extra=True``, the default, since it made the paper's
figures; ``False`` keeps the trace's exact counts).

Runtimes: a quantile q drawn uniformly in [0, 1) picks the bracket of the function's
duration percentiles (0, 1, 25, 50, 75, 99, 100) and a whole number of ms is drawn
uniformly in it; then clamped to 1 ms … 60 s.

One seeded generator (default 42) draws everything in a fixed order, so the same seed
gives the same schedule. The numbers differ from the Go loader's (another generator);
the distributions are the same.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .data import PERCENTILES, Trace

MIN_RUNTIME_MS = 1
MAX_RUNTIME_MS = 60_000
DEFAULT_SEED = 42
COLUMNS = ["function", "row", "minute", "index", "t_s", "runtime_ms", "extra"]


def draw_runtimes(rng: np.random.Generator, percentiles: np.ndarray, n: int) -> np.ndarray:
    """``n`` runtimes (ms, int) for one function whose percentiles (ms) are ``percentiles``."""
    q = rng.random(n)
    edges = np.array(list(PERCENTILES.values()))
    bracket = np.clip(np.searchsorted(edges, q, side="left"), 1, len(edges) - 1)  # q ≤ 0.01 → bracket 1 …
    lo = np.floor(percentiles[bracket - 1])
    hi = np.floor(percentiles[bracket])
    width = np.maximum(hi - lo, 0)
    runtime = lo + np.floor(rng.random(n) * width)
    runtime[q == 0] = np.floor(percentiles[0])
    return np.clip(runtime, MIN_RUNTIME_MS, MAX_RUNTIME_MS).astype(np.int64)


def minute_offsets(rng: np.random.Generator, n: int, original_extra: bool) -> np.ndarray:
    """Send times (s) within one minute for ``n`` invocations: starts at 0, gaps sum to 60 s."""
    gaps = rng.exponential(1.0, n)
    gaps *= 60.0 / gaps.sum()
    offsets = np.concatenate([[0.0], np.cumsum(gaps)])  # the last is 60 s (the minute's end)
    if not original_extra:
        offsets = offsets[:-1]
    else:
        offsets[-1] = 60.0  # exactly on the boundary, not 59.999999…
    return offsets


def build(trace: Trace, *, seed: int = DEFAULT_SEED, original_extra: bool = True) -> pd.DataFrame:
    """The schedule of ``trace``: one row per invocation, sorted by send time ``t_s``.

    Columns: ``function`` (position in the trace), ``row`` (the function's row in the
    full file: Deployment ``trace-<row>``), ``minute`` (0-based), ``index`` (within the
    function and minute), ``t_s`` (seconds from the replay's start), ``runtime_ms``
    (requested), ``extra`` (the loader's added invocation).
    """
    rng = np.random.default_rng(seed)
    percentiles = trace.durations[list(PERCENTILES)].to_numpy(dtype=float)
    frames = []
    for f in range(len(trace.functions)):
        for m in np.flatnonzero(trace.counts[f] > 0):
            n = int(trace.counts[f, m])
            offsets = minute_offsets(rng, n, original_extra)
            k = len(offsets)
            frames.append((np.full(k, f), np.full(k, m), np.arange(k), m * 60.0 + offsets,
                           draw_runtimes(rng, percentiles[f], k), np.arange(k) == n))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
            COLUMNS, ["int64", "int64", "int64", "int64", "float64", "int64", "bool"])})
    parts = [np.concatenate(column) for column in zip(*frames)]
    schedule = pd.DataFrame({"function": parts[0], "minute": parts[1], "index": parts[2], "t_s": parts[3],
                             "runtime_ms": parts[4], "extra": parts[5]})
    schedule.insert(1, "row", np.asarray(trace.rows, dtype=np.int64)[schedule["function"].to_numpy()])
    return schedule.sort_values(["t_s", "function", "index"], kind="stable").reset_index(drop=True)


def invocation_ids(schedule: pd.DataFrame, namespace: str) -> pd.Series:
    """``<namespace>/trace-<row>-<minute>/<index>``: the ID the original's log parser reads."""
    return (namespace + "/trace-" + schedule["row"].astype(str) + "-" + schedule["minute"].astype(str) + "/"
            + schedule["index"].astype(str))


def summary(schedule: pd.DataFrame) -> dict:
    """Counts the notebook and the metadata show."""
    per_second = schedule.groupby(np.floor(schedule["t_s"]).astype(int)).size() if len(schedule) else pd.Series([0])
    return {"invocations": int(len(schedule)), "extra_invocations": int(schedule["extra"].sum()),
            "functions_invoked": int(schedule["function"].nunique()),
            "mean_per_s": round(len(schedule) / max(1.0, float(schedule["t_s"].max() if len(schedule) else 1)), 2),
            "peak_per_s": int(per_second.max())}
