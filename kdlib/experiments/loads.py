"""How busy the machine was for every run of a run id, from the runs' metadata.

Each finished run's ``meta`` file (microbenchmarks and trace alike) carries ``machine``:
the quiet wait before it (CPU idle over the last window, run queue, 1-minute load) and the
samples taken while it measured (:mod:`kdlib.machine`). Runs made before the quiet guard
existed have only the load average their provenance recorded when their files were
written, after the run; the table says which is which. Unreadable metadata is left out
and counted, never read as a number.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import store

COLUMNS = ["experiment", "system", "scale", "repeat", "start_time", "recorded", "busy", "cpu_idle_before_pct",
           "load_before", "cpu_busy_during_pct", "cpu_busy_during_max_pct", "load_during_min", "load_during_max",
           "load_at_end"]
#: The experiments whose metadata is read: the three microbenchmarks and the trace.
EXPERIMENTS = ("scale-pods", "scale-funcs", "scale-nodes", "trace")


def _row(experiment: str, meta: dict[str, Any]) -> dict[str, Any]:
    state = meta.get("machine") or {}
    before, during = state.get("before") or {}, state.get("during") or {}
    end = ((meta.get("provenance") or {}).get("machine") or {}).get("load_average_1m", np.nan)
    return {"experiment": experiment, "system": meta.get("baseline") or meta.get("system", "?"),
            "scale": meta.get("scale", np.nan), "repeat": meta.get("repeat", 0),
            "start_time": meta.get("start_time", ""),
            "recorded": "before and during" if state else "at the end only (run predates the quiet guard)",
            "busy": bool(state.get("busy")) if state else None,
            "cpu_idle_before_pct": before.get("cpu_idle_pct", np.nan), "load_before": before.get("load_1m", np.nan),
            "cpu_busy_during_pct": during.get("cpu_busy_pct_mean", np.nan),
            "cpu_busy_during_max_pct": during.get("cpu_busy_pct_max", np.nan),
            "load_during_min": during.get("load_1m_min", np.nan), "load_during_max": during.get("load_1m_max", np.nan),
            "load_at_end": end}


def run_loads(run_id: str, root: Path | None = None) -> tuple[pd.DataFrame, list[str]]:
    """(one row per finished run of ``run_id`` with its machine state, the metadata files left out)."""
    rows, left_out = [], []
    for experiment in EXPERIMENTS:
        directory = store.run_dir(experiment, run_id, root)
        for path in sorted(directory.glob("meta.*.json")) if directory.is_dir() else []:
            log = path.with_name(path.name.replace("meta.", "e2e." if experiment != "trace" else "trace.", 1)
                                 .removesuffix(".json") + ".log")
            if not log.is_file():  # a failed run: nothing of it is shown
                continue
            try:
                meta = json.loads(path.read_text(encoding="utf-8"))
                rows.append(_row(experiment, meta))
            except (OSError, ValueError, AttributeError) as error:
                left_out.append(f"{experiment}/{path.name}: {type(error).__name__}")
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.sort_values(["start_time", "experiment"], kind="stable").reset_index(drop=True), left_out


def _span(values: pd.Series, unit: str = "") -> str:
    values = pd.to_numeric(values, errors="coerce").dropna()
    if values.empty:
        return "not recorded"
    low, high = values.min(), values.max()
    return f"{low:g}{unit}" if low == high else f"{low:g}–{high:g}{unit}"


def summary(frame: pd.DataFrame) -> dict[str, str]:
    """The ranges over every run: the quiet wait's CPU idle and load before, CPU use and load during."""
    busy = frame["busy"].dropna() if len(frame) else pd.Series(dtype=object)
    return {"runs": str(len(frame)), "with a machine record": str(int(frame["busy"].notna().sum())),
            "measured on a busy machine": str(int(busy.astype(bool).sum())),
            "CPU idle before (last window)": _span(frame["cpu_idle_before_pct"], " %"),
            "1-minute load before": _span(frame["load_before"]),
            "CPU busy during (mean per run)": _span(frame["cpu_busy_during_pct"], " %"),
            "1-minute load during": _span(pd.concat([frame["load_during_min"], frame["load_during_max"]])),
            "1-minute load at the end (provenance)": _span(frame["load_at_end"])}


__all__ = ["run_loads", "summary", "COLUMNS"]
