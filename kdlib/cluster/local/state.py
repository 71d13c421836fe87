"""A local cluster's state directory, from its files alone: where it is, which ones kdlib made,
what runs there (:func:`status`) and its removal (:func:`down`).

Everything here works without the :class:`~.cluster.LocalCluster` that made the directory,
so it also handles a cluster whose owner process was killed; :func:`clusters` finds every
cluster kdlib started on this machine (``local up``'s and the suites'). kdlib removes only
directories it made: each state directory carries a marker file written at creation, and
a directory without it is refused, never deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import socket
from pathlib import Path
from typing import Any

from ... import paths
from ...errors import ClusterError
from ...log import get as get_logger
from ..controlplane.components import START_ORDER
from ..marker import MARKER, is_ours
from . import realnodes
from .processes import Processes

LOOPBACK = "127.0.0.1"
MANIFEST = "cluster.json"
OWNER = "owner.pid"
log = get_logger(__name__)


def default_state_dir() -> Path:
    """``local up``'s cluster: ``<state root>/local`` (see :func:`kdlib.paths.state_root`)."""
    return paths.state_root() / "local"


def suite_state_dir() -> Path:
    """The experiment suites' cluster, apart from one started by ``local up``."""
    return paths.state_root() / "suite"


REGISTRY = "elsewhere"  # under the state root: one file per cluster whose state directory is outside it


def _registry_entry(state_dir: Path) -> Path:
    return paths.state_root() / REGISTRY / hashlib.sha256(str(state_dir).encode()).hexdigest()[:16]


def register(state_dir: Path) -> None:
    """Remember a state directory outside the state root, so that ``--all`` finds it."""
    root = paths.state_root().expanduser().resolve()
    if state_dir.parent == root:
        return
    entry = _registry_entry(state_dir)
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_text(str(state_dir) + "\n")


def unregister(state_dir: Path) -> None:
    _registry_entry(state_dir).unlink(missing_ok=True)


def clusters() -> list[Path]:
    """The state directories of every cluster kdlib made: those under the state root, and
    those elsewhere (``--state-dir``) that it registered when it made them."""
    root = paths.state_root()
    found = {d.resolve() for d in root.iterdir() if d.is_dir() and is_ours(d)} if root.is_dir() else set()
    registry = root / REGISTRY
    for entry in sorted(registry.iterdir()) if registry.is_dir() else []:
        state_dir = Path(entry.read_text().strip())
        if is_ours(state_dir):
            found.add(state_dir)
        else:  # stopped and removed by hand, or never finished: forget it
            entry.unlink(missing_ok=True)
    return sorted(found)


def down_command(state_dir: Path) -> str:
    """The exact command that stops the cluster in ``state_dir``."""
    if Path(state_dir).resolve() == default_state_dir().expanduser().resolve():
        return "python -m kdlib local down"
    return f"python -m kdlib local down --state-dir {shlex.quote(str(state_dir))}"


def port_is_free(port: int) -> bool:
    """True when nothing listens on the loopback port (connections in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_port(taken: set[int]) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port = sock.getsockname()[1]
        if port not in taken:
            return port


def _read_manifest(state_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(state_dir) / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def status(state_dir: Path | str | None = None) -> dict[str, Any]:
    """What runs in ``state_dir``: live processes, kubeconfig, nodes, ports."""
    state_dir = Path(state_dir or default_state_dir()).expanduser().resolve()
    manifest = _read_manifest(state_dir)
    tracked = Processes(state_dir)
    processes = tracked.pids()
    owner = _owner_pid(state_dir)
    # A component with a pid file but no live process died (its pid file stays until `down`);
    # while the owner still starts the cluster, a component may be between fork and exec.
    dead = [] if owner is not None else sorted(n for n in START_ORDER if tracked.pid(n) is not None
                                                and n not in processes)
    if owner is not None:
        processes = {"owner": owner, **processes}
    return {
        "state_dir": str(state_dir),
        "exists": state_dir.exists(),
        "running": bool(processes) and not dead,
        "processes": processes,
        "dead": dead,
        "complete": set(START_ORDER) <= set(processes),
        "stop_with": down_command(state_dir),
        **{k: manifest.get(k) for k in ("kubeconfig", "ports", "nodes", "real_nodes", "kd", "versions",
                                        "started_at")},
    }


def _owner_pid(state_dir: Path) -> int | None:
    """The pid of a kdlib process still starting a cluster here, if any."""
    try:
        pid = int((state_dir / OWNER).read_text())
    except (OSError, ValueError):
        return None
    if pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    return pid


def down(state_dir: Path | str | None = None, *, keep_logs: bool = False, timeout: float = 10.0,
         processes: Processes | None = None) -> dict[str, Any]:
    """Stop every process of the cluster in ``state_dir`` and remove the directory.

    Works from the files alone, so it also clears a cluster whose owner was killed.
    With ``keep_logs`` the ``logs/`` folder stays. The owner passes its ``processes``,
    which also knows children that have not yet exec'd. Returns what was done.
    """
    state_dir = Path(state_dir or default_state_dir()).expanduser().resolve()
    if state_dir.exists() and not is_ours(state_dir):
        raise ClusterError(f"{state_dir} was not made by kdlib (it has no {MARKER} file): refusing to touch it")
    manifest = _read_manifest(state_dir)
    processes = processes or Processes(state_dir)
    running = processes.pids()
    nodes_error = None
    try:  # real nodes first, while their kubelets still reach the apiserver
        realnodes.teardown(state_dir, processes, timeout)
    except ClusterError as error:
        nodes_error = error
    killed = processes.stop([n for n in reversed(START_ORDER) if n in running] +
                            [n for n in running if n not in START_ORDER], timeout=timeout)
    if killed:
        log.warning("had to SIGKILL: %s", ", ".join(killed))
    try:  # the bridge only once the apiserver listening on it has stopped
        restored = realnodes.remove_network(state_dir)
        if restored:
            log.info("restored sysctls: %s", restored)
    except ClusterError as error:
        nodes_error = nodes_error or error
    if nodes_error is not None:  # the state directory stays: `down` can try again
        raise nodes_error
    unregister(state_dir)
    if state_dir.exists():
        if keep_logs:
            for child in state_dir.iterdir():
                if child.name not in ("logs", MARKER):
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        else:
            shutil.rmtree(state_dir)
    busy = [p for p in (manifest.get("ports") or {}).values() if not port_is_free(p)]
    if busy:
        raise ClusterError(f"ports still in use after stopping the cluster: {busy}")
    if running:
        log.info("stopped %s", ", ".join(running))
    return {"stopped": sorted(running), "killed": killed, "state_dir": str(state_dir),
            "logs_kept": keep_logs and state_dir.exists()}

