"""Control-plane binaries: find a user's directory, or build ours from the Go module proxy.

Our binaries come from two small Go modules in ``tools/``: ``tools/kube`` (a
multi-call binary holding kube-apiserver, kube-controller-manager, kube-scheduler
and etcd, hard-linked under each name) and ``tools/kwok`` (the kwok controller as a
Go tool). They are cached per version under the user cache directory and rebuilt
only when missing. A user's own directory (how Kd binaries come in) holds some or all
of the same file names; the components it lacks come from our build, and
:attr:`BinarySet.sources` says where each binary came from. ``tools/crane`` pins the
OCI registry client that pulls Kd's binaries out of its images (``kdlib.cluster.kd_images``).
``tools/loaderschedule`` (standard library only) draws the trace replay's schedule with Go's
``math/rand``, as the original's loader does; it is cached under a hash of its source.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from .. import paths
from ..errors import BinaryError
from ..log import get as get_logger

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
KUBE_COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
NODE_COMPONENTS = ("kubelet", "sleeper")  # real nodes only: built beside the control plane
log = get_logger(__name__)
# Optional, in a binary directory: {"components": {name: {"source": "where it came from", ...}}}
SOURCES_FILE = "binaries.json"


@dataclass(frozen=True)
class Versions:
    """The versions pinned by the go.mod files in ``tools/``."""

    kubernetes: str
    etcd: str
    kwok: str

    @property
    def tag(self) -> str:
        return f"k8s-{self.kubernetes}_etcd-{self.etcd}_kwok-{self.kwok}"


@dataclass(frozen=True)
class BinarySet:
    """One executable per component: from ``directory``, the rest (if any) from our build."""

    directory: Path
    paths: dict[str, Path] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)  # component -> where its binary came from

    def __getitem__(self, component: str) -> Path:
        return self.paths[component]


def pinned_versions(tools_dir: Path | None = None) -> Versions:
    """Read the pinned versions from ``tools/kube/go.mod`` and ``tools/kwok/go.mod``."""
    tools_dir = tools_dir or paths.tools_dir()

    def required(go_mod: Path, module: str) -> str:
        match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+(v\S+)", go_mod.read_text(), re.M)
        if not match:
            raise BinaryError(f"{go_mod} does not require {module}; the tools directory is damaged")
        return match.group(1)

    kube_mod, kwok_mod = tools_dir / "kube" / "go.mod", tools_dir / "kwok" / "go.mod"
    return Versions(
        kubernetes=required(kube_mod, "k8s.io/kubernetes"),
        etcd=required(kube_mod, "go.etcd.io/etcd/server/v3"),
        kwok=required(kwok_mod, "sigs.k8s.io/kwok"),
    )


def default_bin_dir(versions: Versions | None = None) -> Path:
    return paths.cache_root() / "bin" / (versions or pinned_versions()).tag


def _declared_sources(directory: Path) -> dict[str, str]:
    """The per-component sources a directory's SOURCES_FILE declares (e.g. image digests)."""
    try:
        components = json.loads((directory / SOURCES_FILE).read_text()).get("components", {})
        return {name: str(entry["source"]) for name, entry in components.items() if entry.get("source")}
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return {}


def present_components(directory: Path) -> tuple[str, ...]:
    return tuple(c for c in COMPONENTS if (Path(directory).expanduser() / c).is_file())


