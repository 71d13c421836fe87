"""Altair CDFs for Figures 12 and 13: per-function mean slowdown and scheduling latency.

Log x axes as in the paper (slowdown 1…10⁴, latency 1 ms…10⁶ ms). A system of the
figure without data is named in the subtitle as "not measured", never drawn as a curve.
A system drawn from reference data (the original's CSVs) is dashed and its subtitle line
says where it was measured.
"""

from __future__ import annotations

import math
from typing import Sequence

import altair as alt
import pandas as pd

SYSTEM_COLORS = {"Kn/K8s": "#31a354", "Kn/Kd": "#3182bd", "Dirigent": "#fd8d3c", "Dr/K8s+": "#31a354",
                 "Dr/K8s+ (as shipped)": "#756bb1", "Dr/Kd+": "#3182bd"}
AXES = {"slowdown": ("mean per-function slowdown", [1, 1e4]),
        "latency_ms": ("mean per-function scheduling latency (ms)", [1, 1e6])}
MEASURED, REFERENCE = "measured here", "reference data, not measured here"


def cdf_chart(points: pd.DataFrame, figure: int, systems: Sequence[str], not_measured: dict[str, str],
              source: Sequence[str], references: dict[str, str] | None = None) -> alt.HConcatChart:
    """Two CDF panels (slowdown, latency) with one line per system that has data.

    ``references``: system → where its reference data come from, for systems not measured here.
    """
    references = references or {}
    present = [s for s in systems if s in set(points["system"])]
    # Legends under the panels: at their right they would widen the chart past the text column
    # and the page would clip the names ("Dr/K8s+" and "Dr/K8s+ (as shipped)" must both show).
    legend = {"orient": "bottom", "direction": "vertical", "labelLimit": 0}
    color = alt.Color("system:N", title="system", sort=list(systems), legend=alt.Legend(**legend),
                      scale=alt.Scale(domain=list(systems), range=[SYSTEM_COLORS[s] for s in systems]))
    panels = []
    for metric, (title, domain) in AXES.items():
        data = points[(points["metric"] == metric) & points["system"].isin(present)]
        data = data.assign(x=data["x"].clip(lower=domain[0], upper=domain[1]),
                           data=data["system"].map(lambda s: REFERENCE if s in references else MEASURED))
        panel = alt.Chart(data).mark_line(interpolate="step-after").encode(
            x=alt.X("x:Q", title=title, scale=alt.Scale(type="log", domain=domain, clamp=True)),
            y=alt.Y("p:Q", title="CDF over functions", scale=alt.Scale(domain=[0, 1])),
            color=color,
            strokeDash=alt.StrokeDash("data:N", title="data", legend=alt.Legend(**legend), scale=alt.Scale(
                domain=[MEASURED, REFERENCE], range=[[1, 0], [6, 3]])),
            tooltip=["system", "data", alt.Tooltip("x:Q", format=".3~g"), alt.Tooltip("p:Q", format=".2f")],
        )
        if data.empty:  # say so in the panel, never draw an empty plot that looks like a result
            note = pd.DataFrame({"x": [10 ** (sum(map(math.log10, domain)) / 2)], "p": [0.5],
                                 "text": ["not measured here (see the subtitle)"]})
            panel = alt.layer(panel, alt.Chart(note).mark_text(color="#777").encode(x="x:Q", y="p:Q", text="text:N"))
        panels.append(panel.properties(width=260, height=200))  # two panels fit the book's text column
    shown = [f"{s} (dashed): {references[s]}" for s in systems if s in present and s in references]
    # The reasons are long: the page lists them under the chart, which stays as wide as its panels.
    unmeasured = [s for s in systems if s not in present and s in not_measured]
    missing = [f"not measured: {', '.join(unmeasured)} (the reasons are listed with the chart)"] if unmeasured else []
    missing += [f"{s}: no data" for s in systems if s not in present and s not in not_measured]
    title = alt.TitleParams(f"Figure {figure}: per-function slowdown and scheduling latency",
                            subtitle=[*source, *shown, *missing])
    return alt.hconcat(*panels).properties(title=title)
