"""Build the Jupyter Book from an executed run: ``python -m kdlib book [--run-id X]``.

The book (``_config.yml``, ``_toc.yml`` and ``book/`` at the repository root) shows the
executed notebooks of ONE run; it never executes a notebook. It imports no experiment: each
experiment declares what its notebook gives the pages (a :class:`Part`: the notebook, the
glue keys its pages paste, its charts, how to tell that the run's files changed since it was
executed), and the composition hands them over (:func:`kdlib.experiments.pages.contents`,
which ``python -m kdlib book`` passes). :func:`build_book`

1. finds the run's executed root notebook, ``results/executed/<run_id>/microbench.ipynb``
   (default run: the one named in ``results/reference.txt``) and checks that it glued every
   key the pages paste, that the run's files are those it was executed on, and that each
   executed notebook was made by the analysis code of this checkout
   (:func:`kdlib.provenance.analysis_digest`): a notebook executed by older code is refused,
   with the papermill command that executes it again (it resumes: it measures nothing);
2. copies each part's notebook to ``book/generated/``, where ``_toc.yml`` expects it (and the
   run's executed re-analysis notebook, ``reanalysis.ipynb``, beside them), and
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from .. import paths, provenance, store
from ..errors import BookBuildError, ConfigError
from ..log import get as get_logger
from . import render

log = get_logger(__name__)

#: Where the toc expects the executed notebooks (relative to the repository root).
GENERATED = Path("book") / "generated"
#: The executed notebooks/reanalysis.ipynb of the same run; it glues the run it opened.
REANALYSIS, REANALYSIS_KEY = "reanalysis.ipynb", "reanalysis_run_id"
#: The digest of the analysis code an executed notebook was made with (every notebook glues it).
CODE_KEY = "analysis_code"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_REMOTE_SCRIPT = re.compile(r"""<script\b[^>]*\bsrc\s*=\s*["']?\s*(?:https?:)?//""", re.I)


@dataclass(frozen=True)
class Part:
    """What one experiment's executed notebook gives the book; the experiment declares it."""

    notebook: str  # its file name, in results/executed/<run_id>/ and in book/generated/
    glue_keys: tuple[str, ...]  # every key its pages paste
    chart_keys: tuple[str, ...]  # glued Altair charts, also rendered to book/generated/figures/<key>.svg
    #: (run_id, its executed notebook, results root) → why the run's files cannot be shown with it
    #: (changed since it was executed, or damaged); the notebook may not exist.
    check_files: Callable[[str, Path, Path], list[str]]
    #: The toc page that shows it (required when the toc lists that page); None: the root notebook.
    page: str | None = None
    #: (glued outputs, notebook name) → markdown files its pages include, by file name.
    includes: Callable[[dict[str, dict], str], dict[str, str]] | None = None


@dataclass(frozen=True)
class Contents:
    """Everything a book shows of a run: the root notebook (the microbenchmarks'), the other
    experiments' notebooks, and pages made from the run's files, (run_id, results root) →
    markdown by file name (the machine load of every run)."""

    root: Part
    parts: tuple[Part, ...] = ()
    pages: Callable[[str, Path], dict[str, str]] = field(default=lambda run_id, results_root: {})


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


def _problems(part: Part, glued: dict[str, dict]) -> list[str]:
    """What keeps ``part``'s notebook from making the book: missing keys, charts not made offline."""
    problems = [f"no glue key {key!r}" for key in part.glue_keys if key not in glued]
    for key in part.chart_keys:
        bundle = glued.get(key)
        if bundle is None:
            continue
        html = "".join(bundle.get("text/html", ""))
        if render.mime_type() not in bundle or render.CHART_CLASS not in html:
            problems.append(f"{key!r} is not an Altair chart rendered by kdlib.render (call "
                            f"kdlib.render.enable() in the notebook's first cell)")
    return problems


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
                            f"{', '.join(provenance.analysis_code())}): its pages would show older code's output. "
                            f"Execute it again (finished runs are resumed, nothing is measured): "
                            f"{reexecute_command(notebook)}")
    return problems


