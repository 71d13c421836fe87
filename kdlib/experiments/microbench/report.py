"""Everything the microbenchmark notebook shows, computed from the results store.

``microbench(run_id)`` loads a suite's runs and timelines, summarises them, draws the
charts of Figures 9–11 and saves each as SVG and HTML next to the results.
``report.show(bench)`` glues one figure's outputs under the keys the book pastes
(:data:`GLUE_KEYS`, the one list the book reads) and displays them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd

from ... import store
from ...cluster.settings import SIMULATED_READY_AFTER_MS
from ...publish import render
from .. import runner
from ..baselines import BASELINES, display
from . import analysis, bottleneck, comparison, logs, plots
from .spec import BENCHES

#: The controller manager's client limit (kube-controller-manager defaults, kept by the artifact).
CONTROLLER_MANAGER_QPS, CONTROLLER_MANAGER_BURST = 20, 30
PAPER_CLAIM = ("\u201cto scale out a burst of FaaS instances, message passing becomes the primary bottleneck as "
               "controllers have to exchange extensive state through the API Server\u201d (the paper's abstract)")
#: The myst-nb glue keys the book pastes from the notebook, per figure and for the run.
FIGURE_KEYS = ("e2e", "stages", "table", "findings", "not_measured")
GLUE_KEYS = (*(f"{b.glue_prefix}_{k}" for b in BENCHES.values() for k in FIGURE_KEYS), "provenance", "run_id",
             "results_digest")
CHART_KEYS = tuple(k for k in GLUE_KEYS if k.endswith(("_e2e", "_stages")))


@dataclass
class MicrobenchReport:
    run_id: str
    suite: dict[str, Any]
    runs: pd.DataFrame
    summary: pd.DataFrame
    stages: pd.DataFrame
    timelines: pd.DataFrame
    provenance: pd.DataFrame
    digest: str = ""  # of the run's files when the report was made (the book checks it)
    metas: dict[logs.RunKey, dict[str, Any]] = field(default_factory=dict)  # each finished run's metadata
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    charts: dict[str, alt.TopLevelMixin] = field(default_factory=dict)
    saved: list[Path] = field(default_factory=list)

    @property
    def benches(self) -> list[str]:
        return [b for b in BENCHES if b in self.suite["parameters"]["benches"]]

    @property
    def source(self) -> list[str]:
        """Where the numbers come from, as the charts' subtitle lines."""
        clusters = self.suite.get("clusters", {})
        backend = self.suite["parameters"]["backend"]
        host = self.suite["provenance"]["machine"]["host"]
        versions = next(iter(clusters.values()), {}).get("versions", {})
        real = any(not BASELINES[b].simulated for b in set(self.summary["baseline"]))
        nodes = "kwok nodes (simulated sandbox) and real nodes (k8s, kd)" if real else "kwok nodes, simulated sandbox"
        lines = [f"measured here: run {self.run_id}, {backend} backend on {host}",
                 f"{versions.get('kube-apiserver', 'Kubernetes ?')}, {nodes}"]
        kd_sources = clusters.get("kd", {}).get("sources", {})
        images = [s.split(" (")[0].removeprefix("image ").rsplit("/", 1)[-1].split(":")[0]
                  + "@" + s.split("@")[1][:19] for c, s in sorted(kd_sources.items()) if s.startswith("image ")]
        if images:  # name the Kd images the kd+ numbers come from
            lines.append("kd+ from images " + ", ".join(images))
        return lines

    def not_measured(self, bench: str) -> pd.DataFrame:
        """The systems of this figure that have no number, and why (not-run and failed runs alike)."""
        reasons = self.suite.get("not_measured", {})
        rows = [{"system": display(b), "reason": reasons[b]} for b in BENCHES[bench].baselines
                if b in self.suite["parameters"]["baselines"] and b in reasons]
        for attempt in self.suite.get("attempts", [])[-1:]:
            for o in attempt.get("outcomes", []):
                if o["bench"] == bench and o["status"] == "failed":
                    rows.append({"system": f"{display(o['baseline'])} at {o['scale']}",
                                 "reason": f"run failed: {o['detail']}"})
        damaged = self.runs[(self.runs["bench"] == bench) & self.runs["source"].str.startswith("damaged")]
        for _, row in damaged.iterrows():
            rows.append({"system": f"{display(row['baseline'])} at {row['scale']}", "reason": row["source"]})
        return pd.DataFrame(rows, columns=["system", "reason"])

    def findings(self, bench: str) -> str:
        return findings(self, bench)

    def show(self, bench: str) -> None:
        """Glue this figure's outputs for the book and display them (one notebook cell per figure)."""
        from IPython.display import Markdown, display
        from myst_nb import glue

        prefix = BENCHES[bench].glue_prefix
        if bench not in self.tables:
            glue(f"{prefix}_findings", Markdown(f"`{bench}` was not among the benches of this run."), display=False)
            display(Markdown(f"`{bench}` was not among the benches of this run."))
            return
        outputs = {
            "table": _without_index(self.tables[bench]),
            "e2e": self.charts[f"{prefix}_e2e"],
            "stages": self.charts[f"{prefix}_stages"],
            "findings": Markdown(self.findings(bench)),
            "not_measured": _without_index(self.not_measured(bench)),
        }
        for key, value in outputs.items():
            glue(f"{prefix}_{key}", _as_html(value) if key == "findings" else value, display=False)
        display(outputs["findings"], outputs["table"], outputs["e2e"], outputs["stages"])

    def glue_run(self) -> None:
        from myst_nb import glue

        glue("run_id", self.run_id, display=False)
        glue("provenance", _without_index(self.provenance), display=False)
        glue("results_digest", self.digest, display=False)


