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

from ... import provenance as code_provenance
from ... import store
from ...publish import render
from .. import loads, runner, verdict
from ...baselines import BASELINES, display
from . import analysis, comparison, files, plots
from .findings import figure_verdict, findings, run_cost
from .spec import BENCHES

#: The myst-nb glue keys the book pastes from the notebook, per figure and for the run.
FIGURE_KEYS = ("e2e", "stages", "table", "findings", "not_measured", "verdict")
GLUE_KEYS = (*(f"{b.glue_prefix}_{k}" for b in BENCHES.values() for k in FIGURE_KEYS), "provenance", "run_id",
             "results_digest", "analysis_code", "verdicts", "measured_with", "run_cost")
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
    metas: dict[files.RunKey, dict[str, Any]] = field(default_factory=dict)  # each finished run's metadata
    machine: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=loads.COLUMNS))  # per run
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    charts: dict[str, alt.TopLevelMixin] = field(default_factory=dict)
    saved: list[Path] = field(default_factory=list)

    @property
    def records(self) -> pd.DataFrame:
        """One row per finished run: the code revision and the versions it was measured with."""
        return run_records(self.metas)

    @property
    def benches(self) -> list[str]:
        return [b for b in BENCHES if b in self.suite["parameters"]["benches"]]

    @property
    def source(self) -> list[str]:
        """Where the numbers come from, as the charts' subtitle lines: the versions and the code
        revision each run recorded in its metadata (never the suite record's, which a later
        resume rewrites)."""
        clusters = self.suite.get("clusters", {})
        backend = self.suite["parameters"]["backend"]
        host = self.suite["provenance"]["machine"]["host"]
        real = any(not BASELINES[b].simulated for b in set(self.summary["baseline"]) if b in BASELINES)
        nodes = "kwok nodes (simulated sandbox) and real nodes (k8s, kd)" if real else "kwok nodes, simulated sandbox"
        lines = [f"measured here: run {self.run_id}, {backend} backend on {host}, code {_revisions(self.records)}",
                 f"{_versions(self.records)}; {nodes}"]
        kd_sources = clusters.get("kd", {}).get("sources", {})
        images = [s.split(" (")[0].removeprefix("image ").rsplit("/", 1)[-1].split(":")[0]
                  + "@" + s.split("@")[1][:19] for c, s in sorted(kd_sources.items()) if s.startswith("image ")]
        if images:  # name the Kd images the kd+ numbers come from
            lines.append("kd+ from images " + ", ".join(images))
        return lines

    def measured_with(self) -> pd.DataFrame:
        """Per system: how many runs, the code revision(s) and versions they recorded, when."""
        rows = []
        for baseline, runs in self.records.groupby("baseline", sort=False):
            rows.append({"system": display(baseline), "runs": len(runs), "code revision": _revisions(runs),
                         "kube-apiserver": ", ".join(sorted(set(runs["kube-apiserver"].dropna()))) or "not recorded",
                         "kwok": ", ".join(sorted({v.split(" go")[0] for v in runs["kwok"].dropna()})) or "not recorded",
                         "first run started": runs["start_time"].min(), "last run started": runs["start_time"].max()})
        return pd.DataFrame(rows, columns=["system", "runs", "code revision", "kube-apiserver", "kwok",
                                           "first run started", "last run started"])

    def verdict(self, bench: str) -> verdict.Verdict:
        return figure_verdict(self, bench)

    def run_cost(self) -> str:
        return run_cost(self)

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
            "verdict": _html(self.verdict(bench).html()),
            "table": _without_index(compact_table(self.tables[bench])),
            "e2e": self.charts[f"{prefix}_e2e"],
            "stages": self.charts[f"{prefix}_stages"],
            "findings": Markdown(self.findings(bench)),
            "not_measured": _without_index(self.not_measured(bench)),
        }
        for key, value in outputs.items():
            glue(f"{prefix}_{key}", _as_html(value) if key == "findings" else value, display=False)
        display(outputs["verdict"], outputs["findings"], outputs["table"], outputs["e2e"], outputs["stages"])

    def glue_run(self) -> None:
        from IPython.display import Markdown
        from myst_nb import glue

        glue("run_id", self.run_id, display=False)
        glue("provenance", _without_index(self.provenance), display=False)
        glue("results_digest", self.digest, display=False)
        # The book refuses this notebook once the code that made these outputs has changed.
        glue("analysis_code", code_provenance.analysis_digest(), display=False)
        glue("verdicts", _without_index(pd.DataFrame([self.verdict(b).row() for b in self.benches],
                                                     columns=["figure", "verdict", "because"])), display=False)
        glue("measured_with", _without_index(self.measured_with()), display=False)
        glue("run_cost", _as_html(Markdown(self.run_cost())), display=False)


