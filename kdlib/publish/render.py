"""Offline chart rendering: Altair charts that draw with no network, in a notebook and in the book.

The notebooks call :func:`enable` in their first cell. From then on every Altair chart they
display carries a mime bundle with two renderings:

- Altair's own Vega-Lite mime type, which JupyterLab draws with its built-in extension;
- ``text/html``: a small ``<div>`` plus a script that draws the chart with ``vegaEmbed`` from
  ONE shared copy of the Vega / Vega-Lite / vega-embed JavaScript. In the book that is
  ``_static/kdlib-vega.mjs``, which a ~0.5 KB loader (:func:`write_book_bundle`) fetches
  only on a page that has a chart: Jupyter Book 1 puts every ``_static/**/*.js`` on every
  page, and the ~900 KB bundle is named ``.mjs`` to stay out of that. Each chart's HTML is
  a few kilobytes.

Why not Altair's ``html`` renderer with its ``inline`` template: it pastes the ~900 KB bundle
into every chart at the page's top level, where the bundle's top-level declarations collide
with the page's own scripts (Chromium: ``Identifier '_' has already been declared``, then
``vegaEmbed is not defined``) and the chart stays empty. :func:`javascript_bundle` therefore
wraps the bundle in its own function scope; it publishes only ``window.kdlibVega`` and then
fires the ``kdlib-vega-ready`` event, which a chart whose script ran first waits for.

In JupyterLab (4.6) the book's ``_static`` bundle is not there, and JupyterLab prefers a
chart's ``text/html`` (rank 50) to its own Vega extension (rank 57, Vega-Lite 5 only). So
:func:`enable` in a kernel that a Jupyter server started for a notebook (it sets
``JPY_SESSION_NAME``; papermill does not) also displays the bundle, once per kernel, as
an output of its own: JupyterLab runs the scripts of a notebook's outputs while they are
trusted (outputs made in the session, and a notebook it saved), and every chart then draws
from that copy, the same Vega-Lite 6 as in the book. Outputs that JupyterLab does not trust
(a notebook executed elsewhere, before "Trust Notebook") run no script: the chart's
container then says so instead of staying blank.

:func:`save_chart` writes the print copies of a figure: an SVG and a standalone offline HTML
page (there the bundle is inlined, which is fine in a page of its own).

Nothing runs at import time; ``vl_convert`` is imported when a bundle or an SVG is made.
"""

from __future__ import annotations

import html
import json
import os
import uuid
from pathlib import Path
from typing import Any

import altair as alt

#: File name of the shared bundle beside saved charts (``results/``).
BUNDLE_NAME = "kdlib-vega.js"
#: The book's copy (``_static/``), not a ``.js``: Jupyter Book would load it on every page.
BOOK_BUNDLE_NAME = "kdlib-vega.mjs"
#: The loader Jupyter Book does put on every page: it fetches the bundle where a chart is.
LOADER_NAME = "kdlib-vega-loader.js"
#: The global the bundle defines: ``{vegaEmbed, vega, vegaLite}``.
GLOBAL = "kdlibVega"
#: The event the bundle fires on ``window`` once ``window.kdlibVega`` exists.
READY_EVENT = "kdlib-vega-ready"
#: Name under which :func:`enable` registers the renderer with Altair.
RENDERER = "kdlib"
#: CSS class of every chart container (the browser test looks for it).
CHART_CLASS = "kdlib-chart"

# vega-embed's action menu: keep the image exports, drop the links that open other sites.
_EMBED_OPTIONS: dict[str, Any] = {
    "renderer": "svg",
    "actions": {"export": True, "source": False, "compiled": False, "editor": False},
}

_SNIPPET = (
    f"window.{GLOBAL} = {{vegaEmbed: vegaEmbed, vega: vega, vegaLite: vegaLite}};\n"
    f"window.dispatchEvent(new Event({json.dumps(READY_EVENT)}));\n"
)


def vegalite_version() -> str:
    """The Vega-Lite version Altair writes specs for, as ``major.minor`` (e.g. ``6.4``)."""
    return ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])


def mime_type() -> str:
    """The Vega-Lite mime type of the bundle: the one JupyterLab 4's Vega extension draws.

    Not Altair 6's own ``application/vnd.vegalite.v6.json``: a dict under a mime type not
    ending in ``+json`` fails nbformat's schema, so papermill refuses to write the executed
    notebook (measured). JupyterLab's extension draws Vega-Lite 5; the specs Altair 6 writes
    for the notebooks' simple charts draw with it.
    """
    return "application/vnd.vegalite.v5+json"


