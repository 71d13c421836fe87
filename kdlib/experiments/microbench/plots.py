"""Altair charts equivalent to Figures 9, 10 and 11, from the analysis tables.

Every chart's title says what it shows and where the numbers come from; a
(baseline, scale) cell without a measurement is drawn as the words "not measured",
never as a zero bar.
"""

from __future__ import annotations

from typing import Sequence

import altair as alt
import pandas as pd

from ...baselines import display
from .analysis import STAGE_LABELS, STAGE_ORDER
from .spec import BENCHES

BASELINE_COLORS = {"k8s": "#9ecae1", "k8s+": "#3182bd", "k8s+u": "#31a354", "kd": "#fdae6b", "kd+": "#e6550d"}


def _color(baselines: Sequence[str]) -> alt.Color:
    """Colours by system key; the legend names each system as pages do (``display``)."""
    names = [display(b) for b in baselines]
    return alt.Color("baseline:N", title="system", sort=names,
                     scale=alt.Scale(domain=names, range=[BASELINE_COLORS[b] for b in baselines]))


def _named(data: pd.DataFrame) -> pd.DataFrame:
    """``data`` with each system under the name pages give it (k8s+u: "k8s+ (unthrottled)")."""
    return data.assign(baseline=data["baseline"].map(display))


def e2e_chart(summary: pd.DataFrame, bench: str, baselines: Sequence[str], scales: Sequence[int],
              source: Sequence[str]) -> alt.LayerChart:
    """p90 time to Ready per baseline and scale, with the range over repeats."""
    data = summary[summary["bench"] == bench].copy()
    cells = pd.DataFrame([(b, s) for b in baselines for s in scales], columns=["baseline", "scale"])
    data = _named(cells.merge(data, on=["baseline", "scale"], how="left"))
    data["label"] = data["p90_s"].map(lambda v: "not measured" if pd.isna(v) else f"{v:.2f}")
    x = alt.X("scale:O", title=BENCHES[bench].swept, sort=list(scales))
    offset = alt.XOffset("baseline:N", sort=[display(b) for b in baselines])
    base = alt.Chart(data).encode(x=x, xOffset=offset)
    bars = base.transform_filter("isValid(datum.p90_s)").mark_bar().encode(
        y=alt.Y("p90_s:Q", title="time until the p90 pod is Ready (s)"),
        color=_color(baselines),
        tooltip=["baseline", "scale", alt.Tooltip("p90_s:Q", format=".3f"), alt.Tooltip("min_s:Q", format=".3f"),
                 alt.Tooltip("max_s:Q", format=".3f"), "repeats:Q"])
    ranges = base.transform_filter("isValid(datum.p90_s) && datum.repeats > 1").mark_rule().encode(
        y="min_s:Q", y2="max_s:Q")
    missing = base.transform_filter("!isValid(datum.p90_s)").mark_text(angle=270, align="left", dy=0).encode(
        y=alt.datum(0), text="label:N", color=alt.value("#777"))
    title = alt.TitleParams(f"Figure {BENCHES[bench].figure} ({bench}): p90 time to Ready", subtitle=list(source))
    return alt.layer(bars, ranges, missing).properties(title=title, width=360, height=240)


def stage_chart(stages: pd.DataFrame, bench: str, baselines: Sequence[str], source: Sequence[str]) -> alt.FacetChart:
    """When the p90 object reached each stage, per baseline, one panel per scale."""
    present = [b for b in baselines if b in set(stages[stages["bench"] == bench]["baseline"])]
    data = _named(stages[stages["bench"] == bench])
    data["stage_label"] = data["stage"].astype(str).map(STAGE_LABELS)
    order = [STAGE_LABELS[s] for s in STAGE_ORDER]
    chart = alt.Chart(data).mark_line(point=True).encode(
        x=alt.X("p90_s:Q", title="when the p90 object reached the stage: s since the scale call (symlog)",
                scale=alt.Scale(type="symlog", constant=0.05)),
        y=alt.Y("stage_label:N", sort=order, title=None),
        color=_color(present or list(baselines)),
        order=alt.Order("stage_index:Q"),
        tooltip=["baseline", "scale", "stage_label", alt.Tooltip("p90_s:Q", format=".3f")],
    ).transform_calculate(stage_index=f"indexof({order!r}, datum.stage_label)").properties(width=360, height=140)
    title = alt.TitleParams(f"Figure {BENCHES[bench].figure} ({bench}): when each stage was reached "
                            "(a stage's cost is the gap to the line above)", subtitle=list(source))
    return chart.facet(row=alt.Row("scale:O", title=BENCHES[bench].swept)).properties(title=title)
