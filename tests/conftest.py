"""Shared fixtures. Integration tests run against real local processes."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

# The tests share a busy machine: no run waits for a quiet one (one short look is still
# recorded). Inherited by the notebooks and CLIs the tests start. Real runs wait (the default).
os.environ.setdefault("KDLIB_QUIET_MAX_WAIT_S", "0")

from .helpers import REPO, assert_clean, our_processes, run_kdlib  # noqa: F401  (re-exported for the tests)

# Started in the background by a non-interactive shell (`bash .ci/run &`, nohup), a process
# inherits SIGINT ignored, and Python then never installs its Ctrl-C handler: the tests that
# press Ctrl-C on kdlib (and the owners they start) would see nothing. Take it back.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers from where a test lives and what it needs: ``-m "not integration"`` runs the fast ones."""
    for item in items:
        path = Path(str(item.fspath))
        if "integration" in path.parts or "book" in path.parts:
            item.add_marker(pytest.mark.integration)
        if "binaries" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.needs_binaries)


@pytest.fixture(scope="session")
def binaries():
    """Our binaries, built once if the cache lacks them (minutes on a new machine)."""
    from kdlib.cluster.binaries import build_binaries

    return build_binaries()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "cluster"
