"""Kubedirect's control-plane binaries, taken out of its published container images.

Kd's source is not public, but its kube-apiserver, kube-controller-manager and
kube-scheduler are published as images (the original artifact's kubeadm settings:
``imageRepository: shengqipku``, ``kubernetesVersion: v1.32.0-kubedirect``). :func:`fetch`
pulls each image for this machine's platform with ``crane`` (go-containerregistry, built
from ``tools/crane`` like our other binaries), flattens its layers, copies the binary out,
checks that it runs, and records the image digests in ``binaries.json`` beside the
binaries. The result is a partial binary directory: etcd and kwok come from our build
(``kdlib.cluster.binaries.check_bin_dir``).

Everything lands in a temporary sibling of the destination that is renamed into place
at the end: a failed or interrupted fetch leaves the destination as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform as host
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import provenance
from ..errors import BinaryError, BinaryNotInImageError, ImageError
from ..log import get as get_logger
from ..paths import cache_root
from . import oci
from .binaries import SOURCES_FILE, build_crane, crane_version

log = get_logger(__name__)

DEFAULT_REGISTRY = "docker.io"
DEFAULT_REPOSITORY = "shengqipku"
DEFAULT_TAG = "v1.32.0-kubedirect"
KD_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
# Where upstream Kubernetes images keep the binary; other places are searched after these.
BINARY_DIRS = ("usr/local/bin", "usr/bin", "bin")
_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
           "ppc64le": "ppc64le", "s390x": "s390x", "armv7l": "arm/v7"}


@dataclass(frozen=True)
class FetchedBinary:
    """One component taken out of one image."""

    component: str
    image: str  # registry/repository/name:tag as asked for
    index_digest: str | None  # the multi-platform index the tag names, if it names one
    manifest_digest: str  # the image for this platform
    platform: str
    path_in_image: str
    sha256: str
    version: str  # first line of `<binary> --version`

    @property
    def source(self) -> str:
        return f"image {self.image}@{self.manifest_digest} ({self.platform}), {self.version}"


@dataclass(frozen=True)
class FetchResult:
    directory: Path
    binaries: dict[str, FetchedBinary]
    fetched: bool  # False: the destination already held exactly these (a no-op)


def host_platform() -> str:
    """``os/arch[/variant]`` of this machine, as image indexes name platforms."""
    machine = host.machine().lower()
    if machine not in _ARCHES:
        raise ImageError(f"unknown machine architecture {machine!r}: pass platform='linux/<arch>'")
    return f"linux/{_ARCHES[machine]}"


def default_dest(tag: str = DEFAULT_TAG) -> Path:
    """Where ``kd fetch`` stores the binaries unless told otherwise."""
    return cache_root() / "kd" / tag


def image_ref(registry: str, repository: str, component: str, tag: str) -> str:
    return f"{registry.rstrip('/')}/{repository.strip('/')}/{component}:{tag}"


def stored(tag: str = DEFAULT_TAG, dest: Path | None = None) -> FetchResult | None:
    """What an earlier fetch left in ``dest`` (default: :func:`default_dest`), if complete and intact."""
    directory = Path(dest or default_dest(tag)).expanduser()
    try:
        record = json.loads((directory / SOURCES_FILE).read_text())
        binaries = {name: FetchedBinary(**{k: v for k, v in entry.items() if k != "source"})
                    for name, entry in record["components"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if set(binaries) != set(KD_COMPONENTS):
        return None
    for name, binary in binaries.items():
        path = directory / name
        if not os.access(path, os.X_OK) or _sha256(path) != binary.sha256:
            return None
    return FetchResult(directory.resolve(), binaries, fetched=False)


def fetch(repository: str = DEFAULT_REPOSITORY, tag: str = DEFAULT_TAG, dest: Path | str | None = None,
          registry: str = DEFAULT_REGISTRY, *, platform: str | None = None, force: bool = False,
          crane: Path | None = None) -> FetchResult:
    """Fetch Kd's three control-plane binaries into ``dest`` (default :func:`default_dest`).

    A second fetch of the same images into the same place is a no-op (nothing is asked
    of the registry) unless ``force``.
    """
    platform = platform or host_platform()
    dest = Path(dest or default_dest(tag)).expanduser().absolute()
    refs = {c: image_ref(registry, repository, c, tag) for c in KD_COMPONENTS}
    previous = stored(tag, dest)
    if previous and not force and all(previous.binaries[c].image == refs[c] and previous.binaries[c].platform
                                      == platform for c in KD_COMPONENTS):
        log.info("%s already holds %s (%s): nothing to fetch", dest, ", ".join(refs.values()), platform)
        return previous
    if dest.exists() and not dest.is_dir():
        raise BinaryError(f"{dest} is a file: --dest must be a directory")
    if dest.exists() and previous is None and any(dest.iterdir()) and not (dest / SOURCES_FILE).exists():
        raise BinaryError(f"{dest} holds files that kd fetch did not write: choose an empty or new --dest")
    client = oci.Crane(crane or build_crane())
    # Every image resolved first: a wrong tag or platform fails before any download.
    resolved = {c: client.resolve(refs[c], platform) for c in KD_COMPONENTS}
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_stagings(dest)
    staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.fetch-"))
    try:
        staging.chmod(0o755)  # mkdtemp's 0700 would hide the binaries from other users
        (staging / ".owner").write_text(str(os.getpid()))
        fetched = {c: _fetch_one(client, c, resolved[c], platform, staging) for c in KD_COMPONENTS}
        _write_record(staging, fetched, registry=registry, repository=repository, tag=tag, platform=platform)
        (staging / ".owner").unlink()
        _install(staging, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("fetched %s into %s", ", ".join(KD_COMPONENTS), dest)
    return FetchResult(dest.resolve(), fetched, fetched=True)


def _fetch_one(client: oci.Crane, component: str, resolved: oci.Resolved, platform: str,
               staging: Path) -> FetchedBinary:
    ref = resolved.ref
    log.info("%s: taking it out of %s (%s, %s)", component, ref, platform, resolved.manifest_digest)
    flat = staging / f".{component}.tar"
    try:
        client.export(resolved.pinned, flat)
        member = oci.find_in_tar(flat, [f"{d}/{component}" for d in BINARY_DIRS], component)
        if member is None:
            raise BinaryNotInImageError(
                f"no layer of {ref} ({platform}) holds {component} (looked in /{', /'.join(BINARY_DIRS)} "
                "and then everywhere): is this a control-plane image?")
        digest = oci.extract_member(flat, member, staging / component)
    finally:
        flat.unlink(missing_ok=True)
    version = _check_runs(staging / component, ref)
    return FetchedBinary(component, ref, resolved.index_digest, resolved.manifest_digest, platform,
                         "/" + member, digest, version)


def _check_runs(binary: Path, ref: str) -> str:
    try:
        result = oci.run([str(binary), "--version"], timeout=30)
    except (OSError, TimeoutError) as error:
        raise BinaryError(f"{binary.name} from {ref} does not run on this machine: {error}") from None
    text = (result.stdout or result.stderr).strip().splitlines()
    if result.returncode != 0 or not text:
        detail = text[-1] if text else "no output"
        raise BinaryError(f"`{binary.name} --version` from {ref} failed (exit {result.returncode}): {detail}")
    return text[0].strip()


def _write_record(staging: Path, fetched: dict[str, FetchedBinary], **request: str) -> None:
    record: dict[str, Any] = {
        "written_by": "python -m kdlib kd fetch",
        "request": request,
        "crane": crane_version(),
        "fetched_at": provenance.now(),
        "components": {name: {**asdict(b), "source": b.source} for name, b in fetched.items()},
    }
    (staging / SOURCES_FILE).write_text(json.dumps(record, indent=2) + "\n")


def _install(staging: Path, dest: Path) -> None:
    """Swap ``staging`` into ``dest``; an earlier fetch there is replaced only now."""
    if dest.exists():
        old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.old-"))
        os.rename(dest, old / "previous")
        os.rename(staging, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staging, dest)


def _remove_abandoned_stagings(dest: Path) -> None:
    """Staging directories of fetches that were killed (their owner process is gone)."""
    for leftover in dest.parent.glob(f".{dest.name}.fetch-*"):
        try:
            os.kill(int((leftover / ".owner").read_text()), 0)
            continue  # its fetch is still running
        except ProcessLookupError:
            shutil.rmtree(leftover, ignore_errors=True)
        except (OSError, ValueError):
            continue  # just created, or not ours to judge
    for leftover in dest.parent.glob(f".{dest.name}.old-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()
