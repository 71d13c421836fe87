"""Build the Jupyter Book from an executed run: ``python -m kdlib book [--run-id X]``.

The book (``_config.yml``, ``_toc.yml`` and ``book/`` at the repository root) shows the
executed microbenchmark notebook of ONE run; it never executes a notebook. :func:`build_book`

1. finds the run's executed notebook, ``results/executed/<run_id>/microbench.ipynb``
   (default run: the one named in ``results/reference.txt``) and checks that it glued every
   key the pages paste (:data:`GLUE_KEYS`), that the run's files are those it was executed on,
   and that each executed notebook was made by the analysis code of this checkout
   (:func:`kdlib.provenance.analysis_digest`): a notebook executed by older code is refused,
   with the papermill command that executes it again (it resumes: it measures nothing);
2. copies it to ``book/generated/microbench.ipynb``, where ``_toc.yml`` expects it (and the
   run's executed re-analysis notebook, ``reanalysis.ipynb``, beside it), and
   renders each glued chart's Vega-Lite spec to ``book/generated/figures/<key>.svg``, the
   static copy for print that the figure pages link to;
3. writes the one shared Vega bundle and its loader to ``_static/`` (:mod:`kdlib.publish.render`);
4. runs Jupyter Book 1 in a child process with warnings as errors (``-W -n --keep-going``),
   from a fresh environment so that no warning hides behind an incremental build;
5. checks that every page of the table of contents became an HTML file and that no page
   loads a script from another host (Jupyter Book 2 exits 0 having written no HTML, and a
   build that succeeds proves nothing about the pages).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from .. import paths, provenance, store
from ..errors import BookBuildError, ConfigError
from ..experiments.microbench.report import CHART_KEYS, GLUE_KEYS
from ..log import get as get_logger
from . import render

log = get_logger(__name__)

#: Where the toc expects the executed notebook (relative to the repository root).
GENERATED = Path("book") / "generated"
NOTEBOOK = "microbench.ipynb"
#: The trace notebook (Figures 12–13), executed under the same run id; its pages paste these keys.
TRACE_NOTEBOOK = "trace.ipynb"
TRACE_GLUE_KEYS = ("fig12", "fig13", "trace_summary", "trace_replay", "trace_findings", "trace_not_measured",
                   "trace_provenance", "trace_run_id", "fig12_verdict", "fig13_verdict", "trace_verdicts",
                   "analysis_code")
TRACE_CHART_KEYS = ("fig12", "fig13")
#: The executed notebooks/reanalysis.ipynb of the same run; it glues the run it opened.
REANALYSIS, REANALYSIS_KEY = "reanalysis.ipynb", "reanalysis_run_id"
#: The digest of the analysis code an executed notebook was made with (every notebook glues it).
CODE_KEY = "analysis_code"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_REMOTE_SCRIPT = re.compile(r"""<script\b[^>]*\bsrc\s*=\s*["']?\s*(?:https?:)?//""", re.I)


@dataclass(frozen=True)
class BookSource:
    """The run a book is built from."""

    run_id: str
    notebook: Path
    reanalysis: Path | None = None


def reference_run(results_root: Path | None = None) -> str:
    """The reference run's id: the one line of ``results/reference.txt``."""
    path = store.root(results_root) / "reference.txt"
    if not path.is_file():
        raise ConfigError(f"no reference run: {path} does not exist; pass --run-id, or write the "
                          f"id of a run with an executed notebook into {path}")
    run_id = path.read_text(encoding="utf-8").strip()
    if not run_id or "\n" in run_id or "/" in run_id:
        raise ConfigError(f"{path} must hold one line, the id of the reference run; found {run_id!r}")
    return run_id


def glued_outputs(notebook: Path) -> dict[str, dict]:
    """The mime bundles glued in an executed notebook (``myst_nb.glue``), by name."""
    cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells", [])
    found = {}
    for cell in cells:
        for output in cell.get("outputs", []):
            glued = output.get("metadata", {}).get("scrapbook")
            if glued:
                prefix = glued.get("mime_prefix", "")
                found[glued["name"]] = {mime[len(prefix):] if mime.startswith(prefix) else mime: data
                                        for mime, data in output.get("data", {}).items()}
    return found