def _as_html(markdown: Any) -> Any:
    """The findings as HTML for the book's ``{glue}`` (which shows text/html, not text/markdown)."""
    from IPython.display import HTML
    from markdown_it import MarkdownIt

    return HTML(f'<div class="kdlib-findings">{MarkdownIt().render(markdown.data)}</div>')


def _without_index(frame: pd.DataFrame) -> Any:
    return frame.style.hide(axis="index")


def _rate(timeline: pd.DataFrame, stage: str, first: int, last: int) -> float:
    """Objects per second reaching ``stage`` between the ``first``-th and the ``last``-th of
    them (1-based), the median over the run's repeats (each repeat's clock starts at 0)."""
    rates = []
    for _, run in timeline[timeline["stage"] == stage].groupby("repeat"):
        times = run["t"].dropna().sort_values().to_numpy()
        if len(times) >= last and last - first >= 5 and times[last - 1] > times[first - 1]:
            rates.append((last - first) / (times[last - 1] - times[first - 1]))
    return float(pd.Series(rates).median()) if rates else float("nan")


def findings(report: MicrobenchReport, bench: str) -> str:
    """What this run's data show for one figure, computed from it (markdown)."""
    spec = BENCHES[bench]
    summary = report.summary[report.summary["bench"] == bench]
    if summary.empty:
        return f"No run of `{bench}` finished in this run, so there is nothing to read off it."
    lines = []
    for baseline in sorted(set(summary["baseline"]), key=list(spec.baselines).index):
        if BASELINES[baseline].unthrottled:  # no client limit to check it against: bottleneck.unthrottled_lines
            continue
        rows = summary[summary["baseline"] == baseline].sort_values("scale")
        largest = rows.iloc[-1]
        scale, p90 = int(largest["scale"]), float(largest["p90_s"])
        pods = spec.workload(scale).pods
        # Every controller of the controller manager has a client of its own (it runs with
        # --use-service-account-credentials), each limited to QPS 20, burst 30. The p90 pod (the
        # original's index (90*N)/100, 0-based) needs (90*N)/100 + 1 creations by the ReplicaSet controller. In Figure 10 each function costs
        # two writes on each of two clients: the Deployment controller's (the ReplicaSet's scale,
        # the Deployment's status) and the ReplicaSet controller's (the pod, the ReplicaSet's status).
        p90_pods = (90 * pods) // 100 + 1
        writes_per_pod, writer = ((2, "each of the Deployment and ReplicaSet controllers")
                                  if bench == "scale-funcs" else (1, "the ReplicaSet controller"))
        writes = p90_pods * writes_per_pod
        bound = max(0.0, (writes - CONTROLLER_MANAGER_BURST) / CONTROLLER_MANAGER_QPS)
        run = report.timelines[(report.timelines["baseline"] == baseline) & (report.timelines["scale"] == scale)]
        rate = _rate(run, "created", CONTROLLER_MANAGER_BURST + 1, p90_pods)
        stage = report.stages[(report.stages["bench"] == bench) & (report.stages["baseline"] == baseline)
                              & (report.stages["scale"] == scale)].set_index("stage")["p90_s"]
        parts = [f"**{baseline}**, {spec.symbol} = {scale} ({pods} pods): p90 Ready after **{p90:.2f} s**"]
        if rate == rate and writes_per_pod == 1:  # not NaN; Figure 10's pods come in bunches (stages below)
            parts.append(f"after the first {CONTROLLER_MANAGER_BURST}, pods were created at **{rate:.1f} pods/s** "
                         f"(the client limit allows {CONTROLLER_MANAGER_QPS}/s)")
        if writes <= CONTROLLER_MANAGER_BURST:
            parts.append(f"the {writes} write(s) of {writer} up to the p90 pod fit in its client's burst "
                         f"({CONTROLLER_MANAGER_BURST}), so the rate limit does not bind at this scale")
        else:
            binds = "so that limit is what binds" if bound >= 0.5 * p90 else "so something else binds as well"
            parts.append(f"the client of {writer} (QPS {CONTROLLER_MANAGER_QPS}, burst {CONTROLLER_MANAGER_BURST}) "
                         f"needs at least **{bound:.1f} s** for the {writes} writes up to the p90 pod "
                         f"({writes_per_pod} per pod), {_share(bound, p90)} of the measured time, {binds}")
        if {"created", "scheduled", "ready"} <= set(stage.index.astype(str)):
            scheduling = float(stage["scheduled"] - stage["created"])
            sandbox = float(stage["ready"] - stage["scheduled"])
            after = (f"the simulated sandbox: {SIMULATED_READY_AFTER_MS} ms" if BASELINES[baseline].simulated
                     else "a real sandbox and container on real nodes sharing this machine's cores")
            if "rs_updated" in set(stage.index.astype(str)) and writes_per_pod == 2:
                parts.append(f"the p90 ReplicaSet was scaled by {float(stage['rs_updated']):.2f} s and the p90 pod "
                             f"created by {float(stage['created']):.2f} s")
            parts.append(f"at the p90, binding came {scheduling * 1000:.0f} ms after creation (the scheduler) and "
                         f"Ready {sandbox * 1000:.0f} ms after binding ({after})")
        repeats = int(rows["repeats"].min())
        if repeats == 1:
            parts.append("each point is a single run (no spread)")
        else:
            parts.append(f"each point is the median of {repeats} runs, the bars show their range")
        lines.append("- " + "; ".join(parts) + ".")
    lines += bottleneck.unthrottled_lines(report, bench)  # the control experiment: what binds without the limit
    lines += bottleneck.real_node_lines(report, bench)  # why the real-node bars are what they are
    lines.append("")
    lines.append(_claim_check(summary, spec.baselines))
    return "\n".join(lines)


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f} %" if whole > 0 else "n/a"


