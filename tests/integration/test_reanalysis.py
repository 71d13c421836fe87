"""The re-analysis notebook: papermill on a real tiny run, and JupyterLab in headless Chromium.

One tiny suite (Figure 9-11 at a few pods, ``k8s+`` only) is measured on the local cluster
into a private results folder whose ``reference.txt`` names it, so that the notebook's
default ``run_id`` (the reference run) opens it. Expected numbers are read from the raw
``total: <µs> us`` lines, not through kdlib.

The JupyterLab test starts ``jupyter lab`` on 127.0.0.1 (free port, token), opens
``notebooks/reanalysis.ipynb`` in headless Chromium, runs every cell through JupyterLab's
own command (``notebook:run-all-cells``), and checks in the DOM that every chart drew, that
a tooltip and a legend selection work, that the page asked nothing of another host and
that the console shows no error. Screenshot: ``<tmp>/jupyterlab/reanalysis.png`` (path printed).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import nbformat
import pytest

from ..book.browser import Chromium, Page, find_chromium
from ..helpers import REPO
from .jupyterlab import JupyterLab, copy_notebooks

NOTEBOOK = REPO / "notebooks" / "reanalysis.ipynb"
CHART_MIME = "application/vnd.vegalite.v5+json"
_TOTAL = re.compile(r"^total:\s*(\d+)\s*us", re.M)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, binaries) -> tuple[Path, dict[str, str]]:
    """A measured tiny suite ``tiny`` in a private results folder that names it the reference run."""
    root = tmp_path_factory.mktemp("reanalysis")
    env = {**os.environ, "KDLIB_RESULTS_DIR": str(root / "results"), "KDLIB_STATE_DIR": str(root / "state"),
           "KDLIB_SUITE_LOCK": str(root / "suite.lock")}
    done = subprocess.run([sys.executable, "-m", "kdlib", "run", "--run-id", "tiny", "--baseline", "k8s+",
                           "--scales", "scale-pods=6,12", "--scales", "scale-funcs=3", "--scales", "scale-nodes=2",
                           "--nodes", "2", "--settle", "0.5"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (root / "results" / "reference.txt").write_text("tiny\n")
    return root, env


def _papermill(output: Path, env: dict[str, str], *parameters: str) -> nbformat.NotebookNode:
    done = subprocess.run([sys.executable, "-m", "papermill", str(NOTEBOOK), str(output), "--cwd", str(REPO),
                           *parameters], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return nbformat.read(output, as_version=4)


def _outputs(notebook: nbformat.NotebookNode) -> list[dict]:
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]


def _text(notebook: nbformat.NotebookNode) -> str:
    return "\n".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/html", ""))
                     for o in _outputs(notebook))


@pytest.mark.slow
def test_papermill_opens_the_reference_run_by_default(tiny_run, tmp_path: Path) -> None:
    root, env = tiny_run
    notebook = _papermill(tmp_path / "reanalysis.ipynb", env)
    outputs = _outputs(notebook)
    assert not [o for o in outputs if o.output_type == "error"]
    glued = [o for o in outputs if o.get("metadata", {}).get("scrapbook", {}).get("name") == "reanalysis_run_id"]
    assert glued and "tiny" in glued[0]["data"]["application/papermill.record/text/plain"]
    charts = [o for o in outputs if CHART_MIME in o.get("data", {})]
    assert len(charts) == 3, "Figure 9 redrawn, pods created over time, this run's logs read as the original's"
    assert all("kdlib-chart" in o["data"]["text/html"] for o in charts)
    # No live frontend under papermill: the ~900 KB bundle is not pasted into the notebook.
    assert (tmp_path / "reanalysis.ipynb").stat().st_size < 400_000
    text = _text(notebook)
    for log in sorted((root / "results").glob("*/tiny/e2e.*.log")):
        seconds = int(_TOTAL.search(log.read_text()).group(1)) / 1e6
        assert f"{seconds:.2f}" in text, f"{log.name}: {seconds:.2f} s is not shown"


def _original_logs(directory: Path) -> dict[str, float]:
    """A folder laid out like the original artifact's results: <bench>/<ID>/<name>.<baseline>.<scale>.log."""
    values = {("scale-pods", "k8s", 100): 4.321987, ("scale-pods", "kd", 100): 0.654321,
              ("scale-funcs", "k8s", 100): 9.876543}
    for (bench, baseline, scale), seconds in values.items():
        run = directory / bench / "20250101-000000"
        run.mkdir(parents=True, exist_ok=True)
        (run / f"e2e.{baseline}.{scale}.log").write_text(f"total: {round(seconds * 1e6)} us (100/100)\n")
        (run / f"_rs.{baseline}.{scale}.log").write_text(f"total: {round(seconds * 5e5)} us\n")
    return {f"{b} {n} {s}": v for (b, n, s), v in values.items()}


