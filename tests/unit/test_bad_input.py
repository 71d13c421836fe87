"""Bad input gives a one-line error that says what to do, and leaves nothing running."""


import pytest

from kdlib import LocalCluster
from kdlib.cluster.binaries import check_bin_dir
from kdlib.errors import BinaryError, ConfigError

from ..helpers import our_processes, run_kdlib


@pytest.mark.parametrize("nodes", ["0", "-3", "x"])
def test_cli_rejects_nonpositive_nodes(nodes, state_dir):
    result = run_kdlib("local", "up", "--nodes", nodes, "--state-dir", str(state_dir))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "--nodes" in result.stderr and "--help" in result.stderr
    assert not state_dir.exists()


def test_cli_rejects_unknown_flag(state_dir):
    result = run_kdlib("local", "up", "--nodez", "3", "--state-dir", str(state_dir))
    assert result.returncode == 2
    assert "unrecognized arguments: --nodez" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("nodes", [0, -1, 2.5, True])
def test_api_rejects_bad_nodes(nodes):
    with pytest.raises(ConfigError, match="positive integer"):
        LocalCluster(nodes=nodes)


def test_kd_needs_a_bin_dir():
    with pytest.raises(ConfigError, match="bin_dir"):
        LocalCluster(nodes=1, kd=True)


def test_missing_binary_is_named(tmp_path):
    for name in ("etcd", "kube-apiserver"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    with pytest.raises(BinaryError, match="kube-controller-manager is missing"):
        check_bin_dir(tmp_path)


def test_non_executable_binary_is_named(tmp_path):
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    (tmp_path / "kwok").chmod(0o644)
    with pytest.raises(BinaryError, match=r"kwok is not executable: run `chmod \+x"):
        check_bin_dir(tmp_path)


def test_cli_missing_binaries_leave_nothing(tmp_path, state_dir):
    result = run_kdlib("local", "up", "--bin-dir", str(tmp_path), "--state-dir", str(state_dir))
    assert result.returncode == 1
    assert result.stderr.strip() == f"kdlib: error: {tmp_path} holds none of " \
        "etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok: give a directory with " \
        "some or all of them (ours are built for the rest)"
    assert not state_dir.exists() and our_processes(state_dir) == []


def test_cli_rejects_port_out_of_range(state_dir):
    result = run_kdlib("local", "up", "--apiserver-port", "70000", "--state-dir", str(state_dir))
    assert result.returncode == 2 and "1..65535" in result.stderr