def check_bin_dir(directory: Path, *, fallback: BinarySet | None = None) -> BinarySet:
    """Return the binaries in ``directory``, taking those it lacks from ``fallback`` (our
    build); raise naming the first one found in neither."""
    directory = Path(directory).expanduser().resolve()
    if not directory.is_dir():
        raise BinaryError(f"binary directory {directory} does not exist")
    if not present_components(directory):
        raise BinaryError(f"{directory} holds none of {', '.join(COMPONENTS)}: give a directory with "
                          "some or all of them (ours are built for the rest)")
    declared = _declared_sources(directory)
    found, sources = {}, {}
    for component in COMPONENTS:
        path = directory / component
        if not path.is_file():
            if fallback is not None:
                found[component], sources[component] = fallback[component], fallback.sources[component]
                continue
            raise BinaryError(f"{path} is missing: the directory must hold {', '.join(COMPONENTS)}, "
                              "or some of them with ours built for the rest (`python -m kdlib build`)")
        if not os.access(path, os.X_OK):
            raise BinaryError(f"{path} is not executable: run `chmod +x {path}`")
        found[component] = path
        sources[component] = declared.get(component, f"given in {directory}")
    return BinarySet(directory=directory, paths=found, sources=sources)


def _as_built(binaries: BinarySet, versions: Versions) -> BinarySet:
    """Our build, its sources saying so."""
    def source(component: str) -> str:
        module, version = (("kwok", versions.kwok) if component == "kwok" else
                           ("kube", versions.etcd) if component == "etcd" else ("kube", versions.kubernetes))
        return f"built here from tools/{module} at {version}"

    return replace(binaries, sources={c: source(c) for c in COMPONENTS})


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise BinaryError("the Go toolchain is not on PATH; install Go >= 1.24 to build the binaries")
    return go


def _run_go(args: list[str], cwd: Path) -> None:
    goflags = f"{os.environ.get('GOFLAGS', '')} -mod=readonly -buildvcs=false".strip()
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": goflags}
    log.info("$ go %s   (in %s)", " ".join(args), cwd)
    result = subprocess.run([_go(), *args], cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-30:])
        raise BinaryError(f"go {args[0]} failed in {cwd} (exit {result.returncode}):\n{tail}")


def _kube_ldflags(versions: Versions) -> str:
    """Version strings set at link time: without them components report v0.0.0."""
    major, minor = versions.kubernetes.lstrip("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    return (f"-s -w -X {pkg}.gitVersion={versions.kubernetes} -X {pkg}.gitMajor={major} "
            f"-X {pkg}.gitMinor={minor} -X {pkg}.gitTreeState=clean")


def build_binaries(*, force: bool = False, node_binaries: bool = True) -> BinarySet:
    """Build every component into the versioned cache directory, unless already there
    (with ``node_binaries``, also the real nodes' kubelet and sleeper).

    The build goes to a temporary sibling directory that is renamed into place at the
    end, so an interrupted build never looks finished.
    """
    versions = pinned_versions()
    target = default_bin_dir(versions)
    if not force:
        try:
            found = _as_built(check_bin_dir(target), versions)
            if node_binaries:
                build_node_binaries(target)
            return found
        except BinaryError:
            pass
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp:
        staging = Path(tmp) / "bin"
        staging.mkdir()
        _run_go(["build", "-trimpath", f"-ldflags={_kube_ldflags(versions)}", "-o", str(staging / "kube"), "."],
                paths.tools_dir() / "kube")
        for component in KUBE_COMPONENTS:
            os.link(staging / "kube", staging / component)
        _run_go(["build", "-trimpath", "-ldflags=-s -w", "-o", str(staging / "kwok"), "sigs.k8s.io/kwok/cmd/kwok"],
                paths.tools_dir() / "kwok")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    log.info("built %s into %s in %.0f s", ", ".join(COMPONENTS), target, time.monotonic() - started)
    if node_binaries:
        build_node_binaries(target, force=force)
    return _as_built(check_bin_dir(target), versions)


