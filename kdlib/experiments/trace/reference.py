"""The original's reference data: per-invocation CSVs of the invitro loader, read as its plot script does.

The original ships two results of Figures 12–13 as CSVs in invitro's format (one row per
invocation, times in µs), both measured on the paper's cluster, not with its own client:
``Kn/K8s`` (Knative on vanilla Kubernetes, ``experiments/trace/results/k8s/default/k8s.500.csv``)
and ``Dirigent`` (``…/dirigent/default/dirigent.500.csv``). Given as ``kn_k8s_csv`` and
``dirigent_csv``, they are shown as reference data, never as a measurement of this run.

Its plot script reads such a CSV differently from its logs, and so does :func:`per_function`:

* **warm-up**: rows whose ``invocationID`` starts with ``min<m>.``, m < 10, are dropped
  (here m < ``warmup_minutes``, 10 by default); a row without that prefix is kept;
* **slowdown** = responseTime / requestedDuration; kept: slowdown ≥ 1 and neither
  ``connectionTimeout`` nor ``functionTimeout``; averaged per function, the function being
  ``instance`` up to its first ``-``; functions with more than one invocation left;
* **scheduling latency** = (responseTime − actualDuration) / 1000 ms, timed-out invocations
  included; for ``Dirigent`` only invocations under 1500 ms are kept (``latency_below_ms``;
  none for ``Kn/K8s``); averaged per ``instance`` without its replica suffix (``-<n>`` or
  ``-<n>-<n>-deployment-<hash>``); instances with more than one invocation.

Unlike the original, the counts of what was left out are reported (``failed``: timed out;
``dropped_as_outlier``: over the latency bound).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ...errors import LogFormatError

#: The columns the original's plot script reads (invitro's CSV has more; they are ignored).
COLUMNS = ("invocationID", "instance", "responseTime", "actualDuration", "requestedDuration",
           "connectionTimeout", "functionTimeout")
_NUMBERS = ("responseTime", "actualDuration", "requestedDuration")
_FLAGS = ("connectionTimeout", "functionTimeout")
#: The original keeps, for Dirigent only, invocations whose scheduling latency is under this.
DIRIGENT_LATENCY_BELOW_MS = 1500.0
_REPLICA_SUFFIX = r"(\-[0-9]+(\-[0-9]+\-deployment\-[0-9A-Za-z\-]+){0,1})$"
_MINUTE = r"^min(\d+)\."


def missing_columns(path: Path | str) -> list[str]:
    """The columns of :data:`COLUMNS` that the CSV's header lacks (reads the header only)."""
    try:
        header = pd.read_csv(path, nrows=0).columns
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError):
        return list(COLUMNS)
    return [c for c in COLUMNS if c not in header]


def read(path: Path | str) -> pd.DataFrame:
    """The CSV's columns that the analysis uses, checked: a damaged file is an error, not a number."""
    path = Path(path)
    if not path.is_file():
        raise LogFormatError(f"reference CSV {path} does not exist")
    missing = missing_columns(path)
    if missing:
        raise LogFormatError(f"{path} lacks the column(s) {', '.join(missing)} of invitro's per-invocation CSV")
    frame = pd.read_csv(path, usecols=list(COLUMNS), dtype={"invocationID": str, "instance": str})
    for column in _NUMBERS:
        if frame[column].dtype.kind not in "iuf" or frame[column].isna().any():
            raise LogFormatError(f"{path}: column {column} holds something other than numbers")
    for column in _FLAGS:
        if frame[column].dtype != bool:
            raise LogFormatError(f"{path}: column {column} holds something other than true/false")
    if frame["invocationID"].isna().any():
        raise LogFormatError(f"{path}: a row has no invocationID")
    return frame


def after_warmup(frame: pd.DataFrame, warmup_minutes: float) -> pd.DataFrame:
    minute = pd.to_numeric(frame["invocationID"].str.extract(_MINUTE)[0], errors="coerce")
    return frame[~(minute < warmup_minutes)]


def _mean_of_repeated(keys: pd.Series, values: pd.Series) -> pd.Series:
    """Mean of ``values`` per key, over the keys that occur more than once."""
    counts = keys.map(keys.value_counts())
    return values[counts > 1].groupby(keys[counts > 1]).mean()


def per_function(frame: pd.DataFrame, warmup_minutes: float = 10, latency_below_ms: float | None = None) -> dict:
    """Per-function means as the original computes them from a CSV (the shape of
    :func:`.analysis.per_function`)."""
    kept = after_warmup(frame, warmup_minutes)
    timed_out = kept["connectionTimeout"] | kept["functionTimeout"]
    slow = kept["responseTime"] / kept["requestedDuration"]
    ok = (slow >= 1) & ~timed_out
    slowdown = _mean_of_repeated(kept["instance"][ok].str.split("-").str[0], slow[ok])
    latency = (kept["responseTime"] - kept["actualDuration"]) / 1000
    inside = latency < latency_below_ms if latency_below_ms is not None else pd.Series(True, index=kept.index)
    instance = kept["instance"][inside].str.replace(_REPLICA_SUFFIX, "", regex=True)
    latency_ms = _mean_of_repeated(instance, latency[inside])
    slowdown.index.name = latency_ms.index.name = "function"
    return {"slowdown": slowdown.rename("slowdown"), "latency_ms": latency_ms.rename("latency_ms"),
            "invocations": int(len(kept)), "failed": int(timed_out.sum()), "dropped_as_timeout": 0,
            "dropped_as_outlier": int((~inside).sum())}
