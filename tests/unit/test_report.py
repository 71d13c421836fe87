"""The findings paragraph is computed from the run: rates, the client limit, which one binds."""

import pandas as pd

from kdlib.experiments.microbench import analysis
from kdlib.experiments.microbench.report import MicrobenchReport, findings


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
    assert "cannot check Kubedirect's gain" in text and "the paper's abstract" in text


def test_the_creation_rate_is_per_repeat_not_summed_over_repeats():
    assert "pods were created at **24.3 pods/s**" in findings(_report(200, 8.5, repeats=3), "scale-pods")


def test_a_small_run_fits_in_the_burst():
    assert "fit in its client's burst" in findings(_report(12, 0.5, repeats=3), "scale-pods")


def test_with_kd_the_ratio_is_computed():
    text = findings(_report(200, 8.0, kd_ready_at=2.0), "scale-pods")
    assert "k8s+/kd+ at 200: 4.0×" in text