def _claim_check(summary: pd.DataFrame, baselines: tuple[str, ...]) -> str:
    """Which of the paper's claims this run can check."""
    measured = set(summary["baseline"])
    pairs = [("k8s+", "kd+"), ("k8s", "kd")]
    ratios = []
    for vanilla, kd in pairs:
        if {vanilla, kd} <= measured:
            both = summary[summary["baseline"].isin([vanilla, kd])].pivot(index="scale", columns="baseline",
                                                                           values="p90_s").dropna()
            for scale, row in both.iterrows():
                ratios.append(f"{vanilla}/{kd} at {scale}: {row[vanilla] / row[kd]:.1f}×")
    claim = f"The paper's claim for this part of the evaluation: {PAPER_CLAIM}."
    if ratios:
        return claim + " Measured here, p90 of vanilla over Kubedirect: " + "; ".join(ratios) + "."
    return (claim + " This run has no Kubedirect numbers, so it cannot check Kubedirect's gain; it shows "
            "where vanilla Kubernetes spends the time (compare the pod-creation rate with the client limit above).")


def microbench(run_id: str, root: Path | None = None, save: bool = True) -> MicrobenchReport:
    """Load, summarise and chart the microbenchmarks of suite ``run_id``."""
    suite = runner.load(run_id, root)
    params = suite["parameters"]
    benches = [b for b in BENCHES if b in params["benches"]]
    baselines = list(params["baselines"])
    with_results = [b for b in benches if store.run_dir(b, run_id, root).is_dir()]
    runs = pd.concat([logs.load(b, run_id, root) for b in with_results]
                     or [pd.DataFrame(columns=logs.COLUMNS)], ignore_index=True)
    timelines = pd.concat([logs.load_timelines(b, run_id, root) for b in with_results]
                          or [pd.DataFrame(columns=["bench", "baseline", "scale", "repeat", "kind", "object",
                                                    "stage", "t", "node"])], ignore_index=True)
    valid = runs.dropna(subset=["total_s"])
    summary = analysis.e2e_summary(valid) if len(valid) else pd.DataFrame(
        columns=["bench", "baseline", "scale", "p90_s", "min_s", "max_s", "repeats"])
    stages = analysis.stage_summary(analysis.stage_percentiles(timelines)) if len(timelines) else pd.DataFrame(
        columns=["bench", "baseline", "scale", "stage", "p90_s", "min_s", "max_s", "repeats"])
    metas = {k: m for b in with_results for k, m in logs.load_metas(b, run_id, root).items()}
    report = MicrobenchReport(run_id, suite, runs, summary, stages, timelines, provenance_table(suite),
                              logs.digest(run_id, benches, root), metas)
    if save:
        # One shared copy of the Vega bundle for every saved chart page of every run.
        bundle = render.write_bundle(store.root(root))
    for bench in benches:
        spec = BENCHES[bench]
        prefix = spec.glue_prefix
        scales = params["scales"][bench]
        shown = [b for b in baselines if b in spec.baselines]
        table = analysis.figure_table(summary, bench, shown, scales, suite.get("not_measured", {}),
                                      _failures(suite, runs, bench))
        table = comparison.with_ratio(table, summary, bench)  # Kd beside vanilla
        report.tables[bench] = table.assign(baseline=table["baseline"].map(display))  # k8s+u as "k8s+ (unthrottled)"
        report.charts[f"{prefix}_e2e"] = plots.e2e_chart(summary, bench, shown, scales, report.source)
        report.charts[f"{prefix}_stages"] = plots.stage_chart(stages, bench, shown, report.source)
        if save:
            directory = store.run_dir(bench, run_id, root)
            for kind in ("e2e", "stages"):
                name = f"{prefix}_{kind}"
                report.saved.extend(render.save_chart(report.charts[name], directory / name, bundle))
    return report


