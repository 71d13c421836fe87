"""The book: it builds from the reference run, shows that run's numbers, and draws in a browser.

The book is built once per session from ``results/reference.txt``'s run (skipped, with the
reason, only while that file does not exist). ``KDLIB_RESULTS_DIR`` points the tests at
another results folder with its own ``reference.txt``, as it does for kdlib.results (for
developing the book's machinery against a throwaway run).

Expected numbers are computed from the raw logs directly, not through kdlib: every
``results/<bench>/<run_id>/e2e.<baseline>.<scale>[.r<k>].log`` has a line
``total: <microseconds> us``; the figure pages must show the p90 in seconds with two
decimals (the median over repeats, and the minimum and maximum).

The browser test serves ``_build/html`` on 127.0.0.1, opens each figure page in headless
Chromium and asserts that every chart drew, that the page requested nothing from another
host and that the console shows no error. Screenshots: ``_build/screenshots/<page>.png``.
"""

from __future__ import annotations

import re
import statistics
import time
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from kdlib.experiments import pages as book_pages
from kdlib.publish import book

from .browser import Chromium, StaticServer, find_chromium

from ..helpers import REPO, reference_results

RESULTS = reference_results()
BUILD = REPO / "_build"
FIGURES = {"book/fig9": "scale-pods", "book/fig10": "scale-funcs", "book/fig11": "scale-nodes"}
# Pages opened in Chromium, with how many charts each must draw (None: at least one).
CHART_PAGES = {**{page: 2 for page in FIGURES},  # figN_e2e and figN_stages
               "book/generated/microbench": None,  # the executed notebook itself
               "book/generated/reanalysis": None,  # the executed re-analysis notebook
               "book/fig12": 1, "book/fig13": 1,  # the trace's CDFs, when the toc shows them
               "book/generated/trace": None}
_CDN_HOSTS = ("unpkg.com", "cdn.jsdelivr.net", "cdnjs.cloudflare.com", "code.jquery.com", "cdn.plot.ly")
_LOG = re.compile(r"^e2e\.(?P<baseline>[^.]+)\.(?P<scale>\d+)(?:\.r\d+)?\.log$")
_TOTAL = re.compile(r"^total:\s*(\d+(?:\.\d+)?)\s*us\s*$", re.M)

# Drawn: vega-embed ran on the container and Vega put marks with content into an SVG or a
# canvas. Returns one entry per chart container.
_CHARTS_JS = """
Array.from(document.querySelectorAll('.kdlib-chart')).map(el => ({
  id: el.id,
  embedded: el.classList.contains('vega-embed'),
  marks: el.querySelectorAll('svg .role-mark > *').length,
  canvas: el.querySelectorAll('canvas').length,
  text: el.textContent.slice(0, 200),
}))
"""