def _problems(notebook: Path, glued: dict[str, dict]) -> list[str]:
    """What keeps ``notebook`` from making the book: missing keys, charts not made offline."""
    problems = [f"no glue key {key!r}" for key in GLUE_KEYS if key not in glued]
    for key in CHART_KEYS:
        bundle = glued.get(key)
        if bundle is None:
            continue
        html = "".join(bundle.get("text/html", ""))
        if render.mime_type() not in bundle or render.CHART_CLASS not in html:
            problems.append(f"{key!r} is not an Altair chart rendered by kdlib.render (call "
                            f"kdlib.render.enable() in the notebook's first cell)")
    return problems


def _stale(run_id: str, notebook: Path, glued: dict[str, dict], results_root: Path) -> list[str]:
    """The run's files must be the ones the notebook was executed on."""
    from ..experiments.microbench import BENCHES, logs

    recorded = "".join(glued["results_digest"].get("text/plain", "")).strip("'\"")
    benches = [b for b in BENCHES if (results_root / b / run_id).is_dir()]
    if recorded != logs.digest(run_id, benches, results_root):
        return [f"the files under {results_root}/<bench>/{run_id}/ changed since {notebook.name} was executed: "
                "execute the notebook again (it resumes, re-running nothing finished) before building the book"]
    return []


def _text(glued: dict[str, dict], key: str) -> str:
    return "".join(glued.get(key, {}).get("text/plain", "")).strip("'\"")


def reexecute_command(notebook: Path) -> str:
    """The papermill command that executes ``notebook`` again with the parameters it was executed with."""
    recorded = json.loads(notebook.read_text(encoding="utf-8")).get("metadata", {}).get("papermill", {})
    parameters = " ".join(f"-p {k} {json.dumps(v) if not isinstance(v, str) else v}"
                          for k, v in (recorded.get("parameters") or {}).items())
    return f"papermill notebooks/{notebook.name} {notebook} {parameters}".strip()


def code_problems(notebooks: list[Path], current: str | None = None) -> list[str]:
    """Executed notebooks made by analysis code other than this checkout's (or by code that did not say)."""
    current = current or provenance.analysis_digest()
    problems = []
    for notebook in notebooks:
        recorded = _text(glued_outputs(notebook), CODE_KEY)
        if recorded != current:
            made = f"analysis code {recorded[:12]}" if recorded else "code that recorded no analysis digest"
            problems.append(f"{notebook} was made by {made}, not by this checkout's ({current[:12]}: "
                            f"{', '.join(provenance.ANALYSIS_CODE)}): its pages would show older code's output. "
                            f"Execute it again (finished runs are resumed, nothing is measured): "
                            f"{reexecute_command(notebook)}")
    return problems


def _damaged_trace(run_id: str, results_root: Path) -> list[str]:
    """The run's trace logs must pass the integrity checks (checksum, counts, every line)."""
    from ..experiments.trace import run as trace_run

    if not (results_root / trace_run.BENCH / run_id).is_dir():
        return []
    return [f"{why}: run the trace notebook again under this run id (it redoes a damaged system)"
            for why in trace_run.damaged_files(run_id, results_root)]


def find_source(run_id: str | None = None, results_root: Path | None = None) -> BookSource:
    """The executed notebook of ``run_id`` (default: the reference run), checked for the glue keys."""
    results_root = store.root(results_root)
    run_id = run_id or reference_run(results_root)
    notebook = results_root / "executed" / run_id / NOTEBOOK
    if not notebook.is_file():
        executed = results_root / "executed"
        known = sorted(p.parent.name for p in executed.glob(f"*/{NOTEBOOK}")) if executed.is_dir() else []
        raise ConfigError(f"run {run_id!r} has no executed notebook at {notebook}; "
                          f"runs with one: {', '.join(known) or 'none'} (execute "
                          f"notebooks/{NOTEBOOK} with papermill first, see the README)")
    glued = glued_outputs(notebook)
    # Older code's notebook: executing it again is the remedy for everything else it lacks.
    problems = code_problems([notebook]) or _problems(notebook, glued)
    if not problems:
        problems = _stale(run_id, notebook, glued, results_root)
    if not problems:
        problems = _damaged_trace(run_id, results_root)
    reanalysis = notebook.with_name(REANALYSIS)
    if not problems:
        problems = _reanalysis_problems(run_id, reanalysis)
    if not problems:
        trace = notebook.with_name(TRACE_NOTEBOOK)
        problems = code_problems([reanalysis, *([trace] if trace.is_file() else [])])
    if problems:
        raise ConfigError(f"{notebook} cannot make the book (the pages paste {', '.join(GLUE_KEYS)}):\n  "
                          + "\n  ".join(problems))
    return BookSource(run_id, notebook, reanalysis)