def build_node_binaries(directory: Path, *, force: bool = False,
                        names: tuple[str, ...] = NODE_COMPONENTS) -> dict[str, Path]:
    """The kubelet (``tools/kube/kubelet``, the control plane's pins) and the sleeper
    image's program (``tools/sleeper``) in ``directory``, built if missing; ``names``
    may ask for ``kubeadm`` (``tools/kube/kubeadm``, same pins; the SSH backend's kubeadm mode).

    Each is built to a temporary name and renamed into place, so a half-built file
    never counts.
    """
    recipes = {"kubelet": (paths.tools_dir() / "kube", "./kubelet", _kube_ldflags(pinned_versions())),
               "sleeper": (paths.tools_dir() / "sleeper", ".", "-s -w"),
               "kubeadm": (paths.tools_dir() / "kube", "./kubeadm", _kube_ldflags(pinned_versions()))}
    found = {}
    for name in names:
        module, package, ldflags = recipes[name]
        path = Path(directory) / name
        if force or not (path.is_file() and os.access(path, os.X_OK)):
            partial = path.with_name(f".{name}.partial-{os.getpid()}")
            _run_go(["build", "-trimpath", f"-ldflags={ldflags}", "-o", str(partial), package], module)
            partial.replace(path)
        found[name] = path
    return found


def ensure_binaries(bin_dir: Path | None = None) -> BinarySet:
    """The user's ``bin_dir`` if given (checked, never built; ours built for the components
    it lacks), else build ours if missing. The kubelet only when a real node needs it."""
    if bin_dir is None:
        return build_binaries(node_binaries=False)
    present = present_components(Path(bin_dir))
    fallback = build_binaries(node_binaries=False) if present and len(present) < len(COMPONENTS) else None
    return check_bin_dir(Path(bin_dir), fallback=fallback)


def crane_version(tools_dir: Path | None = None) -> str:
    go_mod = (tools_dir or paths.tools_dir()) / "crane" / "go.mod"
    match = re.search(r"^\s*github\.com/google/go-containerregistry\s+(v\S+)", go_mod.read_text(), re.M)
    if not match:
        raise BinaryError(f"{go_mod} does not require go-containerregistry; the tools directory is damaged")
    return match.group(1)


def build_crane() -> Path:
    """crane (the OCI registry client of go-containerregistry) in the tool cache, built if missing."""
    target = paths.cache_root() / "bin" / f"crane-{crane_version()}" / "crane"
    if os.access(target, os.X_OK):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp:
        _run_go(["build", "-trimpath", "-ldflags=-s -w", "-o", str(Path(tmp) / "crane"),
                 "github.com/google/go-containerregistry/cmd/crane"], paths.tools_dir() / "crane")
        os.replace(Path(tmp) / "crane", target)  # atomic: a half-built crane is never found
    log.info("built crane into %s", target)
    return target


def build_loader_schedule() -> Path:
    """The trace schedule's generator (``tools/loaderschedule``) in the tool cache, built if
    missing; the cache directory is named after a hash of its source, so an edit rebuilds it."""
    module = paths.tools_dir() / "loaderschedule"
    digest = hashlib.sha256()
    for source in sorted(p for p in module.iterdir() if p.suffix == ".go" or p.name == "go.mod"):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    target = paths.cache_root() / "bin" / f"loaderschedule-{digest.hexdigest()[:12]}" / "loaderschedule"
    if os.access(target, os.X_OK):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp:
        _run_go(["build", "-trimpath", "-ldflags=-s -w", "-o", str(Path(tmp) / "loaderschedule"), "."], module)
        os.replace(Path(tmp) / "loaderschedule", target)  # atomic: a half-built binary is never found
    log.info("built loaderschedule into %s", target)
    return target


def component_versions(binaries: BinarySet) -> dict[str, str]:
    """Ask every binary for its version (provenance); unknown where it cannot tell.

    All five: the controller manager and the scheduler are exactly what Kd replaces.
    """
    versions = {}
    for component in COMPONENTS:
        try:
            out = subprocess.run([str(binaries[component]), "--version"], capture_output=True, text=True, timeout=20)
            text = (out.stdout or out.stderr).strip().splitlines()
            versions[component] = text[0] if text else "unknown"
        except (OSError, subprocess.TimeoutExpired):
            versions[component] = "unknown"
    return versions
