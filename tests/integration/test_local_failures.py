"""Failures of the local cluster are reported clearly and leave nothing behind."""

from __future__ import annotations

import socket

import os

import pytest

from kdlib import LocalCluster
from kdlib.cluster.binaries import COMPONENTS
from kdlib.cluster.local import down, status
from kdlib.errors import ComponentError

from ..helpers import assert_clean, our_processes, run_kdlib

FAILING_APISERVER = """#!/bin/sh
echo "starting a broken apiserver"
echo "error: invalid flag combination (simulated failure)" >&2
exit 1
"""


@pytest.fixture
def broken_bin_dir(binaries, tmp_path):
    """Our real binaries, except an apiserver that dies at once."""
    directory = tmp_path / "bin"
    directory.mkdir()
    for component in COMPONENTS:
        if component != "kube-apiserver":
            os.symlink(binaries[component], directory / component)
    script = directory / "kube-apiserver"
    script.write_text(FAILING_APISERVER)
    script.chmod(0o755)
    return directory


def test_component_dying_at_start_is_reported_with_its_log(broken_bin_dir, state_dir):
    cluster = LocalCluster(nodes=1, state_dir=state_dir, bin_dir=broken_bin_dir)
    with pytest.raises(ComponentError) as raised:
        cluster.start()
    message = str(raised.value)
    assert message.startswith("kube-apiserver: exited during start-up")
    assert "invalid flag combination (simulated failure)" in message
    assert_clean(state_dir, None)


def test_cli_reports_the_dead_component_and_leaves_nothing(broken_bin_dir, state_dir):
    result = run_kdlib("local", "up", "--nodes", "1", "--bin-dir", str(broken_bin_dir),
                       "--state-dir", str(state_dir))
    assert result.returncode == 1
    assert "kdlib: error: kube-apiserver: exited during start-up" in result.stderr
    assert "simulated failure" in result.stderr
    assert_clean(state_dir, None)


def test_exception_inside_the_block_still_cleans_up(binaries, state_dir):
    with pytest.raises(RuntimeError, match="experiment broke"):
        with LocalCluster(nodes=1, state_dir=state_dir):
            ports = status(state_dir)["ports"]
            raise RuntimeError("experiment broke")
    assert_clean(state_dir, ports)


def test_down_keep_leaves_only_the_logs(binaries, state_dir):
    LocalCluster(nodes=1, state_dir=state_dir).start()
    down(state_dir, keep_logs=True)
    assert our_processes(state_dir) == []
    assert sorted(p.name for p in state_dir.iterdir()) == [".kdlib-cluster", "logs"]  # the marker: ours
    assert (state_dir / "logs" / "kube-apiserver.log").stat().st_size > 0
    down(state_dir)
    assert not state_dir.exists()


def test_using_a_closed_cluster_is_a_clear_error(binaries, state_dir):
    from kdlib.errors import ClusterStateError

    cluster = LocalCluster(nodes=1, state_dir=state_dir)
    with pytest.raises(ClusterStateError, match="new, not running"):
        _ = cluster.kubeconfig
    with cluster:
        assert cluster.kubeconfig.is_file()
    with pytest.raises(ClusterStateError, match="closed, not running"):
        cluster.api_client()
    with pytest.raises(ClusterStateError, match="starts once"):
        cluster.start()


def test_a_directory_kdlib_did_not_make_is_never_deleted(tmp_path):
    mine = tmp_path / "v"
    (mine / "sub").mkdir(parents=True)
    (mine / "sub" / "notes.txt").write_text("x")
    down_result = run_kdlib("local", "down", "--state-dir", str(mine))
    assert down_result.returncode == 1 and "not made by kdlib" in down_result.stderr
    up_result = run_kdlib("local", "up", "--nodes", "1", "--state-dir", str(mine))
    assert up_result.returncode == 1 and "not made by kdlib" in up_result.stderr
    assert (mine / "sub" / "notes.txt").read_text() == "x"


def test_cli_taken_port_leaves_nothing(binaries, state_dir):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_kdlib("local", "up", "--apiserver-port", str(port), "--state-dir", str(state_dir))
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not state_dir.exists() and our_processes(state_dir) == []
