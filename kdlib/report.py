"""Everything the microbenchmark notebook shows, computed from the results store.

``microbench(run_id)`` loads a suite's runs and timelines, summarises them, draws the
charts of Figures 9–11 and saves each as SVG and HTML next to the results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd

from . import analysis, comparison, plots, render, results
from .experiments.spec import BENCHES


@dataclass
class MicrobenchReport:
    run_id: str
    suite: dict[str, Any]
    runs: pd.DataFrame
    summary: pd.DataFrame
    stages: pd.DataFrame
    not_measured: pd.DataFrame
    provenance: pd.DataFrame
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    charts: dict[str, alt.TopLevelMixin] = field(default_factory=dict)
    saved: list[Path] = field(default_factory=list)

    @property
    def source(self) -> list[str]:
        """Where the numbers come from, as the charts' subtitle lines."""
        clusters = self.suite.get("clusters", {})
        backend = self.suite["parameters"]["backend"]
        host = self.suite["provenance"]["machine"]["host"]
        versions = next(iter(clusters.values()), {}).get("versions", {})
        lines = [f"measured here: run {self.run_id}, {backend} backend on {host}",
                 f"{versions.get('kube-apiserver', 'Kubernetes ?')}, kwok nodes, simulated sandbox"]
        kd_sources = clusters.get("kd", {}).get("sources", {})
        images = [s.split(" (")[0].removeprefix("image ").rsplit("/", 1)[-1].split(":")[0]
                  + "@" + s.split("@")[1][:19] for c, s in sorted(kd_sources.items()) if s.startswith("image ")]
        if images:  # name the Kd images the kd+ numbers come from
            lines.append("kd+ from images " + ", ".join(images))
        return lines


def _flatten(prefix: str, value: Any, rows: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, rows)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        rows.append((prefix, f"{len(value)} entries"))
    else:
        rows.append((prefix, ", ".join(map(str, value)) if isinstance(value, list) else str(value)))


def provenance_table(suite: dict[str, Any]) -> pd.DataFrame:
    rows: list[tuple[str, str]] = [("run_id", suite["run_id"]), ("state", suite["state"]),
                                   ("wall time (s)", str(suite.get("seconds")))]
    _flatten("code", {k: suite["provenance"][k] for k in ("kdlib", "git_revision", "git_dirty")}, rows)
    _flatten("machine", suite["provenance"]["machine"], rows)
    _flatten("packages", suite["provenance"]["packages"], rows)
    _flatten("cluster", suite.get("clusters", {}), rows)
    _flatten("parameters", suite["parameters"], rows)
    rows.append(("recorded at", suite["provenance"]["recorded_at"]))
    return pd.DataFrame(rows, columns=["key", "value"])


def microbench(run_id: str, root: Path | None = None, save: bool = True) -> MicrobenchReport:
    """Load, summarise and chart the microbenchmarks of suite ``run_id``."""
    suite = results.load_suite(run_id, root)
    params = suite["parameters"]
    benches = [b for b in BENCHES if b in params["benches"]]
    baselines = list(params["baselines"])
    with_results = [b for b in benches if results.run_dir(b, run_id, root).is_dir()]
    runs = pd.concat([results.load(b, run_id, root) for b in with_results]
                     or [pd.DataFrame(columns=results.COLUMNS)], ignore_index=True)
    timelines = pd.concat([results.load_timelines(b, run_id, root) for b in with_results]
                          or [pd.DataFrame()], ignore_index=True)
    summary = analysis.e2e_summary(runs) if len(runs) else pd.DataFrame(
        columns=["bench", "baseline", "scale", "p90_s", "min_s", "max_s", "repeats"])
    stages = analysis.stage_summary(analysis.stage_percentiles(timelines)) if len(timelines) else pd.DataFrame(
        columns=["bench", "baseline", "scale", "stage", "p90_s", "min_s", "max_s", "repeats"])
    not_measured = pd.DataFrame(
        [{"bench": b, "baseline": bl, "reason": reason}
         for b in benches for bl, reason in suite["not_measured"].items()],
        columns=["bench", "baseline", "reason"])
    report = MicrobenchReport(run_id, suite, runs, summary, stages, not_measured, provenance_table(suite))
    if save:
        # One shared copy of the Vega bundle for every saved chart page of every run.
        bundle = render.write_bundle(Path(root or results.default_root()))
    for bench in benches:
        figure = plots.FIGURES[bench]
        scales = params["scales"][bench]
        table = analysis.figure_table(summary, bench, baselines, scales, suite["not_measured"])
        report.tables[bench] = comparison.with_ratio(table, summary, bench)  # Kd beside vanilla
        report.charts[f"fig{figure}_e2e"] = plots.e2e_chart(summary, bench, baselines, scales, report.source)
        report.charts[f"fig{figure}_stages"] = plots.stage_chart(stages, bench, baselines, report.source)
        if save:
            directory = results.run_dir(bench, run_id, root)
            for kind in ("e2e", "stages"):
                name = f"fig{figure}_{kind}"
                report.saved.extend(render.save_chart(report.charts[name], directory / name, bundle))
    return report
