"""Benchmark of the book (issue: the book): build time, size of the HTML, largest page.

    python bench/book.py [--run-id X]

Also counts the chart containers on the pages that the browser test opens in Chromium
(tests/book/test_book.py), i.e. the number of charts checked there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kdlib.experiments import pages as book_pages  # noqa: E402
from kdlib.publish import book, render  # noqa: E402

CHECKED_PAGES = ("book/fig9", "book/fig10", "book/fig11", "book/generated/microbench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-id")
    args = parser.parse_args()
    started = time.monotonic()
    html = book.build_book(book_pages.contents(), run_id=args.run_id, out_dir=REPO / "_build")
    seconds = time.monotonic() - started
    files = [p for p in html.rglob("*") if p.is_file()]
    pages = [p for p in files if p.suffix == ".html"]
    largest = max(pages, key=lambda p: p.stat().st_size)
    charts = {page: (html / f"{page}.html").read_text().count(f'class="{render.CHART_CLASS}"')
              for page in CHECKED_PAGES}
    print(json.dumps({
        "build_s": round(seconds, 1),
        "html_total_mib": round(sum(p.stat().st_size for p in files) / 2**20, 2),
        "html_pages": len(pages),
        "largest_page": {"path": str(largest.relative_to(html)), "kib": round(largest.stat().st_size / 1024, 1)},
        "vega_bundle_kib": round((html / "_static" / render.BOOK_BUNDLE_NAME).stat().st_size / 1024, 1),
        "charts_on_checked_pages": charts,
        "charts_checked_in_chromium": sum(charts.values()),
    }, indent=2))


if __name__ == "__main__":
    main()
