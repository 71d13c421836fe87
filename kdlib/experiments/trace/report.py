"""Everything the trace notebook shows, computed from ``results/trace/<run_id>/``.

``trace_report(run_id)`` parses each finished system's log (and the original's reference
CSVs, ``Kn/K8s`` and ``Dirigent``, when the run names them), computes the per-function
numbers, draws Figures 12 and 13, and saves each chart as SVG and HTML beside the results.
``report.glue_run()`` glues its outputs under the keys the book pastes (:data:`GLUE_KEYS`,
the one list of them). Long because it holds everything the trace notebook and the book show
(tables, findings, verdicts, the glue) in one module; a split would gain nothing in reading.
"""

from __future__ import annotations

import html

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd

import numpy as np

from ... import machine, store
from ...publish import render
from .. import verdict
from ..microbench.report import provenance_table
from . import analysis, plots, reference
from .params import AS_SHIPPED, KD_REASON_START, REFERENCE_DATA, SYSTEMS
from .files import load_run, log_path, read_system, run_dir

#: The myst-nb glue keys the book pastes from the trace notebook (:meth:`TraceReport.glue_run` glues them).
GLUE_KEYS = ("fig12", "fig13", "trace_summary", "trace_replay", "trace_findings", "trace_not_measured",
             "trace_provenance", "trace_run_id", "fig12_verdict", "fig13_verdict", "trace_verdicts",
             "analysis_code")
CHART_KEYS = ("fig12", "fig13")
#: Glued too: the two Dr/K8s+ configurations side by side (not required: a notebook executed before both
#: were systems of every trace run lacks it, and its page says so).
KPA_COMPARISON_KEY = "trace_kpa_comparison"


@dataclass
class TraceReport:
    run_id: str
    run: dict[str, Any]
    metas: dict[str, dict]
    summary: pd.DataFrame
    curves: pd.DataFrame
    replay: pd.DataFrame
    not_measured: pd.DataFrame
    provenance: pd.DataFrame
    kpa_comparison: pd.DataFrame = field(default_factory=pd.DataFrame)
    charts: dict[str, alt.TopLevelMixin] = field(default_factory=dict)
    saved: list[Path] = field(default_factory=list)

    @property
    def clock_kept_up(self) -> bool:
        return all(m.get("clock_kept_up", True) for m in self.metas.values())

    def findings(self) -> str:
        """One sentence per system with data, from this run's numbers (the book pastes it)."""
        sentences = []
        for row in self.summary.itertuples():
            if str(row.source).startswith("damaged"):
                sentences.append(f"{row.system}: {row.source}; no number of it is shown.")
                continue
            text = (f"{row.system} ({row.source}): median per-function slowdown {row.slowdown_p50}, "
                    f"p99 {row.slowdown_p99}; median per-function scheduling latency {row.latency_p50_ms} ms, "
                    f"p99 {row.latency_p99_ms} ms; {row.failed} of {row.invocations} invocations after the "
                    f"warm-up failed ({row.failed_pct} %).")
            meta = self.metas.get(row.system)
            if meta:
                late = meta["lateness"]
                kept = "kept up with" if meta["clock_kept_up"] else "did NOT keep up with"
                text += (f" The replay {kept} the schedule (lateness p50 {late['p50_ms']} ms, p99 "
                         f"{late['p99_ms']} ms); the autoscaler wrote {meta['scale_writes']} scale updates "
                         f"({meta['scale_writes_per_s']}/s).")
                if meta.get("time_scale", 1) != 1:
                    text += (f" Replayed at time_scale {meta['time_scale']} (the trace {meta['time_scale']}× faster "
                             "than the original; the cluster's latencies did not shrink with it): not a measurement "
                             "of the paper's setting.")
                if machine.is_busy(meta):
                    before = meta["machine"]["before"]
                    text += (f" Measured on a BUSY machine: after waiting {before['waited_s']} s the CPUs were "
                             f"still {before['cpu_busy_pct']} % busy (load {before['load_1m']}), so its numbers "
                             "include other work's.")
            sentences.append(text)
        comparison = kpa_sentence(self.kpa_comparison)
        if comparison:
            sentences.append(comparison)
        return " ".join(sentences) or "No system of this run has data."

    def verdict(self, figure: int) -> verdict.Verdict:
        return figure_verdict(self, figure)

    def verdicts(self) -> pd.DataFrame:
        return pd.DataFrame([self.verdict(f).row() for f in (12, 13)], columns=["figure", "verdict", "because"])

    def glue_run(self) -> None:
        """Glue every output the book pastes (:data:`GLUE_KEYS`), displaying none."""
        from IPython.display import HTML
        from myst_nb import glue

        from ... import provenance as code_provenance

        glue("trace_run_id", self.run_id, display=False)
        glue("trace_not_measured", styled(self.not_measured), display=False)
        glue("trace_provenance", styled(self.provenance), display=False)
        glue("trace_replay", styled(self.replay), display=False)
        for figure in (12, 13):  # the verdict at the top of each figure's page
            glue(f"fig{figure}_verdict", HTML(self.verdict(figure).html()), display=False)
        glue("trace_verdicts", styled(self.verdicts()), display=False)
        # The book refuses this notebook once the code that made these outputs has changed.
        glue("analysis_code", code_provenance.analysis_digest(), display=False)
        # A paragraph, not pasted text (myst-nb sets pasted text in bold)
        glue("trace_findings", HTML(f'<p class="kdlib-findings">{html.escape(self.findings())}</p>'), display=False)
        for key in CHART_KEYS:
            glue(key, self.charts[key], display=False)
        glue("trace_summary", styled(self.summary), display=False)
        glue(KPA_COMPARISON_KEY, styled(self.kpa_comparison) if not self.kpa_comparison.empty else
             "This run does not have both Dr/K8s+ configurations, so there is no side-by-side comparison.",
             display=False)


