"""What the microbenchmark notebook gives the book: its glue keys, its charts, and how the
book tells that the run's files changed since the notebook was executed (the book imports
no experiment: :func:`kdlib.experiments.pages.contents` hands it :data:`PART`)."""

from __future__ import annotations

from pathlib import Path

from ...publish.book import Part, glued_outputs
from . import files
from .report import CHART_KEYS, GLUE_KEYS
from .spec import BENCHES


def files_changed(run_id: str, notebook: Path, results_root: Path) -> list[str]:
    """The run's files must be the ones the notebook was executed on (the digest it glued)."""
    recorded = "".join(glued_outputs(notebook).get("results_digest", {}).get("text/plain", "")).strip("'\"")
    benches = [b for b in BENCHES if (results_root / b / run_id).is_dir()]
    if recorded != files.digest(run_id, benches, results_root):
        return [f"the files under {results_root}/<bench>/{run_id}/ changed since {notebook.name} was executed: "
                "execute the notebook again (it resumes, re-running nothing finished) before building the book"]
    return []


PART = Part("microbench.ipynb", GLUE_KEYS, CHART_KEYS, files_changed)