def _reanalysis_problems(run_id: str, reanalysis: Path) -> list[str]:
    """The re-analysis page must exist and show the same run."""
    make = (f"execute it: papermill notebooks/{REANALYSIS} {reanalysis} -p run_id {run_id}")
    if not reanalysis.is_file():
        return [f"no executed re-analysis notebook {reanalysis}; {make}"]
    shown = "".join(glued_outputs(reanalysis).get(REANALYSIS_KEY, {}).get("text/plain", "")).strip("'\"")
    if shown != run_id:
        return [f"{reanalysis} shows run {shown or '(none)'!r}, not {run_id!r}; {make}"]
    return []


def toc_files(book_root: Path | None = None) -> list[str]:
    """Every page of ``_toc.yml`` (root first), as paths without suffix."""
    book_root = book_root or paths.repo_root()
    toc = yaml.safe_load((book_root / "_toc.yml").read_text(encoding="utf-8"))
    found = [toc["root"]]

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "file" in node:
                found.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(toc.get("parts", toc.get("chapters", [])))
    return found


def place_sources(source: BookSource, book_root: Path | None = None) -> Path:
    """Copy the executed notebook to ``book/generated/``, render its charts' SVGs next to it,
    and write the bundle to ``_static/``; returns the copied notebook."""
    book_root = book_root or paths.repo_root()
    generated = book_root / GENERATED
    if generated.exists():
        shutil.rmtree(generated)
    generated.mkdir(parents=True)
    shutil.copyfile(source.notebook, generated / NOTEBOOK)
    if source.reanalysis is not None:
        shutil.copyfile(source.reanalysis, generated / REANALYSIS)
    glued = glued_outputs(source.notebook)
    for key in CHART_KEYS:
        render.save_svg(glued[key][render.mime_type()], generated / "figures" / f"{key}.svg")
    _place_trace(source.notebook.parent / TRACE_NOTEBOOK, generated,
                 "book/generated/trace" in toc_files(book_root))
    (generated / MACHINE_LOAD).write_text(machine_load_markdown(source.run_id, source.notebook.parents[2]),
                                          encoding="utf-8")
    render.write_book_bundle(book_root / "_static")
    return generated / NOTEBOOK


#: The reproducibility page includes this file: every run's machine load, from the run's metadata.
MACHINE_LOAD = "machine_load.md"
#: Figure 13's page includes this file: the two Dr/K8s+ configurations side by side, when the run has them.
KPA_COMPARISON, KPA_COMPARISON_KEY = "fig13_kpa.md", "trace_kpa_comparison"


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return ""
    return str(value).replace("|", "\\|")


def machine_load_markdown(run_id: str, results_root: Path) -> str:
    """The ranges and the per-run table of how busy the machine was (for the reproducibility page)."""
    from ..experiments import loads

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


def _place_trace(notebook: Path, generated: Path, required: bool) -> None:
    """Copy the run's executed trace notebook (Figures 12–13) beside the microbenchmarks' one."""
    if not notebook.is_file():
        if required:
            raise ConfigError(f"the table of contents shows Figures 12–13, but {notebook} does not exist "
                              f"(execute notebooks/{TRACE_NOTEBOOK} with papermill under the same run id)")
        return
    glued = glued_outputs(notebook)
    missing = [key for key in TRACE_GLUE_KEYS if key not in glued]
    if missing:
        raise ConfigError(f"{notebook} cannot make the book: no glue key(s) {', '.join(missing)}")
    shutil.copyfile(notebook, generated / TRACE_NOTEBOOK)
    for key in TRACE_CHART_KEYS:
        render.save_svg(glued[key][render.mime_type()], generated / "figures" / f"{key}.svg")
    if KPA_COMPARISON_KEY in glued:
        comparison = f"```{{glue}} {KPA_COMPARISON_KEY}\n:doc: generated/{TRACE_NOTEBOOK}\n```\n"
    else:  # an executed notebook made before both configurations were systems of the trace
        comparison = ("*The run shown predates the side-by-side comparison: its trace notebook was executed "
                      "before both `Dr/K8s+` configurations were systems of every trace run. Run the trace again "
                      "(it resumes, and measures the configuration it lacks).*\n")
    (generated / KPA_COMPARISON).write_text(comparison, encoding="utf-8")