#: What each figure's claim is tested on: the per-function median of this summary column
#: (vanilla ÷ Kubedirect; above 1: Kubedirect is better).
VERDICT_METRIC = {12: ("latency_p50_ms", "median per-function scheduling latency"),
                  13: ("slowdown_p50", "median per-function slowdown")}


def figure_verdict(report: TraceReport, figure: int) -> verdict.Verdict:
    """The figure's verdict from the run: each Kubedirect system against each vanilla system of the
    figure that has data (new systems of a figure are picked up from :data:`SYSTEMS`)."""
    systems = analysis.figure_systems(figure)
    data = report.summary.dropna(subset=["invocations"]).set_index("system")  # a damaged system has no numbers
    present = [s for s in systems if s in data.index]
    trace = report.run.get("trace") or {}
    measured = "; ".join(f"{s}: {int(data.loc[s, 'invocations']):,} invocations after the warm-up "
                         f"({data.loc[s, 'source']})" for s in present) or "nothing"
    measured += (f", from {trace.get('functions')} functions over {trace.get('minutes')} min of the trace"
                 if present else "")
    missing = [s for s in systems if s not in present]
    if missing:
        measured += f"; not measured: {', '.join(missing)}"
    column, label = VERDICT_METRIC[figure]
    ratios = []
    for kd in (s for s in present if SYSTEMS[s].kd):
        for vanilla in (s for s in present if SYSTEMS[s].kd is False):
            if data.loc[kd, column] > 0:
                ratios.append((f"{label}, {vanilla} \u00f7 {kd}", float(data.loc[vanilla, column] / data.loc[kd, column])))
    return verdict.from_ratios(figure, measured + ".", ratios, _why_untested(report, figure))


