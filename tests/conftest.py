"""Shared fixtures. Integration tests run against real local processes."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Iterator

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

#: Machine-wide state a test may not share with another test running at the same time, and
#: the ``xdist_group`` that keeps such tests on one worker, one after the other: a kubelet
#: (a local real node, an SSH kubelet worker, kubeadm's) changes the machine's sysctls and its
#: owner writes them back, and real nodes use this machine's containerd, CNI and cgroups.
KUBELETS_GROUP = "kubelets"
#: The VM tests emulate their VMs (QEMU TCG) and need both cores: no other test runs beside them.
EXCLUSIVE_MARKER = "vm"
#: Tests that run with no other test beside them: the vm tests, and ``alone`` (a latency bound
#: that other tests' clusters, starting on the same 2 cores, push past).
ALONE_MARKERS = (EXCLUSIVE_MARKER, "alone")


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Tests in parallel (pytest-xdist) when it is installed and ``-n`` was not given: the
    ``xdist_workers`` of pyproject.toml's pytest options. Not an ``addopts`` ``-n``, so that
    ``-p no:xdist`` (no plugin, no ``-n``) still runs the suite serially, as ``-n 0`` does.
    Whatever the worker count, the distribution keeps each ``xdist_group`` on one worker."""
    worker = getattr(config, "workerinput", None)
    if worker is not None:  # a worker parses the command line again: the distribution set here is not in it
        config.option.loadgroup = worker.get("kdlib_loadgroup", False)
        return
    if (not config.pluginmanager.hasplugin("xdist") or config.getoption("collectonly")
            or config.getoption("usepdb")):
        return
    if config.option.numprocesses is None and not config.option.tx:
        config.option.numprocesses = int(config.getini("xdist_workers"))
    if config.option.numprocesses and config.option.dist in ("no", "load"):
        config.option.dist = "loadgroup"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("xdist_workers", "pytest-xdist workers when -n is not given (0: serial)", default="0")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # node: xdist's WorkerController
    """A worker starts from the caller's environment, as the session did (not from the one the
    session made for itself), and finds the session's folder for the locks it shares."""
    node.workerinput["kdlib_inherited"] = dict(helpers.INHERITED)
    node.workerinput["kdlib_loadgroup"] = node.config.getoption("dist") == "loadgroup"
    node.workerinput["kdlib_session_root"] = str(node.config.stash[_SESSION_ROOT])


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

    worker = getattr(config, "workerinput", None)
    if worker is not None:  # an xdist worker: its environment is the controller's, made hermetic
        for name in [n for n in os.environ if n.startswith("KDLIB_") and n not in TEST_KNOBS]:
            del os.environ[name]
        os.environ.update(worker["kdlib_inherited"])
        _SHARED_ROOT[0] = Path(worker["kdlib_session_root"])
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
    if worker is None:
        _SHARED_ROOT[0] = root


def pytest_unconfigure(config: pytest.Config) -> None:
    root = config.stash.get(_SESSION_ROOT, None)
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers from where a test lives and what it needs: ``-m "not integration"`` runs the fast
    ones; the tests that start a kubelet run one after the other (:data:`KUBELETS_GROUP`)."""
    for item in items:
        path = Path(str(item.fspath))
        if "integration" in path.parts or "book" in path.parts:
            item.add_marker(pytest.mark.integration)
        if "binaries" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.needs_binaries)
        if item.get_closest_marker(EXCLUSIVE_MARKER):
            item.add_marker(pytest.mark.xdist_group(EXCLUSIVE_MARKER))
        elif item.get_closest_marker("real_nodes"):
            item.add_marker(pytest.mark.xdist_group(KUBELETS_GROUP))
        elif _shares_a_module_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
        if getattr(config.option, "loadgroup", False):
            _name_the_group(item)


#: Module-scoped fixtures that are only a temporary folder: made again on each worker for nothing.
CHEAP_MODULE_FIXTURES = frozenset({"sandbox"})


def _shares_a_module_fixture(item: pytest.Item) -> bool:
    """Whether the test uses what its module makes once (a cluster, SSH hosts, a measured run, the
    book): its module then runs on one worker, or every worker would make it again."""
    definitions = getattr(item, "_fixtureinfo", None)
    if definitions is None:
        return False
    return any(fixture.scope in ("module", "package", "class") and name not in CHEAP_MODULE_FIXTURES
               for name, fixtures in definitions.name2fixturedefs.items() for fixture in fixtures[-1:])


def _name_the_group(item: pytest.Item) -> None:
    """The ``@group`` suffix of the test's id, by which xdist's controller keeps a group on one
    worker. xdist 3.8 writes it to ``item._nodeid``, which pytest 9.2 no longer reads (its id is
    a structured ``_id``): without this, the groups were spread over the workers."""
    groups = sorted({str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                     for mark in item.iter_markers("xdist_group")})
    if groups and "@" not in item.nodeid and hasattr(item, "_id"):
        from _pytest.nodeid import NodeId

        item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(groups)}")


#: The session's folder (the controller's, in every xdist worker): where the exclusive lock is.
_SHARED_ROOT: list[Path] = [Path(tempfile.gettempdir())]
_exclusive_held: list[tuple[int, int]] = []  # (gate, lock) descriptors while an exclusive module runs


def _lock(name: str, mode: int) -> int:
    descriptor = os.open(_SHARED_ROOT[0] / name, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(descriptor, mode)
    return descriptor


def _alone(item: pytest.Item) -> bool:
    return any(item.get_closest_marker(name) for name in ALONE_MARKERS)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """A readers-writer lock across the xdist workers: a test marked ``vm`` or ``alone`` (its
    set-up, which boots the VMs, and the module's teardown included) runs alone; every other
    test holds the lock shared. Such a test first closes the gate, so no other test starts
    while it waits for the running ones to finish. Uncontended (and harmless) without xdist."""
    exclusive = _alone(item)
    shared = None
    if exclusive and not _exclusive_held:
        gate = _lock("gate.lock", fcntl.LOCK_EX)
        _exclusive_held.append((gate, _lock("tests.lock", fcntl.LOCK_EX)))
    elif not exclusive:
        os.close(_lock("gate.lock", fcntl.LOCK_SH))  # waits while a vm test waits or runs
        shared = _lock("tests.lock", fcntl.LOCK_SH)
    try:
        return (yield)
    finally:
        if shared is not None:
            os.close(shared)
        if exclusive and (nextitem is None or not _alone(nextitem)):
            for descriptor in _exclusive_held.pop():
                os.close(descriptor)


@pytest.fixture(scope="session")
def binaries():
    """Our binaries, built once if the cache lacks them (minutes on a new machine)."""
    from kdlib.cluster.binaries import build_binaries

    return build_binaries()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "cluster"
