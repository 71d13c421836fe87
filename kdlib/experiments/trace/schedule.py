"""The invocation schedule: when each invocation is sent and how long it asks to run.

It is the original's schedule, invocation for invocation: ``tools/loaderschedule``
draws it with Go's ``math/rand`` in the order the original's loader does (invitro at
commit 0b0d6d7, which the original vendors and configures with seed 42, minute
granularity and exponential gaps), and the original's client turns the draws into send
times as below. What the loader and the client do, read from their code:

- Two generators, each seeded with the seed, one for arrivals and one for invocation
  specifications; both run once through the whole trace, function after function in
  file order, each function's minutes in order. So the draws of a function depend on
  every function before it, and on how many minutes the loader reads (it reads exactly
  the experiment's minutes): a 5-minute schedule is not the first 5 minutes of the
  30-minute one.
- Arrivals: a minute with no invocation draws nothing. A minute with n > 0 draws n
  exponential values; each gap is its value divided by their sum, times 60 s (in µs).
  The loader puts a zero gap in front, so the minute has n + 1 invocations: the first on
  the minute's start, then one after each gap, the last on the minute's end (60 s up to
  rounding, i.e. together with the next minute's first). The client's send time is
  minute × 60 s + the running sum of the minute's gaps (µs / 10⁶).
- Specifications, for each of the n + 1 invocations: a runtime quantile q and a memory
  quantile (uniform in [0, 1)), then a whole number of ms uniform in the runtime bracket
  q falls in (percentiles 0, 1, 25, 50, 75, 99, 100; bounds truncated to whole ms; q = 0
  gives percentile 0), then one in the memory bracket (percentiles 1, 5, 25, 50, 75, 95,
  99, 100 of ``memory.csv``; none for a quantile ≤ 0.01). An empty bracket (equal bounds
  after truncation) draws nothing and gives its bound, so Go's ``Intn(0)`` never runs; a
  decreasing one stops the loader. The memory value is thrown away, but its draw moves
  the generator, so it is made here too. Runtimes are clamped to 1 ms … 60 s.
- ``#traces = N`` pairs the first N functions of the loader's list with N Deployments:
  the first N functions of the file, whose draws do not depend on the functions after
  them.

Ours on purpose, as parameters: ``original_extra=False`` (``--exact``) leaves out each
active minute's last invocation (the one on its end), so the trace's exact counts are
sent and every other invocation keeps the original's send time and runtime (the left-out
invocation's draws are still made). A random subset of functions (``data.subset(...,
rule="random")``) is drawn as the loader would draw a trace file holding only those rows.
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd

from ...cluster.binaries import build_loader_schedule
from ...errors import TraceDataError
from .data import MEMORY_PERCENTILES, PERCENTILES, Trace

DEFAULT_SEED = 42
#: What drew the schedule (the metadata records it).
GENERATOR = "Go math/rand, drawn in the original loader's order (invitro 0b0d6d7) by tools/loaderschedule"
COLUMNS = ["function", "row", "minute", "index", "t_s", "runtime_ms", "extra"]
#: What ``write_csv`` writes: the trace row, the minute, the send time (s, µs) and the runtime (ms).
CSV_COLUMNS = ["function", "minute", "send_s", "runtime_ms"]
_DRAWN = ["function", "minute", "index", "t_s", "runtime_ms"]  # the generator's output, in its order


def draws(trace: Trace, seed: int = DEFAULT_SEED) -> pd.DataFrame:
    """Every invocation the original's loader makes for ``trace`` (n + 1 per active minute),
    in its order, as drawn by ``tools/loaderschedule``: function, minute, index, t_s, runtime_ms."""
    if trace.memory is None:
        raise TraceDataError(f"{trace.source} has no memory.csv: the original's loader draws a memory size for "
                             "every invocation, so its schedule cannot be reproduced without it")
    request = {"seed": int(seed), "functions": [
        {"counts": counts.tolist(), "runtime": runtime.tolist(), "memory": memory.tolist()}
        for counts, runtime, memory in zip(trace.counts, trace.durations[list(PERCENTILES)].to_numpy(dtype=float),
                                           trace.memory[list(MEMORY_PERCENTILES)].to_numpy(dtype=float))]}
    binary = build_loader_schedule()
    done = subprocess.run([str(binary)], input=json.dumps(request), capture_output=True, text=True)
    if done.returncode != 0:
        raise TraceDataError(f"{binary} failed (exit {done.returncode}) on {trace.source}: {done.stderr.strip()}")
    types = {"function": np.int64, "minute": np.int64, "index": np.int64, "t_s": float, "runtime_ms": np.int64}
    if not done.stdout:  # no invocation at all
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in types.items()})
    # The send times come in their shortest exact form; pandas' reader reads back the same
    # float64s (correctly rounded, as the tests check against Go's output).
    return pd.read_csv(io.StringIO(done.stdout), header=None, names=_DRAWN, dtype=types)


def build(trace: Trace, *, seed: int = DEFAULT_SEED, original_extra: bool = True) -> pd.DataFrame:
    """The schedule of ``trace``: one row per invocation, sorted by send time ``t_s``.

    Columns: ``function`` (position in the trace), ``row`` (the function's row in the
    full file: Deployment ``trace-<row>``), ``minute`` (0-based), ``index`` (within the
    function and minute), ``t_s`` (seconds from the replay's start), ``runtime_ms``
    (requested), ``extra`` (the loader's added invocation, on the minute's end).
    """
    schedule = draws(trace, seed)
    counts = trace.counts[schedule["function"].to_numpy(), schedule["minute"].to_numpy()]
    schedule["extra"] = schedule["index"].to_numpy() == counts
    if not original_extra:
        schedule = schedule[~schedule["extra"]]
    schedule.insert(1, "row", np.asarray(trace.rows, dtype=np.int64)[schedule["function"].to_numpy()])
    return schedule.sort_values(["t_s", "function", "index"], kind="stable").reset_index(drop=True)[COLUMNS]


def write_csv(schedule: pd.DataFrame, path: Path | str) -> None:
    """``schedule`` as CSV (:data:`CSV_COLUMNS`): ``function`` is the 0-based data row of
    ``invocations.csv``, ``send_s`` seconds from the trace's start to the microsecond."""
    frame = pd.DataFrame(dict(zip(CSV_COLUMNS, (schedule[c] for c in ("row", "minute", "t_s", "runtime_ms")))))
    frame.to_csv(path, index=False, float_format="%.6f")


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
