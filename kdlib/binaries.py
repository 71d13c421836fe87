"""Control-plane binaries: find a user's directory, or build ours from the Go module proxy.

Our binaries come from two small Go modules in ``tools/``: ``tools/kube`` (a
multi-call binary holding kube-apiserver, kube-controller-manager, kube-scheduler
and etcd, hard-linked under each name) and ``tools/kwok`` (the kwok controller as a
Go tool). They are cached per version under the user cache directory and rebuilt
only when missing. A user's own directory (how Kd binaries come in) must hold the
same file names.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import BinaryError

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
KUBE_COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
NODE_COMPONENTS = ("kubelet", "sleeper")  # real nodes only: built beside the control plane
TOOLS_DIR = Path(__file__).resolve().parent.parent / "tools"


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
    """A directory holding one executable per component."""

    directory: Path
    built_here: bool
    paths: dict[str, Path] = field(default_factory=dict)

    def __getitem__(self, component: str) -> Path:
        return self.paths[component]


def pinned_versions(tools_dir: Path = TOOLS_DIR) -> Versions:
    """Read the pinned versions from ``tools/kube/go.mod`` and ``tools/kwok/go.mod``."""

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


def cache_root() -> Path:
    """``$KDLIB_CACHE_DIR``, else ``$XDG_CACHE_HOME/kdlib``, else ``~/.cache/kdlib``."""
    if os.environ.get("KDLIB_CACHE_DIR"):
        return Path(os.environ["KDLIB_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kdlib"


def default_bin_dir(versions: Versions | None = None) -> Path:
    return cache_root() / "bin" / (versions or pinned_versions()).tag


def check_bin_dir(directory: Path, *, built_here: bool = False) -> BinarySet:
    """Return the binaries in ``directory``, or raise naming the first missing one."""
    directory = Path(directory).expanduser().resolve()
    if not directory.is_dir():
        raise BinaryError(f"binary directory {directory} does not exist")
    paths = {}
    for component in COMPONENTS:
        path = directory / component
        if not path.is_file():
            raise BinaryError(f"{path} is missing: the directory must hold {', '.join(COMPONENTS)}")
        if not os.access(path, os.X_OK):
            raise BinaryError(f"{path} is not executable: run `chmod +x {path}`")
        paths[component] = path
    return BinarySet(directory=directory, built_here=built_here, paths=paths)


def find_binaries(bin_dir: Path | None = None) -> BinarySet:
    """The user's ``bin_dir`` if given, else our cached build; never builds."""
    if bin_dir is not None:
        return check_bin_dir(Path(bin_dir))
    directory = default_bin_dir()
    try:
        return check_bin_dir(directory, built_here=True)
    except BinaryError as error:
        raise BinaryError(f"{error}. Build the binaries first: `python -m kdlib build`") from None


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise BinaryError("the Go toolchain is not on PATH; install Go >= 1.24 to build the binaries")
    return go


def _run_go(args: list[str], cwd: Path, log) -> None:
    goflags = f"{os.environ.get('GOFLAGS', '')} -mod=readonly -buildvcs=false".strip()
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": goflags}
    log(f"$ go {' '.join(args)}   (in {cwd.relative_to(TOOLS_DIR.parent)})")
    result = subprocess.run([_go(), *args], cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-30:])
        raise BinaryError(f"go {args[0]} failed in {cwd} (exit {result.returncode}):\n{tail}")


def build_binaries(*, force: bool = False, log=print, node_binaries: bool = True) -> BinarySet:
    """Build every component into the versioned cache directory, unless already there.

    The build goes to a temporary sibling directory that is renamed into place at the
    end, so an interrupted build never looks finished.
    """
    versions = pinned_versions()
    target = default_bin_dir(versions)
    if not force:
        try:
            found = check_bin_dir(target, built_here=True)
            if node_binaries:
                build_node_binaries(target, log=log)
            return found
        except BinaryError:
            pass
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".build-") as tmp:
        staging = Path(tmp) / "bin"
        staging.mkdir()
        major, minor = versions.kubernetes.lstrip("v").split(".")[:2]
        pkg = "k8s.io/component-base/version"
        ldflags = " ".join([
            "-s -w",
            f"-X {pkg}.gitVersion={versions.kubernetes}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ])
        _run_go(["build", "-trimpath", f"-ldflags={ldflags}", "-o", str(staging / "kube"), "."],
                TOOLS_DIR / "kube", log)
        for component in KUBE_COMPONENTS:
            os.link(staging / "kube", staging / component)
        _run_go(["build", "-trimpath", "-ldflags=-s -w", "-o", str(staging / "kwok"), "sigs.k8s.io/kwok/cmd/kwok"],
                TOOLS_DIR / "kwok", log)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    log(f"built {', '.join(COMPONENTS)} into {target} in {time.monotonic() - started:.0f} s")
    if node_binaries:
        build_node_binaries(target, force=force, log=log)
    return check_bin_dir(target, built_here=True)


def build_node_binaries(directory: Path, *, force: bool = False, log=print) -> dict[str, Path]:
    """The kubelet (``tools/kube/kubelet``, the control plane's pins) and the sleeper
    image's program (``tools/sleeper``) in ``directory``, built if missing.

    Each is built to a temporary name and renamed into place, so a half-built file
    never counts.
    """
    versions = pinned_versions()
    major, minor = versions.kubernetes.lstrip("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    kube_ldflags = (f"-s -w -X {pkg}.gitVersion={versions.kubernetes} -X {pkg}.gitMajor={major} "
                    f"-X {pkg}.gitMinor={minor} -X {pkg}.gitTreeState=clean")
    recipes = {"kubelet": (TOOLS_DIR / "kube", "./kubelet", kube_ldflags),
               "sleeper": (TOOLS_DIR / "sleeper", ".", "-s -w")}
    paths = {}
    for name, (module, package, ldflags) in recipes.items():
        path = Path(directory) / name
        if force or not (path.is_file() and os.access(path, os.X_OK)):
            partial = path.with_name(f".{name}.partial-{os.getpid()}")
            _run_go(["build", "-trimpath", f"-ldflags={ldflags}", "-o", str(partial), package], module, log)
            partial.replace(path)
        paths[name] = path
    return paths


def ensure_binaries(bin_dir: Path | None = None, *, log=print) -> BinarySet:
    """The user's ``bin_dir`` if given (checked, never built), else build ours if missing."""
    if bin_dir is not None:
        return check_bin_dir(Path(bin_dir))
    return build_binaries(log=log, node_binaries=False)  # the kubelet only when a real node needs it


def component_versions(binaries: BinarySet) -> dict[str, str]:
    """Ask each binary for its version (provenance); unknown where it cannot tell."""
    commands = {
        "kube-apiserver": ["--version"],
        "etcd": ["--version"],
        "kwok": ["--version"],
    }
    versions = {}
    for component, args in commands.items():
        try:
            out = subprocess.run([str(binaries[component]), *args], capture_output=True, text=True, timeout=20)
            text = (out.stdout or out.stderr).strip().splitlines()
            versions[component] = text[0] if text else "unknown"
        except (OSError, subprocess.TimeoutExpired):
            versions[component] = "unknown"
    return versions