def _as_html(markdown: Any) -> Any:
    """The findings as HTML for the book's ``{glue}`` (which shows text/html, not text/markdown)."""
    from IPython.display import HTML
    from markdown_it import MarkdownIt

    return HTML(f'<div class="kdlib-findings">{MarkdownIt().render(markdown.data)}</div>')


def _without_index(frame: pd.DataFrame) -> Any:
    return frame.style.hide(axis="index")


def _html(text: str) -> Any:
    from IPython.display import HTML

    return HTML(text)


def compact_table(table: pd.DataFrame) -> pd.DataFrame:
    """A figure's table as the book shows it: one line per system that has no number for the
    same reason at every scale (instead of one per scale), and no ratio column while it is
    empty on every row (a run without Kubedirect)."""
    from .comparison import RATIO_COLUMN

    table = table.copy()
    missing = table["p90 (s)"] == "not measured"
    keep, collapsed = [], []
    for (baseline, _same_reason), rows in table[missing].groupby(["baseline", "reason"], sort=False):
        if len(rows) == (table["baseline"] == baseline).sum() and len(rows) > 1:
            line = rows.iloc[0].copy()
            line["scale"] = "all"
            collapsed.append(line)
        else:
            keep.extend(rows.index)
    shown = pd.concat([table[~missing], table.loc[keep], pd.DataFrame(collapsed)])
    order = {b: i for i, b in enumerate(dict.fromkeys(table["baseline"]))}
    shown = shown.assign(_o=shown["baseline"].map(order)).sort_values("_o", kind="stable").drop(columns="_o")
    if RATIO_COLUMN in shown and not shown[RATIO_COLUMN].astype(str).str.strip().any():
        shown = shown.drop(columns=RATIO_COLUMN)
    if "reason" in shown and not shown["reason"].astype(str).str.strip().any():
        shown = shown.drop(columns="reason")
    return shown.reset_index(drop=True)


#: The columns of :attr:`MicrobenchReport.records`.
RECORD_COLUMNS = ["bench", "baseline", "scale", "repeat", "git_revision", "git_dirty", "kube-apiserver", "kwok",
                  "start_time", "load_average_1m"]


def run_records(metas: dict[files.RunKey, dict[str, Any]]) -> pd.DataFrame:
    """What each finished run recorded about itself (its ``meta`` file): code revision, versions, start."""
    rows = []
    for key, meta in metas.items():
        recorded = meta.get("provenance") or {}
        versions = meta.get("versions") or {}
        rows.append({"bench": key.bench, "baseline": key.baseline, "scale": key.scale, "repeat": key.repeat,
                     "git_revision": recorded.get("git_revision"), "git_dirty": recorded.get("git_dirty"),
                     "kube-apiserver": versions.get("kube-apiserver"), "kwok": versions.get("kwok"),
                     "start_time": meta.get("start_time"),
                     "load_average_1m": (recorded.get("machine") or {}).get("load_average_1m")})
    return pd.DataFrame(rows, columns=RECORD_COLUMNS)


