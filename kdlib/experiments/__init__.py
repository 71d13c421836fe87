"""The microbenchmarks of Figures 9–11: specification, measurement, suite runner."""

from .spec import BASELINES, BENCHES, Baseline, Bench, RunItem, SuiteParams, plan, why_not_measured
from .suite import RunOutcome, SuiteOutcome, run_suite

__all__ = ["BASELINES", "BENCHES", "Baseline", "Bench", "RunItem", "SuiteParams", "plan",
           "why_not_measured", "RunOutcome", "SuiteOutcome", "run_suite"]
