"""The trace on a real local cluster when things break (issue 19): a dead etcd (D8), a SIGKILLed
owner (D6, D7), and clusters elsewhere, dead components and `down --all` during a suite (D13, D14)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from kdlib.experiments.trace import run as trace_run

from ..helpers import REPO, assert_clean, our_processes, read_stderr_until, run_kdlib, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.needs_binaries]

SCRIPT = """
import sys
from pathlib import Path
from kdlib.experiments.trace import params, run
run.run_trace(params.TraceParams(run_id=sys.argv[2], functions=20, minutes=3, warmup_minutes=1, nodes=2,
                                 systems=("Dr/K8s+",)), root=Path(sys.argv[1]))
"""


@pytest.fixture
def sandbox(tmp_path):
    env = {**os.environ, "KDLIB_RESULTS_DIR": str(tmp_path / "results"), "KDLIB_STATE_DIR": str(tmp_path / "state"),
           "KDLIB_SUITE_LOCK": str(tmp_path / "suite.lock")}
    return tmp_path, env


def _replaying(root: Path, env: dict, run_id: str) -> tuple[subprocess.Popen, list[str]]:
    """A trace run in a child process, returned once its replay has begun (and what it printed)."""
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(root / "results"), run_id], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, [read_stderr_until(proc, "replaying")]


@pytest.mark.destructive
def test_a_dead_etcd_is_named_within_seconds_and_the_run_fails(binaries, sandbox):
    """D8: the replay went on with 504s for 753 s and the run was recorded finished."""
    root, env = sandbox
    proc, seen = _replaying(root, env, "etcd-dies")
    time.sleep(3)
    state = root / "state" / "suite"
    ports = json.loads((state / "cluster.json").read_text())["ports"]
    killed_at = time.monotonic()
    os.kill(int((state / "run" / "etcd.pid").read_text()), signal.SIGKILL)
    _, err = proc.communicate(timeout=180)
    assert proc.returncode != 0
    assert time.monotonic() - killed_at < 60, "the dead etcd was not named within seconds"
    assert "ComponentError" in err and "etcd" in err
    directory = trace_run.run_dir("etcd-dies", root / "results")
    record = trace_run.load_run("etcd-dies", root / "results")
    assert record["state"] == "failed" and "etcd" in record["attempts"][-1]["reason"]
    assert "etcd" in record["failed"]["Dr/K8s+"]
    assert not trace_run.log_path(directory, "Dr/K8s+").exists()
    assert (trace_run.logs_dir(directory, "Dr/K8s+") / "etcd.log").is_file()  # the evidence is kept
    assert_clean(state, ports)


def _files_holding(content: bytes, where: Path) -> list[Path]:
    found = []
    for path in where.iterdir():
        try:
            if path.is_file() and path.stat().st_size == len(content) and path.read_bytes() == content:
                found.append(path)
        except OSError:
            continue
    return found


@pytest.mark.destructive
def test_kill_9_mid_replay_reads_as_killed_and_leaves_no_credential_in_tmp(binaries, sandbox):
    """D6: run.json said `running` forever; D7: the CA, admin cert and admin key stayed in /tmp."""
    root, env = sandbox
    proc, _ = _replaying(root, env, "killed")
    state = root / "state" / "suite"
    secrets = [(state / "pki" / name).read_bytes() for name in ("admin.key", "admin.crt", "ca.crt")]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    record = trace_run.load_run("killed", root / "results")
    assert record["state"] == "killed" and record["attempts"][-1]["state"] == "killed"
    tmp = Path(tempfile.gettempdir())
    for secret in secrets:
        assert _files_holding(secret, tmp) == []
    done = run_kdlib("local", "down", "--all", env=env)
    assert done.returncode == 0, done.stderr
    assert our_processes(state) == [] and not state.exists()


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.destructive
def test_a_cluster_elsewhere_is_found_and_a_dead_etcd_is_reported(binaries, tmp_path):
    """D13: a --state-dir cluster outside the state root was invisible to --all and the refusal named
    the wrong command; D14: `status` said running after etcd died; `down --all` stopped a suite's cluster."""
    env = {**os.environ, "KDLIB_STATE_DIR": str(tmp_path / "state"), "KDLIB_SUITE_LOCK": str(tmp_path / "lock")}
    elsewhere = tmp_path / "elsewhere"
    up = run_kdlib("local", "up", "--nodes", "2", "--state-dir", str(elsewhere), env=env)
    assert up.returncode == 0, up.stderr
    try:
        listed = run_kdlib("local", "status", "--all", env=env)
        assert [c["state_dir"] for c in json.loads(listed.stdout)] == [str(elsewhere)]
        again = run_kdlib("local", "up", "--nodes", "2", "--state-dir", str(elsewhere), env=env)
        assert again.returncode == 1 and f"python -m kdlib local down --state-dir {elsewhere}" in again.stderr
        etcd_pid = int((elsewhere / "run" / "etcd.pid").read_text())
        os.kill(etcd_pid, signal.SIGKILL)
        wait_until(lambda: not Path(f"/proc/{etcd_pid}").exists() or _zombie(etcd_pid), 10, "etcd to die")
        status = run_kdlib("local", "status", "--state-dir", str(elsewhere), env=env)
        found = json.loads(status.stdout)
        # etcd is named; the controller manager may follow it (it exits when it loses its lease)
        assert status.returncode == 1 and found["running"] is False and "etcd" in found["dead"]
        assert set(found["dead"]) <= {"etcd", "kube-controller-manager", "kube-scheduler"}, found["dead"]
        holder = subprocess.Popen([sys.executable, "-c", "import time\nfrom kdlib.experiments.runner import "
                                   "suite_lock\nwith suite_lock('busy'):\n    print('locked', flush=True)\n"
                                   "    time.sleep(60)"], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "locked"
            refused = run_kdlib("local", "down", "--all", env=env)
            assert refused.returncode == 1 and "run_id busy" in refused.stderr and elsewhere.exists()
        finally:
            holder.kill()
            holder.wait()
    finally:
        down = run_kdlib("local", "down", "--all", env=env)
    assert down.returncode == 0, down.stderr
    assert our_processes(elsewhere) == [] and not elsewhere.exists()