def find_source(contents: Contents, run_id: str | None = None, results_root: Path | None = None) -> BookSource:
    """The executed root notebook of ``run_id`` (default: the reference run), checked for the glue
    keys, with the run's files and every part's notebook checked too."""
    results_root = store.root(results_root)
    run_id = run_id or reference_run(results_root)
    root = contents.root
    notebook = results_root / "executed" / run_id / root.notebook
    if not notebook.is_file():
        executed = results_root / "executed"
        known = sorted(p.parent.name for p in executed.glob(f"*/{root.notebook}")) if executed.is_dir() else []
        raise ConfigError(f"run {run_id!r} has no executed notebook at {notebook}; "
                          f"runs with one: {', '.join(known) or 'none'} (execute "
                          f"notebooks/{root.notebook} with papermill first, see the README)")
    glued = glued_outputs(notebook)
    # Older code's notebook: executing it again is the remedy for everything else it lacks.
    problems = code_problems([notebook]) or _problems(root, glued)
    for part in (root, *contents.parts):
        if not problems:
            problems = part.check_files(run_id, notebook.with_name(part.notebook), results_root)
    reanalysis = notebook.with_name(REANALYSIS)
    if not problems:
        problems = _reanalysis_problems(run_id, reanalysis)
    if not problems:
        others = [notebook.with_name(part.notebook) for part in contents.parts]
        problems = code_problems([reanalysis, *(other for other in others if other.is_file())])
    if problems:
        raise ConfigError(f"{notebook} cannot make the book (the pages paste {', '.join(root.glue_keys)}):\n  "
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


def place_sources(contents: Contents, source: BookSource, book_root: Path | None = None) -> Path:
    """Copy the executed notebooks to ``book/generated/``, render their charts' SVGs next to them,
    write the run's pages and the bundle to ``_static/``; returns the copied root notebook."""
    book_root = book_root or paths.repo_root()
    generated = book_root / GENERATED
    if generated.exists():
        shutil.rmtree(generated)
    generated.mkdir(parents=True)
    if source.reanalysis is not None:
        shutil.copyfile(source.reanalysis, generated / REANALYSIS)
    toc = toc_files(book_root)
    for part in (contents.root, *contents.parts):
        _place(part, source.notebook.with_name(part.notebook), generated,
               required=part.page is None or part.page in toc)
    for name, text in contents.pages(source.run_id, source.notebook.parents[2]).items():
        (generated / name).write_text(text, encoding="utf-8")
    render.write_book_bundle(book_root / "_static")
    return generated / contents.root.notebook


def _place(part: Part, notebook: Path, generated: Path, required: bool) -> None:
    """Copy one part's executed notebook, render its charts, and write the files its pages include."""
    if not notebook.is_file():
        if required:
            raise ConfigError(f"the table of contents shows {part.page}, but {notebook} does not exist "
                              f"(execute notebooks/{part.notebook} with papermill under the same run id)")
        return
    glued = glued_outputs(notebook)
    problems = _problems(part, glued)
    if problems:
        raise ConfigError(f"{notebook} cannot make the book: " + "; ".join(problems))
    shutil.copyfile(notebook, generated / part.notebook)
    for key in part.chart_keys:
        render.save_svg(glued[key][render.mime_type()], generated / "figures" / f"{key}.svg")
    for name, text in (part.includes(glued, part.notebook) if part.includes else {}).items():
        (generated / name).write_text(text, encoding="utf-8")


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


def build_book(contents: Contents, run_id: str | None = None, results_root: Path | None = None,
               out_dir: Path = Path("_build")) -> Path:
    """Build the book of ``contents`` from ``run_id`` (default: the reference run); returns ``out_dir/html``.

    ``results_root`` defaults to ``$KDLIB_RESULTS_DIR``, else the repository's ``results/``;
    relative paths are taken from the repository root. Raises :class:`ConfigError` when the
    run has no executed notebook (or the notebook misses a glue key) and
    :class:`BookBuildError` when the build warns or fails or a page is missing.
    """
    repo = paths.repo_root()
    results_root = _absolute(store.root(results_root))
    out_dir = _absolute(out_dir)
    source = find_source(contents, run_id, results_root)
    place_sources(contents, source, repo)
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
