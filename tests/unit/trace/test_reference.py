"""The original's reference CSVs (invitro format): read by its plot script's rules, checked before a run,
and shown on Figures 12–13 as reference data."""

from __future__ import annotations

import json

import pytest

from kdlib import provenance, store
from kdlib.errors import ConfigError
from kdlib.experiments.trace import files, reference, report
from kdlib.experiments.trace.gateway import SUCCESS, Invocation
from kdlib.experiments.trace.logs import LogFormatError, format_line, summary_line
from kdlib.experiments.trace.params import FILE_KEYS, TraceParams, plan
from kdlib.params import problems_of

# invitro's ExecutionRecord header, as its loader writes it (times in µs; flags true/false)
HEADER = ("phase,instance,invocationID,startTime,requestedDuration,grpcConnEstablish,responseTime,actualDuration,"
          "connectionTimeout,functionTimeout,actualMemoryUsage,memoryAllocationTimeout,timeToSubmitMs")
ROWS = [  # instance, invocationID, requested, response, actual, connection timeout
    ("hashA-fn1-0-1-deployment-abc12", "min3.0", 100000, 900000, 100000, "false"),  # warm-up: dropped
    ("hashA-fn1-0-1-deployment-abc12", "min10.0", 100000, 200000, 100000, "false"),  # slowdown 2, latency 100 ms
    ("hashA-fn1-0-2-deployment-xy9", "min11.0", 100000, 400000, 100000, "false"),  # slowdown 4, latency 300 ms
    ("hashA-fn2-1", "min12.0", 100000, 300000, 100000, "false"),  # slowdown 3, latency 200 ms
    ("hashA-fn2-1", "min12.1", 100000, 2000000, 0, "true"),  # timed out: no slowdown; latency 2000 ms
    ("hashB-fn3-0", "min13.0", 100000, 50000, 50000, "false"),  # slowdown 0.5: dropped; latency 0 ms
    ("hashB-fn3-0", "min13.1", 100000, 150000, 100000, "false"),  # slowdown 1.5 (hashB's only one); latency 50 ms
]


