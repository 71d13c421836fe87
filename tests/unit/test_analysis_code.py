"""The analysis code whose digest an executed notebook records is derived from the imports."""

from __future__ import annotations

import json
from pathlib import Path

from kdlib import paths, provenance

REPO = paths.repo_root()


def _notebook(path: Path, code: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": [{"cell_type": "markdown", "source": ["from kdlib import prose"]},
                                          {"cell_type": "code", "source": [code]}]}))


def _tree(root: Path, modules: dict[str, str]) -> None:
    for name, source in modules.items():
        path = root.joinpath(*name.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)


def test_a_module_the_analysis_reaches_only_inside_a_function_is_digested(tmp_path: Path, monkeypatch) -> None:
    _tree(tmp_path, {
        "kdlib.__init__": "from .cluster import everything\n",
        "kdlib.report": "from . import tables\nfrom .experiments import run\n",
        "kdlib.tables": "def f():\n    from .numbers import g\n",
        "kdlib.numbers": "import pandas\n",
        "kdlib.experiments.__init__": "",
        "kdlib.experiments.run": "from ..cluster import everything\n",
        "kdlib.cluster": "",
        "kdlib.prose": "",
    })
    for notebook in provenance.NOTEBOOKS:
        _notebook(tmp_path / notebook, "from kdlib import report\nimport pandas as pd\n")
    monkeypatch.setitem(provenance.NOT_ANALYSIS, "kdlib.experiments.run", "runs the experiment")
    assert provenance.analysis_modules(tmp_path) == ("kdlib.numbers", "kdlib.report", "kdlib.tables")
    before = provenance.analysis_digest(tmp_path)
    (tmp_path / "kdlib" / "numbers.py").write_text("import pandas  # changed\n")
    assert provenance.analysis_digest(tmp_path) != before
    (tmp_path / "kdlib" / "experiments" / "run.py").write_text("# the experiment changed, not the analysis\n")
    (tmp_path / "kdlib" / "numbers.py").write_text("import pandas\n")
    assert provenance.analysis_digest(tmp_path) == before


def test_the_modules_that_make_the_pages_are_analysis_code_and_the_runners_are_not() -> None:
    modules = set(provenance.analysis_modules(REPO))
    for module in ("experiments.microbench.report", "experiments.microbench.analysis", "experiments.microbench.files",
                   "experiments.microbench.findings", "experiments.microbench.plots", "experiments.trace.report",
                   "experiments.trace.analysis", "experiments.trace.files", "experiments.trace.logs",
                   "experiments.trace.reference", "experiments.trace.plots", "publish.render", "stats", "store"):
        assert f"kdlib.{module}" in modules
    assert not modules & set(provenance.NOT_ANALYSIS)
    assert not any(m.startswith(("kdlib.cluster.local", "kdlib.cluster.ssh", "kdlib.k8s")) for m in modules)
    assert set(provenance.analysis_code(REPO)) >= set(provenance.NOTEBOOKS)


def test_every_module_the_walk_stops_at_is_one_the_analysis_imports() -> None:
    """No stale entry: each module of NOT_ANALYSIS exists and is imported by a notebook or an analysis module."""
    imported = {m for notebook in provenance.NOTEBOOKS for m in provenance.notebook_imports(REPO / notebook, REPO)}
    for module in provenance.analysis_modules(REPO):
        path = provenance._module_file(module, REPO)
        imported |= provenance._kdlib_imports(path.read_text(), module, path.name == "__init__.py", REPO)
    assert set(provenance.NOT_ANALYSIS) <= imported