def _why_untested(report: TraceReport, figure: int) -> str:
    reasons = report.not_measured.set_index("system")["reason"].to_dict()
    with_data = set(report.summary.dropna(subset=["invocations"])["system"])
    missing = [s for s in analysis.figure_systems(figure) if SYSTEMS[s].kd is not None and s not in with_data]
    kd_missing = [s for s in missing if SYSTEMS[s].kd]
    parts = []
    knative = [s for s in missing if not SYSTEMS[s].local]  # plan() never runs them, on any backend
    if knative:
        parts.append(f"kdlib has no Knative path yet, on any backend, so {' and '.join(knative)} did not run")
    if any(str(reasons.get(s, "")).startswith(KD_REASON_START) for s in kd_missing):
        parts.append("Kubedirect's binaries were not available to this run")
    other = [f"{s}: {reasons[s]}" for s in missing if s in reasons and s not in knative
             and not str(reasons[s]).startswith(KD_REASON_START)]
    parts += other
    if not parts:
        parts.append("the run has no Kubedirect system and vanilla system of this figure measured together")
    return "; and ".join(parts)


def styled(frame: pd.DataFrame) -> Any:
    """A table as the book shows it: no index, numbers rounded (two decimals), thousands separated."""
    return frame.style.hide(axis="index").format(precision=2, thousands=",")


#: The two configurations of Dr/K8s+ compared (the paper's first), and Kubedirect's for the gap.
KPA_PAIR = (AS_SHIPPED, "Dr/K8s+")
KPA_STATISTICS = (("median", 50), ("p90", 90))


def kpa_comparison(per_system: dict[str, dict]) -> pd.DataFrame:
    """Dr/K8s+ under the original's as-shipped autoscaler configuration beside the same
    configuration as Dr/Kd+: the median and p90 over functions of the mean slowdown and
    latency, their ratio, and (with Dr/Kd+ measured) each one's gap to Dr/Kd+ — the paper's
    gap and the gap with the configurations made equal. Empty unless both configurations have data."""
    if not all(s in per_system for s in KPA_PAIR):
        return pd.DataFrame()
    shipped, same = KPA_PAIR
    kd = per_system.get("Dr/Kd+")
    rows = []
    for metric, label in (("slowdown", "per-function slowdown"), ("latency_ms", "per-function latency (ms)")):
        for name, q in KPA_STATISTICS:
            value = {s: float(np.percentile(per_system[s][metric], q)) if len(per_system[s][metric]) else np.nan
                     for s in KPA_PAIR}
            row = {"metric": label, "statistic": name, shipped: round(value[shipped], 2),
                   same: round(value[same], 2), "as shipped ÷ same": _ratio(value[shipped], value[same])}
            if kd is not None and len(kd[metric]):
                kd_value = float(np.percentile(kd[metric], q))
                row.update({"Dr/Kd+": round(kd_value, 2),
                            "paper's gap (as shipped ÷ Kd+)": _ratio(value[shipped], kd_value),
                            "same-config gap (Dr/K8s+ ÷ Kd+)": _ratio(value[same], kd_value)})
            rows.append(row)
    return pd.DataFrame(rows)


def _ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b and b == b and a == a else np.nan


def kpa_sentence(table: pd.DataFrame) -> str:
    """The comparison in words (empty when the run lacks one of the two configurations)."""
    if table.empty:
        return ""
    shipped, same = KPA_PAIR
    parts = []
    for values in table.to_dict("records"):
        parts.append(f"{values['statistic']} {values['metric']} {values[shipped]} as shipped vs {values[same]} "
                     f"with the same target ({values['as shipped ÷ same']}×)")
    text = (f"The two autoscaler configurations: the paper's Figure 13 k8s+ curve corresponds to "
            f"{shipped}: the original ran its k8s+ with the Knative configuration (no target set, so 100; scale "
            f"from zero only on the next tick) and its kd+ with the Dirigent one (target 1, at once). "
            f"{same} gives vanilla Kubernetes the same configuration as Dr/Kd+. Measured here: "
            + "; ".join(parts) + ".")
    if "Dr/Kd+" in table.columns:
        slow = table[(table["metric"] == "per-function slowdown") & (table["statistic"] == "median")].iloc[0]
        paper, equal = slow["paper's gap (as shipped ÷ Kd+)"], slow["same-config gap (Dr/K8s+ ÷ Kd+)"]
        text += (f" Against Dr/Kd+, the median slowdown gap is {paper}× as the paper configured it and {equal}× "
                 "with the configurations made equal.")
    return text


