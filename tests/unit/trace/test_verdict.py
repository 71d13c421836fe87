"""Figures 12–13's verdicts and subtitles come from the run: what ran, and why the rest did not."""

from __future__ import annotations

import pandas as pd

from kdlib.experiments.trace import report as reports
from kdlib.experiments.trace.analysis import SUMMARY_COLUMNS
from kdlib.experiments.trace.params import KD_REASON_START, KNATIVE_REASON


def _report(measured: dict[str, float], not_measured: dict[str, str]) -> reports.TraceReport:
    """A run whose systems in ``measured`` have that median per-function slowdown (and latency, ×100 ms)."""
    rows = [{"system": s, "source": "measured here (run r)", "invocations": 1000, "failed": 0, "failed_pct": 0.0,
             "dropped_as_timeout": 0, "functions": 10, "slowdown_p50": v, "slowdown_p99": v,
             "latency_p50_ms": 100 * v, "latency_p99_ms": 100 * v} for s, v in measured.items()]
    metas = {s: {"versions": {"kube-apiserver": "Kubernetes v1.32.13"},
                 "provenance": {"git_revision": "abcdef0123", "git_dirty": False}} for s in measured}
    run = {"trace": {"functions": 500, "minutes": 30}, "parameters": {"warmup_minutes": 10, "nodes": 20}}
    nm = pd.DataFrame([{"system": s, "figure": 13, "reason": r} for s, r in not_measured.items()],
                      columns=["system", "figure", "reason"])
    return reports.TraceReport("r", run, metas, pd.DataFrame(rows, columns=SUMMARY_COLUMNS), pd.DataFrame(),
                               pd.DataFrame(), nm, pd.DataFrame())


def test_without_kd_and_knative_nothing_can_be_tested_and_the_page_says_why():
    report = _report({"Dr/K8s+": 4.7}, {"Kn/K8s": KNATIVE_REASON, "Kn/Kd": KNATIVE_REASON,
                                        "Dr/Kd+": f"{KD_REASON_START} (kd_bin_dir)", "Dirigent": "no CSV"})
    fig12, fig13 = report.verdict(12), report.verdict(13)
    assert fig12.outcome == fig13.outcome == "cannot test here"
    assert "kdlib has no Knative path yet, on any backend" in fig12.because
    assert fig13.because.startswith("Kubedirect's binaries were not available to this run")
    assert "Dr/K8s+: 1,000 invocations" in fig13.measured and "not measured: Dirigent, Dr/K8s+ (as shipped), Dr/Kd+" in fig13.measured
    assert fig12.measured.startswith("nothing")
    # Figure 12's chart names no run, cluster or version: nothing of it ran.
    assert reports._source(report, 12) == ["nothing of Figure 12 was measured in run r: kdlib has no Knative path yet"]
    assert "Dr/K8s+: Kubernetes v1.32.13, code abcdef0" in reports._source(report, 13)


def test_with_kd_measured_the_verdict_comes_from_the_ratio():
    better = _report({"Dr/K8s+": 8.0, "Dr/Kd+": 2.0}, {}).verdict(13)
    assert better.outcome == "supported" and "Dr/K8s+ ÷ Dr/Kd+: 4.00×" in better.because
    worse = _report({"Dr/K8s+": 2.0, "Dr/Kd+": 8.0}, {}).verdict(13)
    assert worse.outcome == "contradicted"