def write_csv(path, rows=ROWS, header=HEADER):
    lines = [header] + [f"0,{inst},{inv},1700000000,{req},0,{resp},{act},{timeout},false,0,false,0"
                        for inst, inv, req, resp, act, timeout in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_kn_k8s_csv_by_the_originals_rules(tmp_path):
    n = reference.per_function(reference.read(write_csv(tmp_path / "k8s.500.csv")), warmup_minutes=10)
    # slowdown per `instance` up to its first "-", without timed-out invocations
    assert n["slowdown"].to_dict() == {"hashA": pytest.approx(3.0)}
    # latency per instance without its replica suffix, timed-out invocations included
    assert n["latency_ms"].to_dict() == {"hashA-fn1": pytest.approx(200.0), "hashA-fn2": pytest.approx(1100.0),
                                         "hashB-fn3": pytest.approx(25.0)}
    assert (n["invocations"], n["failed"], n["dropped_as_outlier"]) == (6, 1, 0)


def test_dirigent_keeps_latencies_under_1500_ms(tmp_path):
    n = reference.per_function(reference.read(write_csv(tmp_path / "dirigent.500.csv")), 10,
                               latency_below_ms=reference.DIRIGENT_LATENCY_BELOW_MS)
    # hashA-fn2 keeps one invocation (200 ms) under the bound: dropped as a single one
    assert n["latency_ms"].to_dict() == {"hashA-fn1": pytest.approx(200.0), "hashB-fn3": pytest.approx(25.0)}
    assert n["slowdown"].to_dict() == {"hashA": pytest.approx(3.0)} and n["dropped_as_outlier"] == 1


def test_a_damaged_csv_is_an_error_not_a_number(tmp_path):
    with pytest.raises(LogFormatError, match="lacks the column.*responseTime"):
        reference.read(write_csv(tmp_path / "a.csv", header=HEADER.replace("responseTime", "response")))
    broken = write_csv(tmp_path / "b.csv", [("f-0", "min10.0", 100000, "12x", 1, "false")])
    with pytest.raises(LogFormatError, match="responseTime holds something other than numbers"):
        reference.read(broken)
    flags = write_csv(tmp_path / "c.csv", [("f-0", "min10.0", 100000, 1, 1, "maybe")])
    with pytest.raises(LogFormatError, match="connectionTimeout holds something other than true/false"):
        reference.read(flags)


def test_the_header_is_checked_before_anything_runs(tmp_path):
    bad = write_csv(tmp_path / "k8s.csv", header=HEADER.replace(",actualDuration", ",actual"))
    assert problems_of(TraceParams, run_id="x", kn_k8s_csv=bad) == [
        f"kn_k8s_csv: {bad} lacks the column(s) actualDuration of invitro's per-invocation CSV"]
    with pytest.raises(ConfigError, match="dirigent_csv: .* lacks the column"):
        TraceParams(run_id="x", dirigent_csv=bad)
    assert problems_of(TraceParams, run_id="x", kn_k8s_csv=tmp_path / "none.csv") == [
        f"kn_k8s_csv: {tmp_path / 'none.csv'} is not a file"]


def test_plan_shows_kn_k8s_from_its_csv(tmp_path):
    run_, skipped, shown = plan(TraceParams(run_id="x", kn_k8s_csv=write_csv(tmp_path / "k8s.500.csv")))
    assert shown == ["Kn/K8s"] and "Kn/K8s" not in skipped and "Kn/K8s" not in run_
    assert "kn_k8s_csv" in plan(TraceParams(run_id="x"))[1]["Kn/K8s"]


def _measured(directory, system, delays_s):
    """A finished system's files: its metadata and a kdlib log with the given delays (one function)."""
    meta = {"lateness": {"p50_ms": 0.1, "p99_ms": 0.5, "max_ms": 1.0}, "clock_kept_up": True, "invocations": 3,
            "success": 3, "failed": 0, "scale_writes": 1, "scale_writes_per_s": 0.1, "peak_ready_pods": 1,
            "replay_cpu_percent": 1.0, "kpa": {"target_concurrency": 1.0}, "dispatch_timeout_s": 300.0}
    lines = []
    for i, delay in enumerate(delays_s):
        t = 700.0 + i
        inv = Invocation(i, 0, 100, t, client_send=t, gateway_recv=t, gateway_send=t + delay,
                         gateway_resp=t + delay + 0.1, client_recv=t + delay + 0.1, status=SUCCESS)
        lines.append(format_line(inv, "default", "trace-5", f"default/trace-5-11/{i}", 0.0))
    text = "".join(lines) + summary_line([SUCCESS] * len(delays_s))
    files.log_path(directory, system).write_text(text)
    meta["sha256"] = {"log": store.sha256(text)}  # sealed, as run_trace seals it (kdlib.store)
    (directory / f"meta.{FILE_KEYS[system]}.json").write_text(json.dumps(meta))


def test_figure_12_shows_the_papers_kn_k8s_and_drops_timeouts_for_kn_kd_only(tmp_path):
    csv = write_csv(tmp_path / "k8s.500.csv")
    params = TraceParams(run_id="ref", systems=("Kn/K8s", "Kn/Kd", "Dr/K8s+"), kn_k8s_csv=csv)
    directory = files.run_dir("ref", tmp_path)
    directory.mkdir(parents=True)
    record = {"run_id": "ref", "state": "finished", "parameters": {**params.__dict__, "kn_k8s_csv": str(csv)},
              "not_measured": {}, "failed": {}, "provenance": provenance.collect(), "seconds": 1.0}
    (directory / "run.json").write_text(json.dumps(record, default=str))
    for system in ("Kn/Kd", "Dr/K8s+"):
        _measured(directory, system, [0.1, 0.2, 9.0])  # the third waited 9 s: a timeout for Kn/Kd only
    shown = report.trace_report("ref", root=tmp_path, save=False)
    rows = shown.summary.set_index("system")
    assert "paper's cluster" in rows.loc["Kn/K8s", "source"] and "k8s.500.csv" in rows.loc["Kn/K8s", "source"]
    assert rows.loc["Kn/Kd", "dropped_as_timeout"] == 1 and rows.loc["Dr/K8s+", "dropped_as_timeout"] == 0
    assert rows.loc["Kn/Kd", "latency_p50_ms"] == pytest.approx(150.0)
    assert rows.loc["Dr/K8s+", "latency_p50_ms"] == pytest.approx(3100.0)
    subtitle = shown.charts["fig12"].to_dict()["title"]["subtitle"]
    assert any(line.startswith("Kn/K8s (dashed): the original artifact's result, measured on the paper's cluster") for line in subtitle)
    assert set(shown.curves["system"]) == {"Kn/K8s", "Kn/Kd", "Dr/K8s+"}
