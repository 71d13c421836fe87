"""What binds, read off a run: the limit's share, the unthrottled system's rates and CPU, real pods' cost."""

import pandas as pd

from kdlib.experiments import usage
from kdlib.experiments.microbench import analysis
from kdlib.experiments.microbench.files import RunKey
from kdlib.experiments.microbench.report import MicrobenchReport, findings


def _pods(baseline, pods, created_until, extra=()):
    rows = []
    for i in range(pods):  # created evenly; bound 10 ms later; Ready 200 ms after binding
        created = created_until * i / max(1, pods - 1)
        ready = created + 0.21 + (extra[-1][1] if extra else 0.0)
        stages = [("created", created), ("scheduled", created + 0.01), *((s, created + 0.01 + d) for s, d in extra),
                  ("ready", ready)]
        rows += [{"bench": "scale-pods", "baseline": baseline, "scale": pods, "repeat": 0, "kind": "Pod",
                  "object": f"p{i}", "stage": s, "t": t, "node": "n"} for s, t in stages]
    return rows


def _report(systems, metas):
    rows, runs = [], []
    for baseline, pods, until, total, extra in systems:
        rows += _pods(baseline, pods, until, extra)
        runs.append({"bench": "scale-pods", "run_id": "r", "name": "e2e", "baseline": baseline, "scale": pods,
                     "repeat": 0, "total_us": total * 1e6, "total_s": total, "source": "measured (kdlib)"})
    timelines, runs = pd.DataFrame(rows), pd.DataFrame(runs)
    summary = analysis.e2e_summary(runs)
    stages = analysis.stage_summary(analysis.stage_percentiles(timelines))
    suite = {"parameters": {"benches": ["scale-pods"], "baselines": [s[0] for s in systems], "backend": "local"}}
    return MicrobenchReport("r", suite, runs, summary, stages, timelines, pd.DataFrame(), "", metas)


def _usage(seconds, cpu, busy, writes=None):
    return {"usage": {"seconds": seconds, "cores": 2, "cpu_s": cpu, "machine_busy_s": busy,
                      "load_average": [2.5, 2.0, 1.5], "api_writes": writes}}


def test_the_limits_share_and_what_binds_without_it():
    metas = {RunKey("scale-pods", "k8s+u", 200): _usage(
        2.0, {"kube-apiserver": 1.6, "etcd": 0.5, "kube-controller-manager": 0.6, "kube-scheduler": 0.4,
              "kwok": 0.3, "harness": 0.3}, 3.9, {"POST pods": 200, "POST pods/binding": 200,
                                                  "PATCH pods/status": 400, "POST events": 400})}
    report = _report([("k8s+", 200, 9.5, 9.0, ()), ("k8s+u", 200, 1.0, 1.1, ())], metas)
    text = findings(report, "scale-pods")
    assert "(k8s+ − unthrottled) ÷ k8s+: N = 200: 9.00 s → 1.10 s, **88 %**" in text
    assert "--kube-api-qps=10000 --kube-api-burst=10000" in text and "qps: 10000" in text
    assert "**k8s+ (unthrottled)**, N = 200 (200 pods): p90 Ready after **1.10 s**" in text
    assert "created at **199 pods/s** and bound at **199 pods/s**" in text
    assert "kdlib's processes used 3.7 CPU-s" in text and "92 % of the cores" in text
    assert "the machine as a whole was 98 % busy" in text and "**the machine's cores bind**" in text
    assert "kdlib's largest consumer is the API server (43 % of its CPU)" in text
    # 1200 writes, 6 per pod; 2.1 CPU-s of API server and etcd: 1.75 ms per write → 2 / 0.00175 / 6 = 190 pods/s
    assert "the API server took 1200 writes (6.0 per pod" in text
    assert ("could take at most 190 pods/s on these cores, measured 100 pods/s from the scale-up to the last "
            "pod Ready (52 % of that bound)") in text  # 200 pods in 2.0 s (bound 190.5): like with like, not creation
    assert "single run" in text


def test_without_saturation_latency_binds():
    metas = {RunKey("scale-pods", "k8s+u", 50): _usage(1.0, {"kube-apiserver": 0.2, "harness": 0.1}, 0.5)}
    text = findings(_report([("k8s+u", 50, 0.1, 0.35, ())], metas), "scale-pods")
    assert "the cores were not saturated (25 % busy" in text and "latency, not throughput" in text
    assert "mostly the path to Ready" in text
    assert "(k8s+ − unthrottled)" not in text  # no k8s+ run to compare with