def _failures(suite: dict[str, Any], runs: pd.DataFrame, bench: str) -> dict[tuple[str, int], str]:
    """Why a (system, scale) of this bench has no number: its last run failed, or its files are damaged."""
    found = {}
    for attempt in suite.get("attempts", []):
        for o in attempt.get("outcomes", []):
            if o["bench"] == bench and o["status"] == "failed":
                found[(o["baseline"], o["scale"])] = f"run failed: {o['detail']}"
    for _, row in runs[(runs["bench"] == bench) & runs["source"].str.startswith("damaged")].iterrows():
        found[(row["baseline"], int(row["scale"]))] = row["source"]
    return found


def _flatten(prefix: str, value: dict[str, Any]) -> list[tuple[str, str]]:
    """Nested dicts as ``prefix.key.sub`` rows; lists joined by commas."""
    flat = pd.json_normalize(value, sep=".").iloc[0].to_dict() if value else {}
    return [(f"{prefix}.{key}", ", ".join(map(str, v)) if isinstance(v, list) else str(v)) for key, v in flat.items()]


def provenance_table(suite: dict[str, Any]) -> pd.DataFrame:
    attempts = suite.get("attempts", [])
    rows: list[tuple[str, str]] = [("run_id", suite["run_id"]), ("state", suite.get("state", "?")),
                                   ("attempts", "; ".join(f"{a.get('started_at')}: {a.get('state')}"
                                                          + (f" ({a['reason']})" if a.get("reason") else "")
                                                          for a in attempts)),
                                   ("wall time of the last attempt (s)", str(suite.get("seconds")))]
    rows += _flatten("code", {k: suite["provenance"][k] for k in ("kdlib", "git_revision", "git_dirty")})
    for section in ("machine", "packages"):
        rows += _flatten(section, suite["provenance"][section])
    rows += _flatten("cluster", suite.get("clusters", {}))
    rows += _flatten("parameters", suite["parameters"])
    rows.append(("recorded at", suite["provenance"]["recorded_at"]))
    return pd.DataFrame(rows, columns=["key", "value"])
