"""The VM test hosts' base image: Debian 12 built from Debian's packages, cached by its recipe.

``python -m tests.vmimage`` builds it (a few minutes; needs root and ``mmdebstrap``,
``mke2fs``) and prints its directory; :func:`ensure` does the same from the tests.

mmdebstrap installs :data:`PACKAGES` from the mirrors this machine's apt uses (its sources
file is handed over as it is: no mirror is written here), ``tests/vm/customize.sh``
makes it a node (see there), ``mke2fs -d`` turns the tree into an ext4 disk image (owners
and file capabilities kept, no loop mount), and the kernel and initramfs Debian built
inside are copied beside it. The cache directory ``~/.cache/kdlib/vm/<key>/`` is keyed by
a hash of the package list and the customisation script, so a change to either builds a
new image; a build goes to a temporary directory renamed into place when complete.
Facts behind the recipe: ``/work/shared/reference/vm-test-hosts.md``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SUITE = "bookworm"
# A cluster node as kdlib's SSH backend expects one (kdlib/cluster/ssh/prerequisites.py and
# kubelets.REQUIRED_COMMANDS: containerd, runc, ctr, the CNI plugins, conntrack, iptables,
# ip, mount, nsenter, unshare), systemd as PID 1 with logind sessions, and kubeadm's
# preflight's tools (ebtables, ethtool, socat, tc from iproute2).
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "libpam-systemd", "udev", "kmod", "procps", "iproute2", "iputils-ping",
    "openssh-server", "containerd", "runc", "containernetworking-plugins", "iptables", "conntrack", "ebtables",
    "ethtool", "socat", "linux-image-amd64", "initramfs-tools",
)
IMAGE_SIZE = "4G"
CUSTOMIZE = Path(__file__).resolve().parent / "vm" / "customize.sh"
# Before the kernel's package makes its initramfs: a small one (the customisation lists its modules).
ESSENTIAL_HOOK = ('mkdir -p "$1/etc/initramfs-tools/conf.d" && '
                  'printf "MODULES=list\\nCOMPRESS=gzip\\n" > "$1/etc/initramfs-tools/conf.d/kdlib"')
APT_SOURCES = (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list"))
TOOLS = ("mmdebstrap", "mke2fs")


class ImageUnavailable(Exception):
    """The image is not cached and cannot be built here (the reason says why)."""


@dataclass(frozen=True)
class Image:
    directory: Path

    @property
    def disk(self) -> Path:
        return self.directory / "base.raw"

    @property
    def kernel(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def initrd(self) -> Path:
        return self.directory / "initrd.img"

    def complete(self) -> bool:
        return all(p.is_file() for p in (self.disk, self.kernel, self.initrd, self.directory / "image.json"))


def key() -> str:
    """The cache key: the suite, the package list and the customisation, hashed."""
    recipe = json.dumps({"suite": SUITE, "packages": sorted(PACKAGES), "size": IMAGE_SIZE,
                         "essential_hook": ESSENTIAL_HOOK, "customize": CUSTOMIZE.read_text()}, sort_keys=True)
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kdlib" / "vm"


def cached() -> Image:
    return Image(cache_root() / key())


def apt_sources() -> Path:
    """This machine's apt sources (deb822 or one-line format), as mmdebstrap reads them."""
    for path in APT_SOURCES:
        if path.is_file() and SUITE in path.read_text():
            return path
    raise ImageUnavailable(f"no apt sources for Debian {SUITE} on this machine ({', '.join(map(str, APT_SOURCES))})")


def unavailable_reason() -> str | None:
    """Why the image can neither be found nor built here, or None."""
    if cached().complete():
        return None
    if os.geteuid() != 0:
        return "building the VM image needs root (mmdebstrap in root mode, owners kept)"
    for tool in TOOLS:
        if shutil.which(tool) is None:
            return f"building the VM image needs `{tool}` (apt-get install mmdebstrap e2fsprogs)"
    try:
        apt_sources()
    except ImageUnavailable as error:
        return str(error)
    return None


def ensure(log=None) -> Image:  # log: a file for progress, default stderr
    """The cached image, built first if missing. Raises :class:`ImageUnavailable`."""
    image = cached()
    if image.complete():
        return image
    reason = unavailable_reason()
    if reason:
        raise ImageUnavailable(reason)
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; a waiter then finds it built
        if image.complete():
            return image
        return _build(image, log or sys.stderr)


def _run(argv: list[str], log, timeout: float) -> None:
    started = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    print(f"vmimage: {argv[0]} took {time.monotonic() - started:.0f} s", file=log, flush=True)
    if result.returncode != 0:
        raise ImageUnavailable(f"`{' '.join(argv[:3])} ...` failed ({result.returncode}): "
                               f"{(result.stderr or result.stdout)[-1500:]}")


def _build(image: Image, log) -> Image:
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix=f".build-{image.directory.name}-", dir=image.directory.parent))
    try:
        rootfs = work / "rootfs"
        _run(["mmdebstrap", "--variant=apt", "--mode=root", f"--include={','.join(PACKAGES)}",
              f"--essential-hook={ESSENTIAL_HOOK}", f'--customize-hook=sh {CUSTOMIZE} "$1"',
              SUITE, str(rootfs), str(apt_sources())], log, timeout=1800)
        kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
        if len(kernels) != 1:
            raise ImageUnavailable(f"expected one kernel in the image's /boot, found {[k.name for k in kernels]}")
        version = kernels[0].name.removeprefix("vmlinuz-")
        shutil.copy(kernels[0], work / "vmlinuz")
        shutil.copy(rootfs / "boot" / f"initrd.img-{version}", work / "initrd.img")
        _run(["mke2fs", "-q", "-t", "ext4", "-L", "kdlib-root", "-d", str(rootfs), "-F", str(work / "base.raw"),
              IMAGE_SIZE], log, timeout=900)
        _remove(rootfs)
        (work / "base.raw").chmod(0o444)  # never booted itself: each VM runs on an overlay
        (work / "image.json").write_text(json.dumps({
            "suite": SUITE, "packages": list(PACKAGES), "kernel": version, "sources": str(apt_sources()),
            "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "build_seconds": round(time.monotonic() - started, 1)}, indent=2) + "\n")
        work.rename(image.directory)
    finally:
        _remove(work)
    print(f"vmimage: built {image.directory} in {time.monotonic() - started:.0f} s", file=log, flush=True)
    return image


def _remove(path: Path) -> None:
    """Remove a build tree, never through a mount a failed mmdebstrap may have left in it
    (its /proc, /sys, /dev are the machine's)."""
    if not path.exists():
        return
    prefix = str(path.resolve()) + "/"
    mounted = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
               if line.split()[4].startswith(prefix)]
    for point in sorted(mounted, reverse=True):
        subprocess.run(["umount", "--lazy", point], capture_output=True, timeout=60)
    still = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
             if line.split()[4].startswith(prefix)]
    if still:
        raise ImageUnavailable(f"mounts left under {path}, not removed: {still[:3]}")
    shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    try:
        print(ensure().directory)
    except ImageUnavailable as error:
        sys.exit(f"vmimage: {error}")