def test_real_node_bars_are_explained_by_the_cpu_one_pod_start_costs():
    meta = _usage(60.0, {"real nodes": 100.0, "kube-apiserver": 10.0, "harness": 5.0}, 118.0)
    meta["real_nodes"] = 2
    extra = (("sandbox", 20.0), ("started", 20.1))
    report = _report([("k8s", 200, 30.0, 52.0, extra)], {RunKey("scale-pods", "k8s", 200): meta})
    text = findings(report, "scale-pods")
    assert "**100 pods per kubelet**" in text and "20 machines: 10 per kubelet" in text
    assert "bound → sandbox started 20.00 s, sandbox → container started 0.10 s, container started → Ready 0.20 s" in text
    assert "one pod start cost **0.50 CPU-s**" in text
    assert "200 × 0.50 ÷ 2 cores = **50.0 s**" in text and "(for the p90 pod, 45.2 s), against 52.00 s" in text
    assert "**k8s here measures this machine's CPU**" in text
    assert "load average at the end 2.5" in text


def test_usage_between_two_snapshots():
    before = usage.Snapshot(10.0, {"kube-apiserver": 5.0, "real nodes/12": 1.0, "real nodes/-1": 3.0}, 2.0, 100.0,
                            {"POST pods": 10.0})
    after = usage.Snapshot(12.5, {"kube-apiserver": 6.5, "real nodes/12": 1.5, "real nodes/99": 0.25,
                                  "real nodes/-1": 4.0}, 2.5, 104.0, {"POST pods": 110.0, "POST events": 0.0})
    found = usage.between(before, after)
    assert found["seconds"] == 2.5 and found["machine_busy_s"] == 4.0
    assert found["cpu_s"] == {"kube-apiserver": 1.5, "real nodes": 1.75, "harness": 0.5}
    assert found["api_writes"] == {"POST pods": 100}


def test_api_writes_are_read_from_the_request_counter():
    text = ('# TYPE apiserver_request_total counter\n'
            'apiserver_request_total{code="201",resource="pods",subresource="",verb="POST"} 7\n'
            'apiserver_request_total{code="201",resource="pods",subresource="binding",verb="POST"} 5\n'
            'apiserver_request_total{code="200",resource="pods",subresource="",verb="LIST"} 9\n'
            'apiserver_request_total{code="409",resource="pods",subresource="",verb="POST"} 1\n')

    class Response:
        data = text.encode()

    class Api:
        def call_api(self, *args, **kwargs):
            return Response()

    assert usage.api_writes(Api()) == {"POST pods": 8.0, "POST pods/binding": 5.0}


def test_unreadable_metrics_are_none_not_an_error():
    class Api:
        def call_api(self, *args, **kwargs):
            raise OSError("refused")

    assert usage.api_writes(Api()) is None


def test_a_control_plane_on_other_hosts_is_not_judged_by_this_machines_cpu():
    metas = {RunKey("scale-pods", "k8s+u", 50): _usage(1.0, {"harness": 0.1}, 1.9)}
    text = findings(_report([("k8s+u", 50, 0.1, 0.35, ())], metas), "scale-pods")
    assert "cannot read its CPU" in text and "cores bind" not in text


def test_a_machine_saturated_by_other_processes_clouds_the_verdict():
    metas = {RunKey("scale-pods", "k8s+u", 50): _usage(1.0, {"kube-apiserver": 0.4, "harness": 0.1}, 1.9)}
    text = findings(_report([("k8s+", 50, 2.0, 1.3, ()), ("k8s+u", 50, 0.1, 1.4, ())], metas), "scale-pods")
    assert "other processes on this shared machine took **70 %** of the cores" in text
    assert "cores bind" not in text
    assert "**none** (the unthrottled run was 0.10 s slower)" in text


def test_charts_name_the_unthrottled_system_as_pages_do():
    import json

    from kdlib.experiments.microbench import plots

    report = _report([("k8s+", 50, 2.0, 1.3, ()), ("k8s+u", 50, 0.1, 0.4, ())], {})
    chart = plots.e2e_chart(report.summary, "scale-pods", ["k8s+", "k8s+u"], [50], ["test"]).to_dict()
    assert chart["layer"][0]["encoding"]["color"]["scale"]["domain"] == ["k8s+", "k8s+ (unthrottled)"]
    stages = json.dumps(plots.stage_chart(report.stages, "scale-pods", ["k8s+", "k8s+u"], ["test"]).to_dict())
    assert "k8s+ (unthrottled)" in stages and '"k8s+u"' not in stages
