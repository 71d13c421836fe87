"""Every cluster kdlib made is found, named and reported truthfully (issue 19: D13, D14), without binaries.

The processes here are stand-ins only in what they run (``sleep``-like Python): the state
directories, pid files, marker, registry, lock and CLI are the real ones.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from kdlib import cli
from kdlib.cluster import local
from kdlib.cluster.local.cluster import LocalCluster
from kdlib.cluster.local.state import down_command
from kdlib.errors import ClusterBusyError
from kdlib.experiments import runner


@pytest.fixture
def roots(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLIB_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("KDLIB_SUITE_LOCK", str(tmp_path / "suite.lock"))
    return tmp_path


def _claimed(state_dir: Path) -> Path:
    LocalCluster(nodes=1, state_dir=state_dir)._claim_state_dir()
    return state_dir.resolve()


def _component(state_dir: Path, name: str) -> subprocess.Popen:
    """A live process whose command line names the state directory, recorded as component ``name``."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", str(state_dir)],
                               start_new_session=True)  # as the real components: `down` signals the session
    (state_dir / "run").mkdir(exist_ok=True)
    (state_dir / "run" / f"{name}.pid").write_text(str(process.pid))
    deadline = time.monotonic() + 10
    while str(state_dir).encode() not in Path(f"/proc/{process.pid}/cmdline").read_bytes():  # until exec'd
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return process


def test_a_state_dir_outside_the_root_is_found_by_all(roots):
    """D13: a cluster started with --state-dir elsewhere was invisible to status/down --all."""
    elsewhere = _claimed(roots / "elsewhere" / "mine")
    inside = _claimed(local.default_state_dir())
    assert set(local.clusters()) == {elsewhere, inside.resolve()}
    local.down(elsewhere)
    assert not elsewhere.exists() and local.clusters() == [inside.resolve()]


def test_the_refusal_names_the_exact_command_that_stops_that_cluster(roots):
    """D13: a second `up` said `local down`, which did nothing for a cluster elsewhere."""
    elsewhere = _claimed(roots / "elsewhere" / "mine")
    etcd = _component(elsewhere, "etcd")
    try:
        with pytest.raises(ClusterBusyError) as busy:
            LocalCluster(nodes=1, state_dir=elsewhere)._claim_state_dir()
        assert f"`python -m kdlib local down --state-dir {elsewhere}`" in str(busy.value)
        assert down_command(local.default_state_dir()) == "python -m kdlib local down"
        assert cli.main(["local", "down", "--all"]) == 0  # and --all stops it
        assert etcd.wait(timeout=20) is not None and not elsewhere.exists()
    finally:
        etcd.kill()


def test_status_reports_a_dead_component_as_not_running(roots, capsys):
    """D14: after etcd died, `local status` said "running": true."""
    state_dir = _claimed(local.default_state_dir())
    apiserver = _component(state_dir, "kube-apiserver")
    etcd = _component(state_dir, "etcd")
    etcd.kill()
    etcd.wait()
    try:
        found = local.status(state_dir)
        assert found["dead"] == ["etcd"] and not found["running"] and "kube-apiserver" in found["processes"]
        assert cli.main(["local", "status"]) == 1
        assert "etcd died" in capsys.readouterr().err
    finally:
        apiserver.kill()
        local.down(state_dir)


def test_down_all_refuses_while_a_suite_runs_unless_forced(roots, capsys):
    """D14: `down --all` stopped a running suite's cluster; the suite then blamed kwok."""
    state_dir = _claimed(local.suite_state_dir())
    with runner.suite_lock("busy-suite"):
        assert "run_id busy-suite" in runner.suite_holder()
        assert cli.main(["local", "down", "--all"]) == 1
        err = capsys.readouterr().err
        assert "run_id busy-suite" in err and "--force" in err
        assert state_dir.exists()
        assert cli.main(["local", "down", "--all", "--force"]) == 0
        assert not state_dir.exists()
    assert runner.suite_holder() is None
