"""Figures 12–13's numbers: per-function mean slowdown and scheduling latency, and their CDFs.

As the original's plot script, after dropping the warm-up (its first 10 of 30 minutes):

* slowdown = (delay + actual runtime) / requested runtime per invocation; invocations
  with slowdown < 1 are dropped; functions with one invocation left are dropped; the
  mean per function;
* scheduling latency = delay (ms) per invocation, averaged per function (functions
  with more than one invocation).

Unlike the original, failed invocations (no delay) are counted and reported, not
silently skipped by a regular expression. The original's extra filter, for ``Kn/Kd``
only (a delay above 8 s counts as a timeout and is dropped before both means), is
``timeout_ms=KN_KD_TIMEOUT_MS``. The reference CSVs (``Kn/K8s``, ``Dirigent``) are read
by :mod:`.reference`, whose rules differ as the original's do.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .params import SYSTEMS

SUMMARY_COLUMNS = ["system", "source", "invocations", "failed", "failed_pct", "dropped_as_timeout",
                   "dropped_as_outlier", "functions", "slowdown_p50", "slowdown_p99", "latency_p50_ms",
                   "latency_p99_ms"]
#: The original's timeout filter: for Kn/Kd only, a delay above 8 s counts as a timeout.
KN_KD_TIMEOUT_MS = 8000.0


def after_warmup(frame: pd.DataFrame, warmup_minutes: float) -> pd.DataFrame:
    return frame[frame["ts_s"] >= warmup_minutes * 60.0]


def per_function(frame: pd.DataFrame, warmup_minutes: float = 10, timeout_ms: float | None = None) -> dict:
    """Per-function means and the counts of what was left out, for one system's invocations."""
    kept = after_warmup(frame, warmup_minutes)
    failed = int(kept["failed"].sum())
    ok = kept[~kept["failed"]]
    dropped_timeout = 0
    if timeout_ms is not None:
        late = ok["delay_ms"] > timeout_ms
        dropped_timeout, ok = int(late.sum()), ok[~late]
    function = ok["function"].astype(str)
    slow = (ok["delay_ms"] + ok["runtime_ms"]) / ok["requested_ms"]
    slow_ok = slow >= 1
    s_frame = pd.DataFrame({"function": function[slow_ok], "slowdown": slow[slow_ok]})
    s_counts = s_frame.groupby("function")["slowdown"].transform("size")
    slowdown = s_frame[s_counts > 1].groupby("function")["slowdown"].mean()
    l_frame = pd.DataFrame({"function": function, "latency_ms": ok["delay_ms"]})
    l_counts = l_frame.groupby("function")["latency_ms"].transform("size")
    latency = l_frame[l_counts > 1].groupby("function")["latency_ms"].mean()
    return {"slowdown": slowdown, "latency_ms": latency, "invocations": int(len(kept)), "failed": failed,
            "dropped_as_timeout": dropped_timeout, "dropped_as_outlier": 0}


def cdf(values: pd.Series) -> pd.DataFrame:
    """Empirical CDF points (x sorted, p = rank / n) of ``values``."""
    x = np.sort(np.asarray(values, dtype=float))
    return pd.DataFrame({"x": x, "p": np.arange(1, len(x) + 1) / max(1, len(x))})


def curves(per_system: dict[str, dict]) -> pd.DataFrame:
    """Tidy CDF points of every system: columns system, metric (slowdown | latency_ms), x, p."""
    frames = []
    for system, numbers in per_system.items():
        for metric in ("slowdown", "latency_ms"):
            points = cdf(numbers[metric])
            points.insert(0, "metric", metric)
            points.insert(0, "system", system)
            frames.append(points)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["system", "metric", "x", "p"])


def summary(per_system: dict[str, dict], sources: dict[str, str]) -> pd.DataFrame:
    """One row per system: counts, failures, p50/p99 of the per-function means."""
    rows = []
    for system, n in per_system.items():
        q = lambda s, p: round(float(np.percentile(s, p)), 2) if len(s) else np.nan
        rows.append({"system": system, "source": sources.get(system, ""), "invocations": n["invocations"],
                     "failed": n["failed"],
                     "failed_pct": round(100 * n["failed"] / n["invocations"], 2) if n["invocations"] else np.nan,
                     "dropped_as_timeout": n["dropped_as_timeout"],
                     "dropped_as_outlier": n.get("dropped_as_outlier", 0), "functions": int(len(n["slowdown"])),
                     "slowdown_p50": q(n["slowdown"], 50), "slowdown_p99": q(n["slowdown"], 99),
                     "latency_p50_ms": q(n["latency_ms"], 50), "latency_p99_ms": q(n["latency_ms"], 99)})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def figure_systems(figure: int) -> list[str]:
    return [name for name, s in SYSTEMS.items() if s.figure == figure]
