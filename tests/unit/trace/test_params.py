"""Trace parameters: every problem reported before anything runs; which systems run where."""

from __future__ import annotations

import pytest

from kdlib.errors import ConfigError
from kdlib.experiments.trace.params import AS_SHIPPED, FILE_KEYS, SYSTEMS, TraceParams, plan
from kdlib.params import problems_of


def test_every_problem_at_once():
    with pytest.raises(ConfigError) as error:
        TraceParams(run_id=None, minutes=0, systems=("Dr/X",), target_concurrency=0, quiet_idle_pct=120,
                    quiet_max_wait_s=-1, subset="last")
    message = str(error.value)
    for part in ("run_id", "minutes", "unknown system", "target_concurrency", "quiet_idle_pct", "quiet_max_wait_s",
                 "subset"):
        assert part in message


def test_plan_says_why_a_system_is_not_measured(tmp_path):
    run, skipped, reference = plan(TraceParams(run_id="x"))
    assert run == ["Dr/K8s+", AS_SHIPPED] and reference == []
    assert "Knative" in skipped["Kn/K8s"] and "kd_bin_dir" in skipped["Dr/Kd+"] and "dirigent_csv" in skipped["Dirigent"]
    from .test_reference import write_csv

    csv = write_csv(tmp_path / "d.csv")  # its header is checked before anything runs
    run, skipped, reference = plan(TraceParams(run_id="x", kd_bin_dir=tmp_path, dirigent_csv=csv))
    assert run == ["Dr/K8s+", AS_SHIPPED, "Dr/Kd+"] and reference == ["Dirigent"]


def test_both_autoscaler_configurations_are_systems_of_one_run():
    """Dr/K8s+ runs the Dirigent configuration as Dr/Kd+ does; Dr/K8s+ (as shipped) runs the
    original's k8s+ configuration (the Knative one: target unset, so 100; scale from zero on the tick)."""
    params = TraceParams(run_id="x", target_concurrency=2)
    assert {"Dr/K8s+", AS_SHIPPED, "Dr/Kd+"} <= set(params.systems)
    same, shipped, kd = (params.kpa_for(s) for s in ("Dr/K8s+", AS_SHIPPED, "Dr/Kd+"))
    assert same == kd and same.target_concurrency == 2 and same.scale_from_zero_at_once
    assert shipped.target_concurrency == 100 and not shipped.scale_from_zero_at_once
    assert shipped.tick_s == same.tick_s and shipped.stable_window_s == same.stable_window_s
    assert SYSTEMS[AS_SHIPPED].figure == 13 and SYSTEMS[AS_SHIPPED].dispatch_timeout_s == 300
    for key in FILE_KEYS.values():  # they name files
        assert "/" not in key and " " not in key
    assert len(set(FILE_KEYS.values())) == len(FILE_KEYS) and set(FILE_KEYS) == set(SYSTEMS)


def test_timeouts():
    same = TraceParams(run_id="x")
    assert same.timeout_for("Dr/K8s+") == 300 and same.timeout_for("Dr/Kd+") == 30
    assert TraceParams(run_id="x", timeouts={"Dr/K8s+": 5}).timeout_for("Dr/K8s+") == 5


def test_ssh_backend_needs_an_inventory_with_kwok_workers(tmp_path):
    import yaml

    key = tmp_path / "key"
    key.write_text("not used: nothing connects")
    hosts = {"cluster": "a", "key": str(key), "control_plane": {"name": "cp", "address": "10.1.1.1"}}
    kubeadm = tmp_path / "kubeadm.yaml"
    kubeadm.write_text(yaml.safe_dump({**hosts, "mode": "kubeadm",
                                       "workers": [{"name": "w", "address": "10.1.1.2", "kubelet": True}]}))
    kwok = tmp_path / "kwok.yaml"
    kwok.write_text(yaml.safe_dump({**hosts, "workers": [{"name": "w", "address": "10.1.1.2", "kwok_nodes": 4}]}))
    assert problems_of(TraceParams, run_id="x", backend="ssh", inventory=kwok) == []
    assert problems_of(TraceParams, run_id="x", backend="ssh") == [
        "inventory: required with backend 'ssh': the YAML file naming the hosts (see `kdlib ssh check`)"]
    assert problems_of(TraceParams, run_id="x", backend="ssh", inventory=kubeadm) == [
        f"inventory: {kubeadm}: the trace runs on kwok nodes: it needs mode binaries and a worker with kwok_nodes"]
    assert problems_of(TraceParams, run_id="x", inventory=kwok) == [
        "inventory: only the 'ssh' backend uses one, not 'local'"]