def _replay_table(metas: dict[str, dict]) -> pd.DataFrame:
    rows = []
    for system, m in metas.items():
        before = (m.get("machine") or {}).get("before") or {}
        during = (m.get("machine") or {}).get("during") or {}
        rows.append({"system": system, "invocations": m["invocations"], "success": m["success"],
                     "failed": m["failed"], "lateness_p50_ms": m["lateness"]["p50_ms"],
                     "lateness_p99_ms": m["lateness"]["p99_ms"], "lateness_max_ms": m["lateness"]["max_ms"],
                     "clock_kept_up": m["clock_kept_up"], "scale_writes": m["scale_writes"],
                     "scale_writes_per_s": m["scale_writes_per_s"], "peak_ready_pods": m["peak_ready_pods"],
                     "replay_cpu_percent": m["replay_cpu_percent"],
                     "target_concurrency": m["kpa"]["target_concurrency"],
                     "scale_from_zero_at_once": m["kpa"].get("scale_from_zero_at_once"),
                     "dispatch_timeout_s": m["dispatch_timeout_s"], "time_scale": m.get("time_scale", 1),
                     "machine": _machine_cell(m), "cpu_idle_before_pct": before.get("cpu_idle_pct", np.nan),
                     "load_before": before.get("load_1m", np.nan),
                     "cpu_busy_during_pct": during.get("cpu_busy_pct_mean", np.nan),
                     "load_during": _range(during.get("load_1m_min"), during.get("load_1m_max"))})
    return pd.DataFrame(rows)


def _machine_cell(meta: dict) -> str:
    if "machine" not in meta:
        return "not recorded (run predates the quiet guard)"
    return "BUSY (no quiet machine within the bound)" if machine.is_busy(meta) else "quiet"


def _range(low: float | None, high: float | None) -> str:
    return "" if low is None or high is None else f"{low}–{high}"


#: How a reference system is labelled (the summary's source, the figure's subtitle).
REFERENCE_LABELS = {"Kn/K8s": "the original artifact's result, measured on the paper's cluster",
                    "Dirigent": "reference data"}


