"""Shared fixtures. Integration tests run against real local processes."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from . import helpers
from .helpers import REPO, assert_clean, our_processes, run_kdlib  # noqa: F401  (re-exported for the tests)

#: ``KDLIB_*`` variables that configure the test fixtures themselves and pass through.
TEST_KNOBS = ("KDLIB_TEST_NET_PREFIX",)

# Started in the background by a non-interactive shell (`bash .ci/run &`, nohup), a process
# inherits SIGINT ignored, and Python then never installs its Ctrl-C handler: the tests that
# press Ctrl-C on kdlib (and the owners they start) would see nothing. Take it back.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


_SESSION_ROOT = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    """A hermetic environment for the whole session, before any test module is imported.

    Every ``KDLIB_*`` variable of the caller's shell is dropped (but the tests' own knobs):
    the suite lock, the state root (clusters, their registry), the cache and the results
    root point into one temporary folder of this session, so the tests never take a real
    run's suite lock, never see its clusters, Kd binaries fetched by ``kd fetch`` or
    results, and two sessions on one machine do not meet. The cache holds only a link to
    the built binaries (``bin/``: content-addressed build products, shared, not rebuilt).
    Inherited by every CLI, owner script and notebook the tests start."""
    from kdlib import paths

    built = paths.cache_root() / "bin"  # where this machine's binaries are (before the cache moves)
    helpers.INHERITED.update({k: v for k, v in os.environ.items() if k.startswith("KDLIB_")})
    for name in list(os.environ):
        if name.startswith("KDLIB_") and name not in TEST_KNOBS:
            del os.environ[name]
    root = Path(tempfile.mkdtemp(prefix="kdlib-tests-"))
    (root / "cache").mkdir()
    (root / "cache" / "bin").symlink_to(built, target_is_directory=True)
    built.mkdir(parents=True, exist_ok=True)  # a first build goes there, through the link
    os.environ.update({
        "KDLIB_SUITE_LOCK": str(root / "suite.lock"),
        "KDLIB_STATE_DIR": str(root / "state"),
        "KDLIB_CACHE_DIR": str(root / "cache"),
        "KDLIB_RESULTS_DIR": str(root / "results"),
        # The tests share a busy machine: no run waits for a quiet one (one short look is
        # still recorded). Real runs wait (the default).
        "KDLIB_QUIET_MAX_WAIT_S": "0",
    })
    config.stash[_SESSION_ROOT] = root


def pytest_unconfigure(config: pytest.Config) -> None:
    root = config.stash.get(_SESSION_ROOT, None)
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)


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