def test_papermill_compares_with_the_original_artifacts_logs(tiny_run, tmp_path: Path) -> None:
    _, env = tiny_run
    expected = _original_logs(tmp_path / "original")
    notebook = _papermill(tmp_path / "reanalysis.ipynb", env, "-p", "run_id", "tiny",
                          "-p", "original_logs", str(tmp_path / "original"))
    outputs = _outputs(notebook)
    assert not [o for o in outputs if o.output_type == "error"]
    text = _text(notebook)
    for seconds in expected.values():
        assert f"{seconds:.6f}" in text, f"the original logs' {seconds} s are not in the table"
    charts = [o for o in outputs if CHART_MIME in o.get("data", {})]
    assert len(charts) == 3
    values = json.dumps(charts[-1]["data"][CHART_MIME])
    assert "original logs" in values and "this run (tiny)" in values and "9.876543" in values


# --- JupyterLab in Chromium ---

_NOTEBOOK_JS = """(() => {
  const app = window.jupyterapp; const panel = app && app.shell.currentWidget;
  if (!panel || !panel.content || !panel.content.model || !panel.sessionContext) return null;
  const session = panel.sessionContext.session; const kernel = session && session.kernel;
  const cells = Array.from(panel.content.model.cells).filter(c => c.type === 'code');
  const outputs = cells.flatMap(c => c.outputs.toJSON());
  return {path: panel.context.path, kernel: kernel ? kernel.status : null, code: cells.length,
          executed: cells.filter(c => c.executionCount != null).length,
          charts: outputs.filter(o => o.data && o.data['%s']).length,
          errors: outputs.filter(o => o.output_type === 'error').map(o => o.ename + ': ' + o.evalue)};
})()""" % CHART_MIME

_CHARTS_JS = """Array.from(document.querySelectorAll('.jp-Notebook .kdlib-chart')).map(el => ({
  label: el.getAttribute('aria-label'), embedded: el.classList.contains('vega-embed'),
  marks: el.querySelectorAll('svg .role-mark > *').length, text: el.textContent.slice(0, 200)}))"""


def _center(page: Page, selector_js: str) -> dict:
    """Scroll the element ``selector_js`` evaluates to into view; its centre in the viewport."""
    return page.evaluate(f"""(() => {{ const el = {selector_js}; if (!el) return null;
      el.scrollIntoView({{block: 'center'}}); const r = el.getBoundingClientRect();
      return {{x: r.x + r.width / 2, y: r.y + r.height / 2}}; }})()""")


def _mouse(page: Page, kind: str, point: dict) -> None:
    page.send("Input.dispatchMouseEvent", {"type": kind, "x": point["x"], "y": point["y"], "button": "left",
                                           "clickCount": 1 if kind != "mouseMoved" else 0})


