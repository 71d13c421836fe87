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

from kdlib import book

from .browser import Chromium, StaticServer, find_chromium

REPO = Path(__file__).resolve().parents[2]
RESULTS = book.default_results_root()
BUILD = REPO / "_build"
FIGURES = {"book/fig9": "scale-pods", "book/fig10": "scale-funcs", "book/fig11": "scale-nodes"}
# Pages opened in Chromium, with how many charts each must draw (None: at least one).
CHART_PAGES = {**{page: 2 for page in FIGURES},  # figN_e2e and figN_stages
               "book/generated/microbench": None}  # the executed notebook itself
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
    built = book.build_book(results_root=RESULTS, out_dir=BUILD)
    print(f"book built in {time.monotonic() - started:.1f} s")
    return built


def test_every_page_of_the_toc_is_built(html_dir: Path) -> None:
    pages = book.toc_files(REPO)
    assert set(FIGURES) <= set(pages)
    for page in pages:
        assert (html_dir / f"{page}.html").is_file(), page
    assert (html_dir / "_static" / "kdlib-vega.js").is_file()


def test_pages_load_no_script_from_another_host(html_dir: Path) -> None:
    remote = re.compile(r"""<script\b[^>]*\bsrc\s*=\s*["']?\s*(?:https?:)?//""", re.I)
    for path in html_dir.rglob("*.html"):
        text = path.read_text(encoding="utf-8")
        assert not remote.search(text), f"{path} loads a script from another host"
        assert "cdn." not in text and "unpkg.com" not in text, f"{path} names a CDN"


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
    assert reference in visible_text(html_dir / "book/reproducibility.html")


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    executable = find_chromium()
    if executable is None:  # a missing browser is a broken set-up, not a reason to skip
        pytest.fail("chromium is not installed: run `bash setup.sh` (it installs Debian's chromium)")
    with Chromium(executable, tmp_path_factory.mktemp("chromium-profile")) as browser:
        yield browser


@pytest.mark.parametrize("page_name", list(CHART_PAGES))
def test_page_draws_its_charts_in_chromium(html_dir: Path, chromium: Chromium, page_name: str) -> None:
    with StaticServer(html_dir) as server:
        page = chromium.new_page()
        try:
            page.goto(f"{server.url}/{page_name}.html")
            charts = page.wait_for(f"(() => {{ const c = {_CHARTS_JS}; "
                                   "return c.length && c.every(x => x.embedded && (x.marks || x.canvas)) ? c : null; })()")
            charts = charts or page.evaluate(_CHARTS_JS)
            page.screenshot(BUILD / "screenshots" / f"{Path(page_name).name}.png")
        finally:
            page.close()
    problems = []
    expected = CHART_PAGES[page_name]
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
    assert not problems, f"{page_name}:\n  " + "\n  ".join(problems)