def javascript_bundle() -> str:
    """Vega, Vega-Lite and vega-embed in one script that declares nothing at the top level.

    The script defines ``window.kdlibVega`` and then fires ``kdlib-vega-ready`` on ``window``.
    """
    import vl_convert

    body = vl_convert.javascript_bundle(_SNIPPET, vl_version=vegalite_version())
    versions = (f"vega {vl_convert.get_vega_version()}, vega-lite {vegalite_version()}, "
                f"vega-embed {vl_convert.get_vega_embed_version()}")
    return (f"/* kdlib: {versions}; bundled by vl-convert, wrapped in a function scope "
            f"so that its declarations cannot collide with the page's. */\n"
            f"(function () {{\n{body}\n}})();\n")


def _write_if_changed(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")
    return path


def write_bundle(static_dir: Path, name: str = BUNDLE_NAME) -> Path:
    """Write the shared bundle to ``static_dir/<name>`` (unchanged files are kept)."""
    return _write_if_changed(Path(static_dir) / name, javascript_bundle())


def loader_script() -> str:
    """The script on every book page: on a page with a chart, it adds the bundle's ``<script>``
    (a script added before the page's ``load`` event delays that event, so a chart that
    waits for the bundle never reports it missing while it is still coming)."""
    return f"""/* kdlib: loads _static/{BOOK_BUNDLE_NAME} (Vega, ~900 KB) only on pages that show a chart. */
(function () {{
  function load() {{
    if (window.{GLOBAL} || !document.querySelector(".{CHART_CLASS}")) return;
    var root = document.documentElement.dataset.content_root;
    if (root === undefined) root = (window.DOCUMENTATION_OPTIONS || {{}}).URL_ROOT || "";
    var script = document.createElement("script");
    script.src = root + "_static/{BOOK_BUNDLE_NAME}";
    document.head.appendChild(script);
  }}
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", load);
  else load();
}})();
"""


def write_book_bundle(static_dir: Path) -> tuple[Path, Path]:
    """The book's bundle and its loader in ``static_dir`` (``_static/``). A bundle that an
    earlier version placed there as ``.js`` (loaded on every page) is removed."""
    static_dir = Path(static_dir)
    (static_dir / BUNDLE_NAME).unlink(missing_ok=True)  # gitignored, made by kdlib
    return (write_bundle(static_dir, BOOK_BUNDLE_NAME),
            _write_if_changed(static_dir / LOADER_NAME, loader_script()))


def _script_json(value: Any) -> str:
    """JSON that is safe inside a ``<script>`` element (no ``</script>``, no ``<!--``)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def chart_html(spec: dict, embed_options: dict | None = None, div_id: str | None = None) -> str:
    """The ``text/html`` of one chart: a container and a script drawing into it.

    The script uses ``window.kdlibVega`` if the bundle already ran, and otherwise waits for
    ``kdlib-vega-ready``. If the page finished loading without the bundle (HTML viewed
    outside the book), it says so in the container and on the console.
    """
    div_id = div_id or f"kdlib-chart-{uuid.uuid4().hex}"
    options = {**_EMBED_OPTIONS, **(embed_options or {})}
    title = spec.get("title")
    label = title.get("text") if isinstance(title, dict) else title
    missing = (f"This chart is drawn by _static/{BOOK_BUNDLE_NAME}, which this page did not load; "
               f"see the figure's SVG instead.")
    # Shown only where the script below does not run (an untrusted notebook in JupyterLab).
    untrusted = ("This interactive chart is drawn by a script that JupyterLab runs only in a trusted "
                 "notebook: run the notebook, or trust it (command palette: Trust Notebook) and run "
                 "the cell that calls kdlib.publish.render.enable().")
    # A live notebook page (already loaded) whose kernel has not displayed the bundle yet.
    waiting = "Waiting for the chart library: run kdlib.publish.render.enable() in this kernel."
    return f"""<div id="{div_id}" class="{CHART_CLASS}" role="img" aria-label="{html.escape(str(label or 'chart'))}"><em>{html.escape(untrusted)}</em></div>
<script type="text/javascript">
(function () {{
  var el = document.getElementById({json.dumps(div_id)});
  var spec = {_script_json(spec)};
  var options = {_script_json(options)};
  el.textContent = "";
  function draw() {{
    el.textContent = "";
    window.{GLOBAL}.vegaEmbed(el, spec, options).catch(function (error) {{
      el.textContent = "The chart could not be drawn: " + error;
      console.error("kdlib chart " + el.id + ":", error);
    }});
  }}
  if (window.{GLOBAL}) {{ draw(); return; }}
  window.addEventListener({json.dumps(READY_EVENT)}, draw, {{once: true}});
  if (document.readyState === "complete") {{ el.textContent = {json.dumps(waiting)}; return; }}
  window.addEventListener("load", function () {{
    if (window.{GLOBAL}) return;
    el.textContent = {json.dumps(missing)};
    console.error("kdlib chart " + el.id + ": " + {json.dumps(missing)});
  }});
}})();
</script>"""


def renderer(spec: dict, **metadata: Any) -> tuple[dict, dict]:
    """The Altair renderer :func:`enable` registers: Vega-Lite mime type + offline HTML."""
    embed_options = metadata.pop("embed_options", None)
    bundle = {
        mime_type(): spec,
        "text/html": chart_html(spec, embed_options),
        "text/plain": f"<Vega-Lite {vegalite_version()} chart>",
    }
    return bundle, {}


#: Whether this kernel has displayed the bundle already (see :func:`enable`).
_bundle_displayed = False


def live_frontend() -> bool:
    """True in a kernel that a Jupyter server started for a notebook (JupyterLab, Notebook 7).

    jupyter_server gives such kernels ``JPY_SESSION_NAME`` (the notebook's path);
    papermill and nbclient start theirs without it.
    """
    return bool(os.environ.get("JPY_SESSION_NAME"))


def bundle_html() -> str:
    """The bundle as one ``<script>`` element, for a page that has no ``_static`` copy of it."""
    script = javascript_bundle().replace("</script", "<\\/script")  # none today; keep it that way
    return f'<script type="text/javascript">\n{script}</script>'


def display_bundle() -> None:
    """Display the bundle as an output of its own: charts in this page draw from it."""
    from IPython.display import display

    display({"text/html": bundle_html(),
             "text/plain": f"<kdlib: Vega-Lite {vegalite_version()} for the charts of this notebook>"},
            raw=True)


def enable(bundle: bool | None = None) -> None:
    """Register the offline renderer with Altair and make it the active one.

    ``bundle``: display the Vega bundle (~900 KB) in this cell's output, once per kernel.
    By default only in a live notebook frontend (:func:`live_frontend`), where no other copy
    is loaded; never under papermill, whose notebooks the book shows with its own copy.
    """
    global _bundle_displayed
    alt.renderers.register(RENDERER, renderer)
    alt.renderers.enable(RENDERER)
    if (live_frontend() if bundle is None else bundle) and not _bundle_displayed:
        display_bundle()
        _bundle_displayed = True


def _spec(chart: alt.TopLevelMixin | dict) -> dict:
    return chart if isinstance(chart, dict) else chart.to_dict()


def save_svg(chart: alt.TopLevelMixin | dict, path: Path) -> Path:
    """Write the chart as an SVG image (for print) to ``path``; loads nothing from the network."""
    import vl_convert

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    svg = vl_convert.vegalite_to_svg(_spec(chart), vl_version=vegalite_version(), allowed_base_urls=[])
    path.write_text(svg, encoding="utf-8")
    return path


def save_chart(chart: alt.TopLevelMixin | dict, stem: Path, bundle: Path | None = None) -> tuple[Path, Path]:
    """Write ``<stem>.svg`` (for print) and ``<stem>.html`` (offline). Returns the two paths.

    With ``bundle`` (a file written by :func:`write_bundle`) the page loads that one
    shared copy by its relative path, so many saved charts do not each carry ~900 KB;
    without it the page inlines the bundle and stands entirely alone.
    """
    import os

    import vl_convert

    stem = Path(stem)
    svg_path = save_svg(chart, stem.with_name(stem.name + ".svg"))
    html_path = stem.with_name(stem.name + ".html")
    spec = _spec(chart)
    if bundle is None:
        page = vl_convert.vegalite_to_html(spec, vl_version=vegalite_version(), bundle=True)
    else:
        source = os.path.relpath(bundle, html_path.parent)
        page = (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(stem.name)}</title>\n'
                '<link rel="icon" href="data:,">\n'
                f'<script src="{html.escape(source)}"></script></head>\n<body>\n{chart_html(spec)}\n</body></html>\n')
    html_path.write_text(page, encoding="utf-8")
    return svg_path, html_path
