"""Suite parameters are validated before anything is provisioned; the plan says what is not measured."""

import pytest

from kdlib.errors import ConfigError
from kdlib.experiments.microbench import BENCHES, SuiteParams, plan
from kdlib.params import problems_of


def test_defaults_are_valid_with_a_run_id():
    assert SuiteParams(run_id="r1")


@pytest.mark.parametrize("run_id", [None, "", "a/b", "a b", "-x", "../up"])
def test_bad_run_ids(run_id):
    with pytest.raises(ConfigError, match="run_id"):
        SuiteParams(run_id=run_id)


def test_every_problem_is_reported_at_once():
    problems = problems_of(SuiteParams, run_id="a b", benches=("scale-pods", "scale-pots"), baselines=("k8s+", "k9s"),
                           scale_pods=(10, 0, -1), nodes=0, repeats=0, settle_s=-1, backend="cloud")
    joined = "\n".join(problems)
    for expected in ("run_id: 'a b'", "benches[1]: unknown bench 'scale-pots'", "baselines[1]: unknown baseline 'k9s'",
                     "scale_pods[1]: 0 is not", "scale_pods[2]: -1 is not", "nodes: 0", "repeats: 0", "settle_s: -1",
                     "backend: 'cloud'"):
        assert expected in joined
    assert len(problems) == 9


def test_ssh_backend_is_refused_clearly():
    with pytest.raises(ConfigError, match="ssh"):
        SuiteParams(run_id="r", backend="ssh")


def test_plan_on_local_without_kd():
    items, skipped = plan(SuiteParams(run_id="r", scale_pods=(5,), scale_funcs=(3,), scale_nodes=(2,), repeats=2,
                                      real_nodes=0))
    assert set(skipped) == {"k8s", "kd", "kd+"}
    assert "real kubelets" in skipped["k8s"] and "Kd binaries" in skipped["kd+"]
    runs = [("scale-pods", 5, 0), ("scale-pods", 5, 1), ("scale-funcs", 3, 0), ("scale-funcs", 3, 1),
            ("scale-nodes", 2, 0), ("scale-nodes", 2, 1)]
    assert [(i.baseline, i.bench, i.scale, i.repeat) for i in items] == [
        *(("k8s+", *run) for run in runs), *(("k8s+u", *run) for run in runs)]


def test_plan_with_kd_binaries_adds_kd_plus(tmp_path):
    items, skipped = plan(SuiteParams(run_id="r", benches=("scale-pods",), scale_pods=(5,), kd_bin_dir=tmp_path,
                                      real_nodes=0))
    assert [i.baseline for i in items] == ["k8s+", "k8s+u", "kd+"]  # the notebook's (and reference run's) order
    assert set(skipped) == {"k8s", "kd"}


def test_the_unthrottled_baseline_gets_a_cluster_of_its_own():
    from kdlib.experiments.microbench.suite import _clusters

    clusters = _clusters(SuiteParams(run_id="r", baselines=("k8s+", "k8s+u")))
    assert set(clusters) == {"vanilla", "vanilla-unthrottled"}
    assert not clusters["vanilla"].unthrottled and clusters["vanilla-unthrottled"].unthrottled
    assert set(_clusters(SuiteParams(run_id="r", baselines=("k8s+",)))) == {"vanilla"}
    # With real nodes for k8s, k8s+u runs beside the same idle kubelets as k8s+: only the limit differs.
    from kdlib.cluster.local.hostnet import why_not_real_nodes

    if why_not_real_nodes() is None:
        clusters = _clusters(SuiteParams(run_id="r", baselines=("k8s", "k8s+", "k8s+u"), real_nodes=2))
        assert clusters["vanilla"].real_nodes == clusters["vanilla-unthrottled"].real_nodes == 2


def test_workloads():
    assert BENCHES["scale-pods"].workload(100).pods == 100
    funcs = BENCHES["scale-funcs"].workload(50)
    assert (funcs.deployments, funcs.replicas) == (50, 1)
    nodes = BENCHES["scale-nodes"].workload(500)
    assert (nodes.nodes, nodes.pods) == (500, 2500)


def test_a_single_value_where_a_list_is_expected():
    params = SuiteParams(run_id="r", benches="scale-pods", scale_pods=20, baselines="k8s+")
    assert params.benches == ("scale-pods",) and params.scales_for("scale-pods") == (20,)
    assert params.baselines == ("k8s+",)


@pytest.mark.parametrize("kwargs, message", [
    ({"run_id": "x" * 300}, "at most 100"),
    ({"run_id": "r", "scale_pods": [10**9]}, "at most 20000"),
    ({"run_id": "r", "scale_nodes": [100000]}, "at most 5000"),
    ({"run_id": "r", "nodes": 100000}, "nodes: 100000 is more than"),
    ({"run_id": "r", "artifact_scales": True, "scale_pods": [5]}, "not both"),
])
def test_what_this_machine_cannot_hold_is_refused_before_anything_runs(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        SuiteParams(**kwargs)


def test_artifact_scales_come_from_the_bench_spec():
    params = SuiteParams(run_id="r", artifact_scales=True)
    assert {b: params.scales_for(b) for b in BENCHES} == {b: s.artifact_scales for b, s in BENCHES.items()}


def test_figure_11_compares_only_what_the_paper_ran_and_k8s_plus():
    items, _ = plan(SuiteParams(run_id="r", benches=("scale-nodes",), scale_nodes=(2,)))
    assert {i.baseline for i in items} == {"k8s+", "k8s+u"}
    assert BENCHES["scale-nodes"].baselines == ("k8s+", "k8s+u", "kd+")