@pytest.fixture(scope="module")
def lab(tiny_run, tmp_path_factory):
    """JupyterLab serving a copy of notebooks/ (and a papermill-executed reanalysis.ipynb), and Chromium.

    On the way out: the server and every kernel it started are stopped.
    """
    _, env = tiny_run
    executable = find_chromium()
    if executable is None:
        pytest.fail("chromium is not installed: run `bash setup.sh` (it installs Debian's chromium)")
    work = tmp_path_factory.mktemp("jupyterlab")
    notebooks = copy_notebooks(work / "root")
    (notebooks / "executed").mkdir()
    _papermill(notebooks / "executed" / "reanalysis.ipynb", env, "-p", "run_id", "tiny")
    with JupyterLab(work / "root", work, env) as server, Chromium(executable, work / "profile") as browser:
        yield server, browser, work
    assert server.kernel_pids, "the server had started no kernel"
    still = [pid for pid in server.kernel_pids if Path(f"/proc/{pid}").exists()
             and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    assert not still, f"kernels still running after the server stopped: {still}"


def _open(lab, path: str) -> tuple[Page, dict]:
    server, browser, _ = lab
    page = browser.new_page()
    # ?reset: a fresh workspace, not the one the previous page left (it would reopen that notebook).
    page.goto(f"{server.url}/lab/tree/{path}?reset&token={server.token}", timeout=60)
    state = page.wait_for(f"(() => {{ const s = {_NOTEBOOK_JS}; "
                          f"return s && s.path === {json.dumps(path)} && s.kernel === 'idle' ? s : null; }})()",
                          timeout=90)
    state = state or page.evaluate(_NOTEBOOK_JS)
    assert state and state["path"] == path, f"{path} did not open: {state}"
    return page, state


# Chromium aborts its requests in flight when an interface of the machine comes or goes
# (other tests create and remove network namespaces and bridges): that says nothing about the page.
_NETWORK_CHANGED = re.compile(r"^log: Failed to load resource: net::ERR_NETWORK_CHANGED http://127\.0\.0\.1:\d+/")


def _clean(page: Page) -> None:
    """The page asked nothing of another host and logged no error."""
    requests = list(page.requests)
    errors = [error for error in page.errors if not _NETWORK_CHANGED.match(error)]
    foreign = [url for url in requests
               if urlsplit(url).scheme not in ("data", "blob", "about") and urlsplit(url).hostname != "127.0.0.1"]
    assert requests and not foreign, foreign
    assert not errors, errors


def _run(page: Page, command: str) -> None:
    page.evaluate(f"window.jupyterapp.commands.execute({json.dumps(command)}), true")


def _finished(page: Page) -> dict:
    """Once every code cell has run (or one failed) and the kernel is idle: the notebook's state."""
    state = page.wait_for(f"(() => {{ const s = {_NOTEBOOK_JS}; return s && (s.errors.length || "
                          "(s.executed === s.code && s.kernel === 'idle')) ? s : null; })()", timeout=180)
    assert state and not state["errors"], state or page.evaluate(_NOTEBOOK_JS)
    return state


def _drawn(page: Page, count: int, timeout: float = 60) -> None:
    charts = page.wait_for(f"(() => {{ const c = {_CHARTS_JS}; "
                           "return c.length && c.every(x => x.embedded && x.marks) ? c : null; })()", timeout=timeout)
    charts = charts or page.evaluate(_CHARTS_JS)
    assert len(charts) == count, charts
    assert all(c["embedded"] and c["marks"] for c in charts), [c for c in charts if not c["marks"]]


def test_the_notebook_runs_and_draws_in_jupyterlab(lab) -> None:
    page, _ = _open(lab, "notebooks/reanalysis.ipynb")
    _run(page, "notebook:run-all-cells")
    assert _finished(page)["charts"] == 3
    _drawn(page, 3)

    # Interaction on the worked example's chart: a tooltip on hover, a legend click picks a scale.
    chart = "document.querySelector('.kdlib-chart[aria-label^=\"Pods created over time\"]')"
    point = _center(page, f"{chart}.querySelector('.mark-symbol.role-mark path')")
    _mouse(page, "mouseMoved", point)
    tooltip = page.wait_for("(() => { const t = document.getElementById('vg-tooltip-element');"
                            " return t && t.classList.contains('visible') ? t.textContent : null; })()", timeout=10)
    assert tooltip and "pods" in tooltip, f"no tooltip over a point: {tooltip!r}"
    faded = f"{chart}.querySelectorAll('[opacity=\"0.15\"]').length"
    assert page.evaluate(faded) == 0
    legend = _center(page, f"{chart}.querySelector('.role-legend-symbol path')")
    for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
        _mouse(page, kind, legend)
    assert page.wait_for(faded, timeout=10), "clicking a legend entry faded no mark"
    screenshot = page.screenshot(lab[2] / "reanalysis.png")
    print(f"screenshot: {screenshot}")
    page.close()
    _clean(page)


def test_an_executed_notebook_says_what_to_do_until_trusted_then_draws(lab) -> None:
    """Papermill's notebook is not trusted here: JupyterLab strips its scripts and shows the
    chart's own note instead. Trusted, its charts wait for the bundle; running the cell that
    calls render.enable() (and the parameter cells above it) draws every one."""
    page, state = _open(lab, "notebooks/executed/reanalysis.ipynb")
    assert state["charts"] == 3 and state["executed"] == state["code"], state
    notes = page.wait_for("(() => { const n = Array.from(document.querySelectorAll('.jp-OutputArea-output'))"
                          ".filter(o => o.textContent.includes('runs only in a trusted notebook')).length;"
                          " return n === 3 ? n : null; })()", timeout=30)
    assert notes == 3, "an untrusted chart output does not say how to draw it"
    page.evaluate("window.jupyterapp.commands.execute('notebook:trust'), true")
    page.wait_for("(() => { const b = document.querySelector('.jp-Dialog .jp-mod-accept');"
                  " if (b) b.click(); return !!b; })()", timeout=10)
    page.wait_for("(() => { const n = Array.from(document.querySelectorAll('.kdlib-chart'))"
                  ".filter(c => c.textContent.includes('Waiting for the chart library')).length;"
                  " return n === 3 ? n : null; })()", timeout=30)
    setup = page.evaluate("Array.from(window.jupyterapp.shell.currentWidget.content.model.cells)"
                          ".findIndex(c => c.sharedModel.getSource().includes('render.enable()'))")
    assert setup > 0
    page.evaluate(f"window.jupyterapp.shell.currentWidget.content.activeCellIndex = {setup + 1}")
    _run(page, "notebook:run-all-above")
    _drawn(page, 3, timeout=120)
    assert not page.evaluate(_NOTEBOOK_JS)["errors"]
    _center(page, "document.querySelector('.kdlib-chart')")
    page.screenshot(lab[2] / "executed-trusted.png")
    page.close()
    _clean(page)
