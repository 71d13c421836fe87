"""kdlib.publish.render in a live notebook frontend: the bundle is displayed once, and only there."""

from __future__ import annotations

import altair as alt
import pandas as pd
import pytest

from kdlib.publish import render


@pytest.fixture
def displayed(monkeypatch) -> list[dict]:
    """What render displays (IPython's display, recorded), with the once-per-kernel flag reset."""
    import IPython.display

    shown: list[dict] = []
    monkeypatch.setattr(IPython.display, "display", lambda value, raw=False: shown.append(value))
    monkeypatch.setattr(render, "_bundle_displayed", False)
    monkeypatch.setattr(render, "javascript_bundle", lambda: "(function () { /* bundle */ })();\n")
    yield shown
    alt.renderers.enable("default")


def test_a_kernel_of_a_jupyter_server_displays_the_bundle_once(displayed, monkeypatch) -> None:
    monkeypatch.setenv("JPY_SESSION_NAME", "notebooks/reanalysis.ipynb")
    render.enable()
    render.enable()  # a second enable() in the same kernel adds nothing
    assert len(displayed) == 1
    assert displayed[0]["text/html"].startswith('<script type="text/javascript">')
    assert "bundle" in displayed[0]["text/html"] and "text/plain" in displayed[0]


def test_papermill_kernels_display_no_bundle(displayed, monkeypatch) -> None:
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    render.enable()
    assert displayed == [] and alt.renderers.active == render.RENDERER
    render.enable(bundle=True)  # asked for explicitly
    assert len(displayed) == 1


def test_the_bundle_cannot_close_its_script_element(monkeypatch) -> None:
    monkeypatch.setattr(render, "javascript_bundle", lambda: 'var s = "</script><b>";\n')
    html = render.bundle_html()
    assert html.count("</script") == 1 and html.endswith("</script>")


def test_a_chart_says_what_to_do_where_its_script_does_not_run() -> None:
    chart = alt.Chart(pd.DataFrame({"x": [1]}), title="t").mark_point().encode(x="x:Q")
    html = render.chart_html(chart.to_dict())
    container = html[:html.index("<script")]
    assert "trusted notebook" in container and "render.enable()" in container
    # The script empties the container first, so the book never shows the note.
    assert html.index('el.textContent = "";') < html.index("function draw()")
