"""Every trace input is checked before anything is provisioned, one line naming it (issue 19: D9–D12)."""

from __future__ import annotations

import time

import pytest

from kdlib.errors import ConfigError, TraceDataError
from kdlib.experiments.trace import data, run as trace_run
from kdlib.experiments.trace.params import TraceParams

from .test_data import HEADER, good_durations, write


def refused(match: str, **given) -> None:
    with pytest.raises(ConfigError, match=match):
        TraceParams(run_id="x", **given)


def test_a_file_that_is_not_the_dirigent_csv_is_refused_by_its_header(tmp_path):
    """D9: /etc/passwd passed, provisioned, replayed 2.5 minutes, then failed as 'not a trace log'."""
    refused(r"dirigent_csv: /etc/passwd lacks the column\(s\) invocationID", dirigent_csv="/etc/passwd")
    refused(r"kn_k8s_csv: /etc/passwd lacks the column\(s\) invocationID", kn_k8s_csv="/etc/passwd")
    refused("dirigent_csv: .* is not a file", dirigent_csv=tmp_path)


def test_systems_given_as_a_string_is_refused():
    """D11: the string was split into characters."""
    refused(r"systems: give a list, e\.g\. \['Dr/K8s\+'\]", systems="Dr/K8s+")
    assert TraceParams(run_id="x", systems=["Dr/K8s+"]).systems == ("Dr/K8s+",)


def test_a_file_given_for_the_trace_directory(tmp_path):
    """D11: trace=/etc/passwd said the directory 'does not exist'."""
    refused("trace: /etc/passwd is a file; give the directory", trace="/etc/passwd")
    refused("trace: directory .* does not exist", trace=tmp_path / "nowhere")


@pytest.mark.parametrize("given, match", [
    ({"minutes": 2.5}, "minutes: 2.5 must be a whole number"),                      # D12: a raw TypeError
    ({"timeouts": {"Dr/K8s+": "soon"}}, r"timeouts\['Dr/K8s\+'\]: 'soon' must be"),   # D12: a raw ValueError
    ({"timeouts": {"Dr/K8s+": float("inf")}}, "must be a finite number"),
    ({"nodes": 100_000}, "nodes: 100000 is more than"),                                # D12: recorded finished
    ({"functions": 0}, "functions: 0 must be"),
    ({"functions": "5"}, "functions: '5' must be"),
    ({"warmup_minutes": -1}, "warmup_minutes: -1 must be"),
    ({"target_concurrency": float("nan")}, "target_concurrency: nan must be"),
    ({"drain_s": -1.0}, "drain_s: -1.0 must be"),
    ({"seed": "x"}, "seed: 'x' must be"),
    ({"original_extra": "yes"}, "original_extra: 'yes' must be"),
])
def test_bad_numbers_are_named(given, match):
    refused(match, **given)


def params_for(directory) -> TraceParams:
    return TraceParams(run_id="x", trace=directory, minutes=1, warmup_minutes=0)


def test_an_all_zero_trace_is_refused_before_provisioning(tmp_path):
    """D10: it provisioned, replayed nothing and was recorded finished."""
    write(tmp_path, f"{HEADER},1,2\no,a,f1,http,0,0\no,a,f2,http,0,0\n", good_durations("f1", "f2"))
    with pytest.raises(TraceDataError, match="no invocation: nothing to replay"):
        trace_run.load_trace(params_for(tmp_path))


def test_a_huge_count_is_refused_from_an_estimate_before_the_schedule_is_built(tmp_path):
    """D10: 30,000,000 took 19.5 s and 5.8 GB before provisioning; 10^12 a raw MemoryError."""
    write(tmp_path, f"{HEADER},1\no,a,f1,http,{10**12}\n", good_durations("f1"))
    started = time.monotonic()
    with pytest.raises(TraceDataError, match="1,000,000,000,001 invocations; at most 5,000,000"):
        trace_run.load_trace(params_for(tmp_path))
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("bad", ["-5", "inf"])
def test_negative_or_infinite_duration_percentiles_are_refused(tmp_path, bad):
    """D11: they passed."""
    durations = good_durations("f1").replace(",1,2,5,10,20,90,100", f",1,2,{bad},10,20,90,100")
    write(tmp_path, f"{HEADER},1\no,a,f1,http,3\n", durations)
    with pytest.raises(TraceDataError, match="negative or infinite duration percentile"):
        trace_run.load_trace(params_for(tmp_path))


def test_the_estimate_matches_the_schedule():
    from kdlib.experiments.trace import schedule

    trace = data.subset(data.load(), functions=20, minutes=5)
    for extra in (True, False):
        assert data.scheduled_invocations(trace, extra) == len(schedule.build(trace, original_extra=extra))
