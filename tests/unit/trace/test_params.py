"""Trace parameters: every problem reported before anything runs; which systems run where."""

from __future__ import annotations

import pytest

from kdlib.errors import ConfigError
from kdlib.experiments.trace.params import TraceParams, plan


def test_every_problem_at_once():
    with pytest.raises(ConfigError) as error:
        TraceParams(run_id=None, minutes=0, systems=("Dr/X",), target_concurrency=0, kpa_mode="odd",
                    subset="last").validate()
    message = str(error.value)
    for part in ("run_id", "minutes", "unknown system", "target_concurrency", "kpa_mode", "subset"):
        assert part in message


def test_plan_says_why_a_system_is_not_measured(tmp_path):
    run, skipped, reference = plan(TraceParams(run_id="x"))
    assert run == ["Dr/K8s+"] and reference == []
    assert "Knative" in skipped["Kn/K8s"] and "kd_bin_dir" in skipped["Dr/Kd+"] and "dirigent_csv" in skipped["Dirigent"]
    csv = tmp_path / "d.csv"
    csv.write_text("x")
    run, skipped, reference = plan(TraceParams(run_id="x", kd_bin_dir=tmp_path, dirigent_csv=csv))
    assert run == ["Dr/K8s+", "Dr/Kd+"] and reference == ["Dirigent"]


def test_kpa_modes_and_timeouts():
    same = TraceParams(run_id="x")
    assert same.kpa_for("Dr/K8s+").target_concurrency == same.kpa_for("Dr/Kd+").target_concurrency == 1
    shipped = TraceParams(run_id="x", kpa_mode="as-shipped")
    assert shipped.kpa_for("Dr/K8s+").target_concurrency == 100 and shipped.kpa_for("Dr/Kd+").target_concurrency == 1
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
    assert TraceParams(run_id="x", backend="ssh", inventory=kwok).problems() == []
    assert TraceParams(run_id="x", backend="ssh").problems() == [
        "inventory: required with backend 'ssh': the YAML file naming the hosts (see `kdlib ssh check`)"]
    assert TraceParams(run_id="x", backend="ssh", inventory=kubeadm).problems() == [
        f"inventory: {kubeadm}: the trace runs on kwok nodes: it needs mode binaries and a worker with kwok_nodes"]
    assert TraceParams(run_id="x", inventory=kwok).problems() == [
        "inventory: only the 'ssh' backend uses one, not 'local'"]
