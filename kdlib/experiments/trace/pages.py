"""What the trace notebook (Figures 12–13) gives the book: its glue keys, its charts, the
integrity check of the run's trace logs and the side-by-side table Figure 13's page includes
(the book imports no experiment: :func:`kdlib.experiments.pages.contents` hands it :data:`PART`)."""

from __future__ import annotations

from pathlib import Path

from ...publish.book import Part
from . import files
from .report import CHART_KEYS, GLUE_KEYS, KPA_COMPARISON_KEY

#: Figure 13's page includes this file: the two Dr/K8s+ configurations side by side, when the run has them.
KPA_COMPARISON = "fig13_kpa.md"


def damaged(run_id: str, notebook: Path, results_root: Path) -> list[str]:
    """The run's trace logs must pass the integrity checks (checksum, counts, every line)."""
    if not (results_root / files.BENCH / run_id).is_dir():
        return []
    return [f"{why}: run the trace notebook again under this run id (it redoes a damaged system)"
            for why in files.damaged_files(run_id, results_root)]


def kpa_comparison(glued: dict[str, dict], notebook: str) -> dict[str, str]:
    if KPA_COMPARISON_KEY in glued:
        return {KPA_COMPARISON: f"```{{glue}} {KPA_COMPARISON_KEY}\n:doc: generated/{notebook}\n```\n"}
    # an executed notebook made before both configurations were systems of the trace
    return {KPA_COMPARISON: "*The run shown predates the side-by-side comparison: its trace notebook was executed "
            "before both `Dr/K8s+` configurations were systems of every trace run. Run the trace again "
            "(it resumes, and measures the configuration it lacks).*\n"}


PART = Part("trace.ipynb", GLUE_KEYS, CHART_KEYS, damaged, page="book/generated/trace", includes=kpa_comparison)