_RUNNER = """
import sys
from pathlib import Path
from jupyter_book.sphinx import build_sphinx
src, out, toc = map(Path, sys.argv[1:4])
revision = sys.argv[4]
result = build_sphinx(src, out / "html", noconfig=True, path_config=src / "_config.yml",
                      doctreedir=out / ".doctrees",
                      confoverrides={"external_toc_path": toc.as_posix(), "nitpicky": True,
                                     "latex_individualpages": False,
                                     "myst_substitutions": {"build_revision": revision}},
                      builder="html", warningiserror=True, keep_going=True, freshenv=True,
                      force_all=True)
sys.exit(result if isinstance(result, int) else 1)
"""


def run_jupyter_book(book_root: Path, out_dir: Path) -> tuple[list[str], str]:
    """``jupyter-book build`` with ``-W -n --keep-going`` into ``out_dir/html``, in a child process.

    The child process keeps Sphinx's global state (and myst-nb's glue cache) out of the
    caller, which may be a notebook kernel or a test session that builds twice.
    """
    for stale in ("html", ".doctrees", "jupyter_execute"):
        shutil.rmtree(out_dir / stale, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    from ..provenance import git_revision

    code = git_revision(book_root)
    revision = code["git_revision"][:12] + (" (with uncommitted changes)" if code["git_dirty"] else "")
    command = [sys.executable, "-c", _RUNNER, str(book_root), str(out_dir), str(book_root / "_toc.yml"), revision]
    done = subprocess.run(command, cwd=book_root, capture_output=True, text=True)
    output = _ANSI.sub("", done.stdout + done.stderr)  # Sphinx colours its output regardless
    if done.returncode != 0:
        warnings = [line for line in output.splitlines() if "WARNING" in line or "ERROR" in line]
        reason = f"jupyter-book build failed (exit {done.returncode})"
        if warnings:
            reason += ":\n  " + "\n  ".join(warnings[:20])
        shown = ["jupyter-book", "build", str(book_root), "-W", "-n", "--keep-going", f"(into {out_dir / 'html'})"]
        raise BookBuildError(reason, shown, output)
    return command, output


def check_pages(html_dir: Path, pages: list[str]) -> list[Path]:
    """Every toc page as HTML, none loading a script from another host; the pages found."""
    problems, found = [], []
    for page in pages:
        path = html_dir / f"{page}.html"
        if not path.is_file():
            problems.append(f"missing page {path}")
        else:
            found.append(path)
    if not (html_dir / "index.html").is_file():
        problems.append(f"missing {html_dir / 'index.html'}")
    for path in sorted(html_dir.rglob("*.html")):
        if _REMOTE_SCRIPT.search(path.read_text(encoding="utf-8", errors="replace")):
            problems.append(f"{path} loads a script from another host")
    if problems:
        raise BookBuildError("the built book is incomplete:\n  " + "\n  ".join(problems))
    return found


def build_book(run_id: str | None = None, results_root: Path | None = None,
               out_dir: Path = Path("_build")) -> Path:
    """Build the book from ``run_id`` (default: the reference run); returns ``out_dir/html``.

    ``results_root`` defaults to ``$KDLIB_RESULTS_DIR``, else the repository's ``results/``;
    relative paths are taken from the repository root. Raises :class:`ConfigError` when the
    run has no executed notebook (or the notebook misses a glue key) and
    :class:`BookBuildError` when the build warns or fails or a page is missing.
    """
    repo = paths.repo_root()
    results_root = _absolute(store.root(results_root))
    out_dir = _absolute(out_dir)
    source = find_source(run_id, results_root)
    place_sources(source, repo)
    log.info("book: building run %r from %s", source.run_id, source.notebook)
    started = time.monotonic()
    run_jupyter_book(repo, out_dir)
    html_dir = out_dir / "html"
    check_pages(html_dir, toc_files(repo))
    log.info("book: %s (%.1f s)", html_dir / "index.html", time.monotonic() - started)
    return html_dir


def _absolute(path: Path) -> Path:
    path = Path(path).expanduser()
    return path if path.is_absolute() else paths.repo_root() / path