def trace_report(run_id: str, root: Path | None = None, save: bool = True,
                 knative_timeout_ms: float | None = analysis.KN_KD_TIMEOUT_MS) -> TraceReport:
    """Load, analyse and chart trace run ``run_id``.

    ``knative_timeout_ms`` is the original's filter for ``Kn/Kd`` only (8000, as the
    original: a delay above 8 s counts as a timeout and is dropped); None keeps them.
    """
    run = load_run(run_id, root)
    params = run["parameters"]
    warmup = params["warmup_minutes"]
    directory = run_dir(run_id, root)
    per_system, sources, metas, references = {}, {}, {}, {}
    damaged: dict[str, str] = {}
    for system in params["systems"]:
        path = log_path(directory, system)
        if path.is_file():
            try:  # the integrity model: a damaged log is a row that says why, never a number
                frame, meta = read_system(directory, system)
            except store.DamagedFile as error:
                damaged[system] = f"damaged: {str(error).split(': ', 1)[-1]}"
                continue
            metas[system] = meta
            timeout = knative_timeout_ms if system == "Kn/Kd" else None
            per_system[system] = analysis.per_function(frame, warmup, timeout)
            sources[system] = f"measured here (run {run_id})"
        elif params.get(REFERENCE_DATA.get(system, "")):
            csv = Path(params[REFERENCE_DATA[system]])
            below = reference.DIRIGENT_LATENCY_BELOW_MS if system == "Dirigent" else None
            per_system[system] = reference.per_function(reference.read(csv), warmup, below)
            sources[system] = references[system] = f"{REFERENCE_LABELS[system]} ({csv.name}), not measured here"
    not_measured = {**run["not_measured"], **{s: f"failed: {e}" for s, e in run["failed"].items()}, **damaged}
    nm = pd.DataFrame([{"system": s, "figure": SYSTEMS[s].figure, "reason": r} for s, r in not_measured.items()],
                      columns=["system", "figure", "reason"])
    points = analysis.curves(per_system)
    summary = analysis.summary(per_system, sources)
    if damaged:
        rows = pd.DataFrame([{"system": s, "source": why} for s, why in damaged.items()],
                            columns=analysis.SUMMARY_COLUMNS)
        summary = rows if summary.empty else pd.concat([summary, rows], ignore_index=True)
    report = TraceReport(run_id, run, metas, summary, points, _replay_table(metas), nm,
                         pd.concat([_measured_at(metas), provenance_table({**run, "clusters": {}, "parameters": params})],
                                   ignore_index=True), kpa_comparison(per_system))
    if save:
        bundle = render.write_bundle(store.root(root))
    for figure in (12, 13):
        source = _source(report, figure)
        chart = plots.cdf_chart(points, figure, analysis.figure_systems(figure), not_measured, source, references)
        report.charts[f"fig{figure}"] = chart
        if save:
            report.saved.extend(render.save_chart(chart, directory / f"fig{figure}", bundle))
    return report


def _measured_at(metas: dict[str, dict]) -> pd.DataFrame:
    """Per measured system, the code revision and versions its replay recorded (the run record's
    ``code.git_revision`` below is whichever attempt wrote the record last, a resume included)."""
    rows = []
    for system, meta in metas.items():
        recorded = meta.get("provenance") or {}
        rows.append((f"{system}: measured at code revision", str(recorded.get("git_revision", "not recorded"))
                     + (" (uncommitted changes)" if recorded.get("git_dirty") else "")))
        rows.append((f"{system}: versions", ", ".join(f"{k}: {v}" for k, v in (meta.get("versions") or {}).items())
                     or "not recorded"))
        rows.append((f"{system}: replayed", f"{meta.get('start_time')} to {meta.get('end_time')}"))
    return pd.DataFrame(rows, columns=["key", "value"])


def _source(report: TraceReport, figure: int) -> list[str]:
    """The chart's subtitle: what ran and with which versions and code, as each system's run
    recorded it; for a figure with nothing measured, only that (nothing suggests a run)."""
    measured = [s for s in analysis.figure_systems(figure) if s in report.metas]
    trace, params = report.run.get("trace") or {}, report.run["parameters"]
    if not measured:
        shown = [s for s in analysis.figure_systems(figure) if s in set(report.summary["system"])]
        return [f"nothing of Figure {figure} was measured in run {report.run_id}"
                + (f" ({', '.join(shown)}: reference data)" if shown else "")
                + (": kdlib has no Knative path yet" if all(not SYSTEMS[s].local for s in analysis.figure_systems(figure)
                                                              if SYSTEMS[s].kd is not None) else "")]
    lines = [f"run {report.run_id}: {trace.get('functions')} functions, {trace.get('minutes')} min of azure_500, "
             f"first {params['warmup_minutes']} min dropped",
             f"{params.get('backend', 'local')} cluster, {params.get('nodes')} kwok nodes, simulated sandbox"]
    for system in measured:
        meta = report.metas[system]
        recorded = meta.get("provenance") or {}
        revision = str(recorded.get("git_revision", "not recorded"))[:7] + (
            " (uncommitted changes)" if recorded.get("git_dirty") else "")
        lines.append(f"{system}: {(meta.get('versions') or {}).get('kube-apiserver', 'version not recorded')}, "
                     f"code {revision}")
    return lines
