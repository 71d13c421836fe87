"""The book's contents as the experiments declare them: each experiment's notebook part
(:mod:`.microbench.pages`, :mod:`.trace.pages`) and the run-wide pages made from the run's
files. ``python -m kdlib book`` hands :func:`contents` to :func:`kdlib.publish.book.build_book`,
which imports no experiment."""

from __future__ import annotations

from pathlib import Path

from ..publish.book import Contents
from . import loads

#: The reproducibility page includes this file: every run's machine load, from the run's metadata.
MACHINE_LOAD = "machine_load.md"


def contents() -> Contents:
    """The microbenchmarks' notebook (the book's root), the trace's, and the machine-load page."""
    from .microbench.pages import PART as MICROBENCH
    from .trace.pages import PART as TRACE

    return Contents(MICROBENCH, (TRACE,), pages=lambda run_id, root: {MACHINE_LOAD: machine_load_markdown(run_id, root)})


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value).replace("|", "\\|")


def machine_load_markdown(run_id: str, results_root: Path) -> str:
    """The ranges and the per-run table of how busy the machine was (for the reproducibility page)."""
    frame, left_out = loads.run_loads(run_id, results_root)
    ranges = loads.summary(frame)
    lines = ["| over every run of the shown run id | |", "|---|---|"]
    lines += [f"| {key} | {_cell(value)} |" for key, value in ranges.items()]
    if left_out:
        lines.append(f"| metadata left out (unreadable) | {_cell(', '.join(left_out))} |")
    lines += ["", "| experiment | system | scale | repeat | started | machine | CPU idle before (%) | load before "
              "| CPU busy during, mean / max (%) | load during | load at the end |", "|" + "---|" * 11]
    for row in frame.to_dict("records"):
        state = "not recorded" if row["busy"] is None else ("**BUSY**" if row["busy"] else "quiet")
        during = ("" if row["cpu_busy_during_pct"] != row["cpu_busy_during_pct"]
                  else f"{row['cpu_busy_during_pct']:g} / {row['cpu_busy_during_max_pct']:g}")
        load_during = ("" if row["load_during_min"] != row["load_during_min"]
                       else f"{row['load_during_min']:g}–{row['load_during_max']:g}")
        scale = "" if row["scale"] != row["scale"] else int(row["scale"])
        lines.append(f"| {row['experiment']} | {_cell(row['system'])} | {scale} | {row['repeat']} | "
                     f"{_cell(row['start_time'])} | {state} | {_cell(row['cpu_idle_before_pct'])} | "
                     f"{_cell(row['load_before'])} | {during} | {load_during} | {_cell(row['load_at_end'])} |")
    return "\n".join(lines) + "\n"
