"""The findings paragraph is computed from the run: rates, the client limit, which one binds."""

from html import unescape

import pandas as pd

from kdlib.baselines import KD_WITHOUT_BINARIES
from kdlib.experiments.microbench import analysis, comparison
from kdlib.experiments.microbench.report import MicrobenchReport, compact_table, figure_verdict, findings


def _report(pods: int, ready_at: float, repeats: int = 1, kd_ready_at: float | None = None) -> MicrobenchReport:
    rows, runs = [], []
    for baseline, end in (("k8s+", ready_at), ("kd+", kd_ready_at)):
        if end is None:
            continue
        for repeat in range(repeats):
            for i in range(pods):  # created evenly until end - 0.3; scheduled +10 ms; Ready +200 ms
                created = (end - 0.3) * i / max(1, pods - 1)
                for stage, t in (("created", created), ("scheduled", created + 0.01), ("ready", created + 0.21)):
                    rows.append({"bench": "scale-pods", "baseline": baseline, "scale": pods, "repeat": repeat,
                                 "kind": "Pod", "object": f"p{i}", "stage": stage, "t": t, "node": "n"})
        runs.append({"bench": "scale-pods", "run_id": "r", "name": "e2e", "baseline": baseline, "scale": pods,
                     "repeat": 0, "total_us": end * 1e6, "total_s": end, "source": "measured (kdlib)"})
    timelines = pd.DataFrame(rows)
    runs = pd.DataFrame(runs)
    summary = analysis.e2e_summary(runs)
    summary["repeats"] = repeats
    stages = analysis.stage_summary(analysis.stage_percentiles(timelines))
    suite = {"parameters": {"benches": ["scale-pods"], "baselines": ["k8s+", "kd+"], "backend": "local"}}
    return MicrobenchReport("r", suite, runs, summary, stages, timelines, pd.DataFrame())


def test_the_rate_limit_is_named_when_it_binds():
    text = findings(_report(200, 8.5), "scale-pods")
    assert "p90 Ready after **8.50 s**" in text
    assert "at least **7.5 s** for the 181 writes up to the p90 pod" in text and "that limit is what binds" in text
    assert "pods were created at **24.3 pods/s**" in text and "single run" in text


def test_the_creation_rate_is_per_repeat_not_summed_over_repeats():
    assert "pods were created at **24.3 pods/s**" in findings(_report(200, 8.5, repeats=3), "scale-pods")


def test_a_small_run_fits_in_the_burst():
    assert "fit in its client's burst" in findings(_report(12, 0.5, repeats=3), "scale-pods")


def test_with_kd_the_verdict_is_computed_from_the_ratio():
    verdict = figure_verdict(_report(200, 8.0, kd_ready_at=2.0), "scale-pods")
    assert verdict.outcome == "supported" and "k8s+ ÷ kd+ at N = 200: 4.00×" in verdict.because
    assert "k8s+ at N = 200 (1 run each); kd+ at N = 200 (1 run each)" in verdict.measured
    slower = figure_verdict(_report(200, 2.0, kd_ready_at=8.0), "scale-pods")
    assert slower.outcome == "contradicted" and "0.25×" in slower.because


def test_without_kd_binaries_the_verdict_says_it_cannot_test_and_why():
    report = _report(200, 8.0)
    report.suite["not_measured"] = {"kd+": KD_WITHOUT_BINARIES}
    verdict = figure_verdict(report, "scale-pods")
    assert verdict.outcome == "cannot test here"
    assert verdict.because.startswith("Kubedirect's binaries were not available to this run")
    assert "not measured: kd+" in verdict.measured
    html = unescape(verdict.html())
    assert "Verdict: cannot test here" in html and "quoted from the paper's abstract" in html


def test_a_system_not_measured_at_any_scale_is_one_line_and_an_empty_ratio_column_is_hidden():
    table = analysis.figure_table(_report(200, 8.0).summary, "scale-pods", ["k8s+", "kd+"], [100, 200],
                                  {"kd+": "no binaries"})
    table = comparison.with_ratio(table, _report(200, 8.0).summary, "scale-pods")
    shown = compact_table(table)
    assert list(shown["baseline"]) == ["k8s+", "k8s+", "kd+"]
    assert shown.iloc[2]["scale"] == "all" and shown.iloc[2]["reason"] == "no binaries"
    assert comparison.RATIO_COLUMN not in shown
    with_kd = comparison.with_ratio(analysis.figure_table(_report(200, 8.0, kd_ready_at=2.0).summary, "scale-pods",
                                                          ["k8s+", "kd+"], [200], {}),
                                    _report(200, 8.0, kd_ready_at=2.0).summary, "scale-pods")
    assert comparison.RATIO_COLUMN in compact_table(with_kd)