class _VisibleText(HTMLParser):
    """The text of a page outside <script> and <style>."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        self._hidden += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self._hidden -= tag in ("script", "style") and self._hidden > 0

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def visible_text(path: Path) -> str:
    parser = _VisibleText()
    parser.feed(path.read_text(encoding="utf-8"))
    return " ".join(parser.parts)


def p90_from_logs(bench_dir: Path) -> dict[tuple[str, int], list[float]]:
    """Seconds per (baseline, scale), one value per repeat, from the raw e2e logs."""
    found: dict[tuple[str, int], list[float]] = defaultdict(list)
    for path in sorted(bench_dir.glob("e2e.*.log")):
        match = _LOG.match(path.name)
        total = _TOTAL.search(path.read_text(encoding="utf-8"))
        if match and total:
            found[(match["baseline"], int(match["scale"]))].append(float(total.group(1)) / 1e6)
    return dict(found)


def shows(text: str, seconds: float) -> bool:
    """``text`` shows ``seconds`` with exactly two decimals (not as a prefix of a longer number)."""
    return re.search(rf"(?<![\d.]){re.escape(f'{seconds:.2f}')}(?![\d])", text) is not None


@pytest.fixture(scope="module")
def reference() -> str:
    path = RESULTS / "reference.txt"
    if not path.is_file():
        pytest.skip(f"{path} does not exist yet: there is no reference run to build the book from")
    return book.reference_run(RESULTS)


@pytest.fixture(scope="module")
def html_dir(reference: str) -> Path:
    started = time.monotonic()
    built = book.build_book(book_pages.contents(), results_root=RESULTS, out_dir=BUILD)
    print(f"book built in {time.monotonic() - started:.1f} s")
    return built


def test_every_page_of_the_toc_is_built(html_dir: Path) -> None:
    pages = book.toc_files(REPO)
    assert set(FIGURES) <= set(pages)
    for page in pages:
        assert (html_dir / f"{page}.html").is_file(), page
    assert (html_dir / "_static" / "kdlib-vega.mjs").is_file()
    assert not (html_dir / "_static" / "kdlib-vega.js").exists()


def test_only_pages_with_a_chart_load_the_vega_bundle(html_dir: Path) -> None:
    # Every page gets the small loader (Jupyter Book adds every _static/*.js); no page names
    # the ~900 KB bundle itself: the loader adds it where a chart is (the browser tests draw them).
    bundle_script = re.compile(r"""<script\b[^>]*\bsrc\s*=\s*["'][^"']*kdlib-vega\.m?js""", re.I)
    for path in html_dir.rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        assert not bundle_script.search(text), path
        if "<head" in text:  # not a redirect
            assert "kdlib-vega-loader.js" in text, path


def test_pages_load_no_script_from_another_host(html_dir: Path) -> None:
    remote = re.compile(r"""<script\b[^>]*\bsrc\s*=\s*["']?\s*(?:https?:)?//""", re.I)
    for path in html_dir.rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        assert not remote.search(text), f"{path} loads a script from another host"
        named = [host for host in _CDN_HOSTS if host in text]
        assert not named, f"{path} names a CDN: {named}"


def test_figure_pages_show_the_reference_runs_p90_values(html_dir: Path, reference: str) -> None:
    measured_any = False
    for page, bench in FIGURES.items():
        text = visible_text(html_dir / f"{page}.html")
        assert reference in text, f"{page} does not name the run {reference!r}"
        values = p90_from_logs(RESULTS / bench / reference)
        if not values:
            assert "not measured" in text, f"{page}: no logs for {bench}, and the page does not say so"
            continue
        measured_any = True
        for (baseline, scale), seconds in values.items():
            for label, value in (("median", statistics.median(seconds)), ("min", min(seconds)),
                                 ("max", max(seconds))):
                assert shows(text, value), (f"{page} does not show the {label} p90 of {baseline} at "
                                            f"{scale}: {value:.2f} s (from {bench}/{reference}/e2e.*.log)")
    assert measured_any, f"the reference run {reference!r} has no e2e log under {RESULTS}"


def test_reproducibility_page_names_the_run(html_dir: Path, reference: str) -> None:
    text = visible_text(html_dir / "book/reproducibility.html")
    assert reference in text
    if (html_dir / "book/fig13.html").is_file():  # Figure 13 sends readers here for the autoscaler's setting
        assert "parameters.target_concurrency" in text


def test_reproducibility_page_shows_every_runs_machine_load(html_dir: Path, reference: str) -> None:
    """The per-run range computed from the runs' metadata, not one value taken at the end."""
    from kdlib.experiments import loads

    text = " ".join(visible_text(html_dir / "book/reproducibility.html").split())
    frame, _ = loads.run_loads(reference, RESULTS)
    ranges = loads.summary(frame)
    assert f"runs {ranges['runs']}" in text and f"1-minute load during {ranges['1-minute load during']}" in text
    assert f"1-minute load at the end (provenance) {ranges['1-minute load at the end (provenance)']}" in text


def test_fig13_says_which_curve_is_the_papers(html_dir: Path) -> None:
    text = " ".join(visible_text(html_dir / "book/fig13.html").replace("’", "'").split())
    assert "Dr/K8s+ (as shipped) — vanilla Kubernetes with the original's Knative configuration" in text
    assert "This is the curve that corresponds to the paper's Figure 13 k8s+" in text


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    executable = find_chromium()
    if executable is None:  # a missing browser is a broken set-up, not a reason to skip
        pytest.fail("chromium is not installed: run `bash setup.sh` (it installs Debian's chromium)")
    with Chromium(executable, tmp_path_factory.mktemp("chromium-profile")) as browser:
        yield browser


def _draw(chromium: Chromium, root: Path, page_path: str, expected: int | None, screenshot: Path) -> list[str]:
    """Open ``root/page_path`` over HTTP in Chromium; the problems found (empty: all charts drew)."""
    with StaticServer(root) as server:
        page = chromium.new_page()
        try:
            page.goto(f"{server.url}/{page_path}")
            charts = page.wait_for(f"(() => {{ const c = {_CHARTS_JS}; "
                                   "return c.length && c.every(x => x.embedded && (x.marks || x.canvas)) ? c : null; })()")
            charts = charts or page.evaluate(_CHARTS_JS)
            page.screenshot(screenshot)
        finally:
            page.close()
    problems = []
    wrong_count = (len(charts) != expected) if expected else not charts
    if wrong_count:
        problems.append(f"{len(charts)} kdlib charts on the page, expected {expected or 'at least one'}")
    problems += [f"chart not drawn: {chart}" for chart in charts
                 if not (chart["embedded"] and (chart["marks"] or chart["canvas"]))]
    foreign = [url for url in page.requests
               if urlsplit(url).scheme not in ("data", "blob", "about") and urlsplit(url).hostname != "127.0.0.1"]
    problems += [f"requested another host: {url}" for url in foreign]
    problems += [f"console: {error}" for error in page.errors]
    if not page.requests:
        problems.append("no request recorded (the page did not load?)")
    return problems


# Alone: Chromium aborts its page loads (net::ERR_NETWORK_CHANGED) when another test adds or
# removes a network interface (SSH test hosts, CNI bridges) while it loads.
@pytest.mark.alone
@pytest.mark.parametrize("page_name", list(CHART_PAGES))
def test_page_draws_its_charts_in_chromium(html_dir: Path, chromium: Chromium, page_name: str) -> None:
    problems = _draw(chromium, html_dir, f"{page_name}.html", CHART_PAGES[page_name],
                     BUILD / "screenshots" / f"{Path(page_name).name}.png")
    assert not problems, f"{page_name}:\n  " + "\n  ".join(problems)


#: Where each figure page's verdict must be: inside the first screen of a 1280×800 window.
FIRST_SCREEN = (1280, 800)
VERDICT_PAGES = [*FIGURES, "book/fig12", "book/fig13"]
_VERDICT_JS = """
(() => {
  const box = document.querySelector('.kdlib-verdict');
  const article = document.querySelector('article.bd-article').getBoundingClientRect();
  const wide = Array.from(document.querySelectorAll('article div.output'))
    .filter(el => el.getBoundingClientRect().right > article.right + 1).length;
  return box ? {bottom: box.getBoundingClientRect().bottom, text: box.textContent, wide: wide}
             : {bottom: null, text: '', wide: wide};
})()
"""


@pytest.mark.parametrize("page_name", VERDICT_PAGES)
def test_a_figure_page_opens_on_its_verdict_and_fits_its_column(html_dir: Path, chromium: Chromium,
                                                                 page_name: str) -> None:
    with StaticServer(html_dir) as server:
        page = chromium.new_page()
        try:
            width, height = FIRST_SCREEN
            page.send("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
            page.goto(f"{server.url}/{page_name}.html")
            page.wait_for(f"(() => {{ const c = {_CHARTS_JS}; return c.every(x => x.embedded) ? c : null; }})()")
            found = page.evaluate(_VERDICT_JS)
        finally:
            page.close()
    assert found["bottom"] is not None, f"{page_name} has no verdict"
    assert found["bottom"] <= height, f"{page_name}: the verdict ends at {found['bottom']:.0f} px, below the first screen"
    assert re.search(r"Verdict: (supported|contradicted|cannot test here), because \S", found["text"]), found["text"]
    assert "The claim" in found["text"] and "Measured here" in found["text"]
    assert found["wide"] == 0, f"{page_name}: {found['wide']} outputs run past the text column"


def test_the_intro_shows_every_figures_verdict(html_dir: Path) -> None:
    text = visible_text(html_dir / "book/intro.html")
    verdicts = re.findall(r"(?<![\w-])(supported|contradicted|cannot test here)(?![\w-])", text)
    assert len(verdicts) >= 5, f"the intro shows {len(verdicts)} verdicts, one per figure expected"


def _meta_files(reference: str) -> list[dict]:
    import json

    return [json.loads(path.read_text()) for path in sorted(RESULTS.glob(f"scale-*/{reference}/meta.*.json"))]


def test_no_page_shows_an_unknown_version_an_unrendered_substitution_or_stale_text(html_dir: Path) -> None:
    """Grep of the built HTML, charts' subtitles (in their scripts) included."""
    stale = ("appear once a run of the trace", "on its own node", "the paper's 20-node", "Kubedirect, reproduced",
             "same notebook names them as the systems to run", "This book walks through a reproduction of Figures 9–11")
    for path in sorted(html_dir.rglob("*.html")):
        raw = path.read_text(encoding="utf-8")
        if "<head" not in raw:
            continue
        text = visible_text(path).replace("\u2019", "'")  # Sphinx's smart quotes
        assert "{{" not in text, f"{path}: an unrendered substitution"
        assert not re.search(r"(Kubernetes|kwok|etcd)( version)? \?", raw), f"{path}: a version shown as '?'"
        found = [phrase for phrase in stale if phrase in text]
        assert not found, f"{path}: stale text {found}"


def test_pages_name_the_revision_and_versions_each_run_recorded(html_dir: Path, reference: str) -> None:
    metas = [m for m in _meta_files(reference) if m.get("finished")]
    assert metas, f"the reference run {reference!r} has no finished run's metadata"
    text = visible_text(html_dir / "book/reproducibility.html")
    for revision in {m["provenance"]["git_revision"][:7] for m in metas}:
        assert revision in text, f"the reproducibility page does not name revision {revision} the runs recorded"
    for version in {m["versions"]["kube-apiserver"] for m in metas}:
        assert version in text
    import json

    for path in sorted((RESULTS / "trace" / reference).glob("meta.*.json")):  # the trace's systems
        revision = json.loads(path.read_text())["provenance"]["git_revision"]
        assert revision in text, f"the reproducibility page does not name revision {revision} of {path.name}"
    figure = (html_dir / "book/fig9.html").read_text(encoding="utf-8")
    assert {m["provenance"]["git_revision"][:7] for m in metas if m["bench"] == "scale-pods"} <= set(
        re.findall(r"code ([0-9a-f]{7})", figure)), "the Figure 9 chart subtitles do not name the runs' revision"


def test_getting_started_counts_the_runs_of_the_run_it_shows(html_dir: Path, reference: str) -> None:
    logs = sum(len(p90_from_logs(RESULTS / bench / reference).get(key, []))
               for bench in FIGURES.values() for key in p90_from_logs(RESULTS / bench / reference))
    text = visible_text(html_dir / "book/getting-started.html")
    assert re.search(rf"made\s+{logs} runs", text), f"Getting started does not say the run made {logs} runs"


def test_a_page_without_charts_never_fetches_the_vega_bundle(html_dir: Path, chromium: Chromium) -> None:
    requested = {}
    for page_path in ("book/intro.html", "book/fig9.html"):
        with StaticServer(html_dir) as server:
            page = chromium.new_page()
            try:
                page.goto(f"{server.url}/{page_path}")  # returns after the load event
            finally:
                page.close()
        requested[page_path] = [urlsplit(url).path for url in page.requests]
    assert any(p.endswith("/_static/kdlib-vega-loader.js") for p in requested["book/intro.html"])
    assert not [p for p in requested["book/intro.html"] if "kdlib-vega.mjs" in p]
    assert [p for p in requested["book/fig9.html"] if p.endswith("/_static/kdlib-vega.mjs")]


def test_saved_chart_pages_of_the_reference_run_draw(reference: str, chromium: Chromium) -> None:
    """The HTML copies saved next to the results load the one shared bundle and draw."""
    pages = sorted(RESULTS.glob(f"*/{reference}/fig*.html"))
    assert len(pages) == 6 + 2 * (RESULTS / "trace" / reference).is_dir(), pages  # figures 9-11 (e2e, stages), 12-13
    for page in pages:
        relative = page.relative_to(RESULTS).as_posix()
        problems = _draw(chromium, RESULTS, relative, 1, BUILD / "screenshots" / f"results-{page.stem}.png")
        assert not problems, f"{relative}:\n  " + "\n  ".join(problems)


# --- The machinery without a reference run: renderer and build inputs (fast, always run) ---

@pytest.fixture
def offline_renderer():
    import altair as alt

    from kdlib.publish import render

    render.enable()
    yield render
    alt.renderers.enable("default")


def _chart(title: str = "p90"):
    import altair as alt
    import pandas as pd

    data = pd.DataFrame({"baseline": ["k8s+", "kd+"], "p90": [1.5, 0.5]})
    return alt.Chart(data, title=title).mark_bar().encode(x="baseline:N", y="p90:Q")


def _notebook_with(outputs: list[dict]):
    import nbformat

    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [nbformat.from_dict(output) for output in outputs]
    notebook.cells.append(cell)
    return notebook


def _glued(name: str, value) -> dict:
    """What ``myst_nb.glue(name, value, display=False)`` records as a cell output."""
    from IPython.core.formatters import format_display_data

    bundle, metadata = format_display_data(value)
    prefix = "application/papermill.record/"
    return {"output_type": "display_data", "data": {prefix + mime: data for mime, data in bundle.items()},
            "metadata": {**metadata, "scrapbook": {"name": name, "mime_prefix": prefix}}}


def test_a_chart_carries_vega_lite_and_small_offline_html(offline_renderer) -> None:
    import nbformat

    bundle = _chart()._repr_mimebundle_()
    bundle = bundle[0] if isinstance(bundle, tuple) else bundle
    assert offline_renderer.mime_type() in bundle and "text/html" in bundle
    html = bundle["text/html"]
    assert offline_renderer.CHART_CLASS in html and offline_renderer.READY_EVENT in html
    assert "<script src" not in html and len(html) < 20_000, "the chart's HTML must not carry the bundle"
    # papermill writes the executed notebook only if it is valid nbformat (Altair 6's own
    # application/vnd.vegalite.v6.json with a dict value is not).
    nbformat.validate(_notebook_with([{"output_type": "display_data", "data": bundle, "metadata": {}},
                                      _glued("fig9_e2e", _chart())]))


def test_chart_html_cannot_close_its_own_script(offline_renderer) -> None:
    html = offline_renderer.chart_html(_chart("</script><script>alert(1)</script>").to_dict())
    assert html.count("</script>") == 1


def test_the_bundle_is_one_function_scope_publishing_one_global(offline_renderer) -> None:
    bundle = offline_renderer.javascript_bundle()
    body = bundle[bundle.index("*/") + 2:].strip()
    assert body.startswith("(function () {") and body.endswith("})();")
    assert f"window.{offline_renderer.GLOBAL}=" in bundle.replace(" ", "")
    assert f"new Event(\"{offline_renderer.READY_EVENT}\")" in bundle


def test_save_chart_writes_svg_and_standalone_offline_html(offline_renderer, tmp_path: Path) -> None:
    svg, html = offline_renderer.save_chart(_chart(), tmp_path / "fig")
    assert svg.read_text().lstrip().startswith("<svg") and "mark-rect" in svg.read_text()
    assert not re.search(r"<script[^>]*\bsrc=", html.read_text()), "the standalone page loads a script"


def test_building_without_a_usable_run_is_a_clear_config_error(offline_renderer, tmp_path: Path) -> None:
    import nbformat

    from kdlib.errors import ConfigError

    with pytest.raises(ConfigError, match="reference.txt does not exist"):
        book.build_book(book_pages.contents(), results_root=tmp_path, out_dir=tmp_path / "_build")
    (tmp_path / "reference.txt").write_text("r1\n")
    with pytest.raises(ConfigError, match="'r1' has no executed notebook"):
        book.build_book(book_pages.contents(), results_root=tmp_path, out_dir=tmp_path / "_build")
    executed = tmp_path / "executed" / "r1" / "microbench.ipynb"
    executed.parent.mkdir(parents=True)
    import altair as alt

    alt.renderers.enable("mimetype")  # a chart not made offline by kdlib.render
    from kdlib import provenance

    outputs = [_glued("fig9_e2e", _chart()), _glued("run_id", "r1"),
               _glued("analysis_code", provenance.analysis_digest())]
    nbformat.write(_notebook_with(outputs), executed)
    with pytest.raises(ConfigError) as error:
        book.build_book(book_pages.contents(), results_root=tmp_path, out_dir=tmp_path / "_build")
    assert "no glue key 'fig10_e2e'" in str(error.value) and "no glue key 'provenance'" in str(error.value)
    assert "'fig9_e2e' is not an Altair chart rendered by kdlib.render" in str(error.value)
    assert not (tmp_path / "_build").exists(), "nothing is built from a notebook that cannot make the book"


def test_a_notebook_made_by_other_analysis_code_is_refused_with_the_command_that_remakes_it(tmp_path: Path) -> None:
    import nbformat

    notebook = _notebook_with([_glued("analysis_code", "0" * 64)])
    notebook.metadata["papermill"] = {"parameters": {"run_id": "r1", "repeats": 3}}
    path = tmp_path / "microbench.ipynb"
    nbformat.write(notebook, path)
    problems = book.code_problems([path], current="1" * 64)
    assert len(problems) == 1 and "made by analysis code 000000000000" in problems[0]
    assert f"papermill notebooks/microbench.ipynb {path} -p " in problems[0]
    assert "-p run_id r1" in problems[0] and "-p repeats 3" in problems[0]
    assert book.code_problems([path], current="0" * 64) == []
    nbformat.write(_notebook_with([]), path)
    assert "recorded no analysis digest" in book.code_problems([path], current="1" * 64)[0]
