"""The microbenchmarks of Figures 9–11: specification, measurement, suite runner."""

from .spec import (BASELINES, BENCHES, Baseline, Bench, RunItem, SuiteParams, plan, why_not_measured,
                   with_fetched_kd)
from .suite import RunOutcome, SuiteOutcome, run_suite

__all__ = ["BASELINES", "BENCHES", "Baseline", "Bench", "RunItem", "SuiteParams", "plan",
           "why_not_measured", "with_fetched_kd", "RunOutcome", "SuiteOutcome", "run_suite"]
