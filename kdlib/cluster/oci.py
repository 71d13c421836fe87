"""The OCI registry protocol, through ``crane``; and reading a flattened image filesystem.

crane does the protocol (anonymous token auth as public registries use, manifest lists,
layer flattening with whiteouts); this module only runs it, turns its failures into
one-line kdlib errors, and picks one file out of the tar that ``crane export`` writes.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import ImageError, ImageNotFoundError, PlatformMissingError, RegistryUnreachableError

INDEX_TYPES = ("application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json")
OFFLINE_ADVICE = ("without network, extract kube-apiserver, kube-controller-manager and kube-scheduler "
                  "from the images on a machine that has it (e.g. `crane export IMAGE - | tar x`) and give "
                  "that directory as --bin-dir / kd_bin_dir")
_UNREACHABLE = re.compile(r"dial tcp|connection refused|no such host|i/o timeout|network is unreachable|"
                          r"TLS handshake timeout|connection reset|server misbehaving|no route to host", re.I)
_NOT_FOUND = re.compile(r"MANIFEST_UNKNOWN|NAME_UNKNOWN|NOT_FOUND|404 Not Found")
# Docker Hub answers a repository that does not exist as one that needs a login.
_DENIED = re.compile(r"UNAUTHORIZED|DENIED|requested access to the resource is denied")
_RATE_LIMITED = re.compile(r"TOOMANYREQUESTS|429 Too Many Requests", re.I)


@dataclass(frozen=True)
class Resolved:
    """An image reference resolved to one platform's image."""

    ref: str
    index_digest: str | None
    manifest_digest: str

    @property
    def pinned(self) -> str:
        return f"{self.ref.rsplit(':', 1)[0] if _has_tag(self.ref) else self.ref}@{self.manifest_digest}"


def _has_tag(ref: str) -> bool:
    return ":" in ref.rsplit("/", 1)[-1]


def run(command: list[str], timeout: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TimeoutError(f"no answer within {timeout:.0f} s") from None


class Crane:
    """The ``crane`` command line, with errors classified."""

    def __init__(self, binary: Path, *, timeout: float = 60.0, export_timeout: float = 1800.0) -> None:
        self.binary, self.timeout, self.export_timeout = Path(binary), timeout, export_timeout

    def _call(self, ref: str, *args: str, timeout: float | None = None) -> str:
        registry = ref.split("/", 1)[0]
        try:
            result = run([str(self.binary), *args], timeout or self.timeout)
        except TimeoutError as error:
            raise RegistryUnreachableError(f"registry {registry} is unreachable ({error}); {OFFLINE_ADVICE}") from None
        if result.returncode == 0:
            return result.stdout
        message = _last_error(result.stderr)
        if _UNREACHABLE.search(message):
            raise RegistryUnreachableError(
                f"registry {registry} is unreachable ({_short(message)}); {OFFLINE_ADVICE}")
        if _NOT_FOUND.search(message):
            raise ImageNotFoundError(f"image {ref} not found: the registry has no such image or tag "
                                     f"({_short(message)}); check --repository and --tag")
        if _DENIED.search(message):
            raise ImageNotFoundError(f"image {ref} not found, or not readable without a login "
                                     f"({_short(message)}); check --repository and --tag")
        if _RATE_LIMITED.search(message):
            raise ImageError(f"registry {registry} refuses more pulls for now ({_short(message)}); "
                             "wait, or log in with `crane auth login`")
        raise ImageError(f"crane {args[0]} {ref} failed: {_short(message)}")

    def resolve(self, ref: str, platform: str) -> Resolved:
        """The digest of ``ref``'s image for ``platform``; PlatformMissingError if it has none."""
        manifest = json.loads(self._call(ref, "manifest", ref))
        digest = self._call(ref, "digest", ref).strip()
        media_type = manifest.get("mediaType", "")
        if media_type in INDEX_TYPES or "manifests" in manifest:
            offered = {}
            for entry in manifest.get("manifests", []):
                p = entry.get("platform") or {}
                name = "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)
                offered.setdefault(name, entry["digest"])
            for name, child in offered.items():
                if name == platform or name.startswith(platform + "/"):
                    return Resolved(ref, digest, child)
            raise PlatformMissingError(f"{ref} has no image for {platform} "
                                       f"(it offers {', '.join(sorted(offered)) or 'none'})")
        config = json.loads(self._call(ref, "config", ref))
        own = "/".join(x for x in (config.get("os"), config.get("architecture"), config.get("variant")) if x)
        if own and own != platform and not own.startswith(platform + "/"):
            raise PlatformMissingError(f"{ref} is a single image for {own}, not for {platform}")
        return Resolved(ref, None, digest)

    def export(self, pinned: str, output: Path) -> None:
        """The image's flattened filesystem (layers applied in order) as a tar file."""
        self._call(pinned, "export", pinned, str(output), timeout=self.export_timeout)

    def version(self) -> str:
        return run([str(self.binary), "version"], self.timeout).stdout.strip()


def _last_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("Error:")]
    return (errors or lines or ["no message"])[-1].removeprefix("Error:").strip()


def _short(message: str, limit: int = 300) -> str:
    message = " ".join(message.split())
    return message if len(message) <= limit else message[: limit - 1] + "…"


def _normal(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


def find_in_tar(archive: Path, preferred: list[str], basename: str) -> str | None:
    """The member path (no leading '/') of the first of ``preferred`` that is a file (links
    followed), else of any file named ``basename``; None when there is none."""
    with tarfile.open(archive) as tar:
        members = {_normal(m.name): m for m in tar.getmembers()}
    for wanted in preferred:
        found = _follow(members, _normal(wanted))
        if found:
            return found
    for name in sorted(members, key=lambda n: (n.count("/"), n)):
        if posixpath.basename(name) == basename:
            found = _follow(members, name)
            if found:
                return found
    return None


def _follow(members: dict[str, tarfile.TarInfo], name: str, depth: int = 0) -> str | None:
    member = members.get(name)
    if member is None or depth > 16:
        return None
    if member.isfile():
        return name
    if member.issym():
        target = member.linkname if member.linkname.startswith("/") else posixpath.join(
            posixpath.dirname(name), member.linkname)
        return _follow(members, _normal(target), depth + 1)
    if member.islnk():
        return _follow(members, _normal(member.linkname), depth + 1)
    return None


def extract_member(archive: Path, name: str, target: Path) -> str:
    """Copy one regular file out of ``archive`` to ``target`` (mode 0755); its sha256."""
    digest = hashlib.sha256()
    with tarfile.open(archive) as tar:
        member = next(m for m in tar.getmembers() if _normal(m.name) == name)
        source = tar.extractfile(member)
        if source is None:
            raise ImageError(f"{name} in the image is not a regular file")
        with source, open(target, "wb") as out:
            for block in iter(lambda: source.read(1 << 20), b""):
                digest.update(block)
                out.write(block)
    target.chmod(0o755)
    return "sha256:" + digest.hexdigest()


__all__ = ["Crane", "Resolved", "find_in_tar", "extract_member", "run"]
