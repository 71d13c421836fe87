"""One run-id rule for every experiment (issue 19: D1–D3), checked before anything runs."""

from __future__ import annotations

import pytest

from kdlib import store
from kdlib.errors import ConfigError
from kdlib.experiments.microbench.spec import SuiteParams
from kdlib.experiments.trace.params import TraceParams

BAD = {
    "..": "must be letters",            # D1: files landed in results/
    ".": "must be letters",             # D1: files landed in results/trace/
    "x" * 300: "at most 100",          # D2: a raw OSError
    2024: "is a number",                # D3: papermill's -p run_id 2024 (a raw TypeError in the trace)
    "nl\n": "must be letters",          # D3: Python's `$` matched before the newline
    "a/b": "must be letters",
    "": "required",
    None: "required",
    True: "not text",
}


@pytest.mark.parametrize("run_id", list(BAD), ids=repr)
def test_both_experiments_refuse_the_same_run_ids(run_id):
    expected = BAD[run_id]
    assert expected in store.run_id_problem(run_id)
    with pytest.raises(ConfigError, match=expected):
        TraceParams(run_id=run_id)
    with pytest.raises(ConfigError, match=expected):
        SuiteParams(run_id=run_id)


def test_a_number_is_told_how_to_pass_it_as_text():
    assert "-r run_id 2024" in store.run_id_problem(2024)


@pytest.mark.parametrize("run_id", ["my-run", "r1.2_x", "2024", "A" * 100])
def test_good_run_ids(run_id):
    assert store.run_id_problem(run_id) is None
    TraceParams(run_id=run_id)
    SuiteParams(run_id=run_id)


def test_the_store_never_makes_a_directory_for_a_bad_run_id(tmp_path):
    with pytest.raises(ValueError, match="must be letters"):
        store.run_dir("trace", "..", tmp_path)
