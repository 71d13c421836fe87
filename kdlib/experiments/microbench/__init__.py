"""The microbenchmarks of Figures 9–11: specification, measurement, suite runner, analysis.

>>> from kdlib.experiments import microbench                       # doctest: +SKIP
>>> params = microbench.SuiteParams(run_id="my-run")  # or .from_notebook(globals())
>>> microbench.run_suite(params)
>>> microbench.load("scale-pods", "my-run")       # one row per log; total_s is the p90 time
"""

from .files import load, load_dir, load_timelines
from .report import MicrobenchReport, microbench as report
from .spec import BENCHES, Bench, RunItem, SuiteParams, with_fetched_kd
from .suite import RunOutcome, SuiteOutcome, plan, run_suite

__all__ = ["BENCHES", "Bench", "RunItem", "SuiteParams", "with_fetched_kd", "plan", "run_suite", "RunOutcome", "SuiteOutcome",
           "MicrobenchReport", "report", "load", "load_dir", "load_timelines"]