def _revisions(records: pd.DataFrame) -> str:
    """The code revision(s) runs were measured at, short, with how many runs each when several."""
    if records.empty:
        return "revision not recorded"
    labels = [f"{str(r)[:7]}{' (uncommitted changes)' if d else ''}" if r else "not recorded"
              for r, d in zip(records["git_revision"], records["git_dirty"])]
    counts = pd.Series(labels).value_counts()
    if len(counts) == 1:
        return counts.index[0]
    return ", ".join(f"{label} ({n} runs)" for label, n in counts.items())


def _versions(records: pd.DataFrame) -> str:
    """The Kubernetes version each system's runs recorded, e.g. ``k8s, k8s+: Kubernetes v1.32.13``."""
    known = records.dropna(subset=["kube-apiserver"])
    if known.empty:
        return "control-plane version not recorded"
    by_version: dict[str, list[str]] = {}
    for (version, baseline), _ in known.groupby(["kube-apiserver", "baseline"], sort=False):
        by_version.setdefault(version, []).append(display(baseline))
    return "; ".join(f"{', '.join(dict.fromkeys(b))}: {v}" for v, b in by_version.items())


def _machine_column(table: pd.DataFrame, machine: pd.DataFrame, bench: str) -> pd.DataFrame:
    """The figure's table with how busy the machine was for each measured row's runs."""
    runs = machine[machine["experiment"] == bench]
    cells = []
    for baseline, scale, p90 in zip(table["baseline"], table["scale"], table["p90 (s)"]):
        mine = runs[(runs["system"] == baseline) & (runs["scale"] == scale)]
        recorded = mine["busy"].dropna().astype(bool)
        if p90 == "not measured":
            cells.append("")
        elif recorded.empty:
            cells.append("not recorded")
        elif recorded.any():
            cells.append(f"BUSY ({int(recorded.sum())} of {len(recorded)} runs)")
        else:
            cells.append("quiet")
    table = table.copy()
    table.insert(len(table.columns) - (1 if "reason" in table.columns else 0), "machine", cells)
    return table


def microbench(run_id: str, root: Path | None = None, save: bool = True) -> MicrobenchReport:
    """Load, summarise and chart the microbenchmarks of suite ``run_id``."""
    suite = runner.load(run_id, root)
    params = suite["parameters"]
    benches = [b for b in BENCHES if b in params["benches"]]
    baselines = list(params["baselines"])
    with_results = [b for b in benches if store.run_dir(b, run_id, root).is_dir()]
    runs = pd.concat([files.load(b, run_id, root) for b in with_results]
                     or [pd.DataFrame(columns=files.COLUMNS)], ignore_index=True)
    timelines = pd.concat([files.load_timelines(b, run_id, root) for b in with_results]
                          or [pd.DataFrame(columns=["bench", "baseline", "scale", "repeat", "kind", "object",
                                                    "stage", "t", "node"])], ignore_index=True)
    valid = runs.dropna(subset=["total_s"])
    summary = analysis.e2e_summary(valid) if len(valid) else pd.DataFrame(
        columns=["bench", "baseline", "scale", "p90_s", "min_s", "max_s", "repeats"])
    stages = analysis.stage_summary(analysis.stage_percentiles(timelines)) if len(timelines) else pd.DataFrame(
        columns=["bench", "baseline", "scale", "stage", "p90_s", "min_s", "max_s", "repeats"])
    metas = {k: m for b in with_results for k, m in files.load_metas(b, run_id, root).items()}
    machine = loads.run_loads(run_id, root)[0]
    report = MicrobenchReport(run_id, suite, runs, summary, stages, timelines, provenance_table(suite),
                              files.digest(run_id, benches, root), metas, machine[machine["experiment"] != "trace"])
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
        table = _machine_column(table, report.machine, bench)  # runs measured on a busy machine
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
