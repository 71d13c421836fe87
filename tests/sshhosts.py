"""SSH test hosts on this machine: network namespaces on a private bridge, one sshd each.

Each host is a network namespace with a veth pair on a Linux bridge that carries a
private /24 existing only inside this machine (no default route, no forwarding), and
its own sshd (own host key, own hostname through ``unshare --uts``, own /etc/hosts
bind-mounted in the private mount namespace that ``ip netns exec`` gives, and an empty
``/root/.bashrc`` there). Root logs in with an ephemeral key made in a temporary directory.
Facts behind the recipe: ``/work/shared/reference/ssh-test-hosts.md``.

Every bridge, veth and namespace is named ``<prefix><slot>...`` (prefix ``kdt`` unless
``$KDLIB_TEST_NET_PREFIX`` says otherwise). A run owns its slot through an flock on
``/run/kdlib-testhosts/<prefix><slot>.lock``, released by the kernel when the run dies;
so whatever carries the name of a slot nobody holds is the remains of a crashed run, and
only that is ever removed. Nothing else on the machine is touched.

The hosts share this machine's filesystem and PID space (see the reference): state on
them must live in per-host directories, and processes are stopped by PID only.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

LOCK_DIR = Path("/run/kdlib-testhosts")
SLOTS = range(1, 64)  # 10.213.<slot>.0/24
SUBNET_BASE = "10.213"
SSHD = "/usr/sbin/sshd"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"
ROOT_BASHRC = "/root/.bashrc"


def _cgroup_mounts() -> str:
    """Shell mounting this machine's cgroup filesystems again, as they are mounted here.

    ``ip netns exec`` mounts a fresh ``/sys`` without the cgroup hierarchies that a real
    host has mounted (a kubelet needs them); the same hierarchies are mounted anew in the
    host's mount namespace (they are the machine's, not copies)."""
    commands = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        point = fields[4]
        if not (point == "/sys/fs/cgroup" or point.startswith("/sys/fs/cgroup/")):
            continue
        rest = fields[fields.index("-") + 1:]  # fstype, source, super options
        fstype, source, options = rest[0], rest[1], rest[2] if len(rest) > 2 else "rw"
        if fstype not in ("tmpfs", "cgroup", "cgroup2"):
            continue
        commands.append(f"mkdir -p {point} && mount -t {fstype} -o {options} {source} {point}")
    return "".join(f"{c} && " for c in commands)


_Made = TypeVar("_Made")


def destroyed_on_failure(create: Callable[[Any], _Made]) -> Callable[[Any], _Made]:
    """A factory's ``create``: when it fails (Ctrl-C too), the factory's ``destroy`` removes
    what it had made so far before the error goes on."""
    @wraps(create)
    def create_or_destroy(factory: Any) -> _Made:
        try:
            return create(factory)
        except BaseException:
            factory.destroy()
            raise
    return create_or_destroy


class HostsUnavailable(Exception):
    """This machine cannot make the hosts (not root, a tool missing, no namespaces)."""


@dataclass(frozen=True)
class TestHost:
    name: str          # hostname inside the namespace, also the Kubernetes node name
    address: str
    netns: str
    sshd_pid: int
    host_key_pub: str  # "ssh-ed25519 AAAA..."


@dataclass(frozen=True)
class TestHosts:
    """What a test needs to log in: the hosts, the client key and a known_hosts file."""

    hosts: tuple[TestHost, ...]
    user: str
    port: int
    key: Path
    known_hosts: Path
    bridge_address: str
    workdir: Path

    def __getitem__(self, index: int) -> TestHost:
        return self.hosts[index]

    def __len__(self) -> int:
        return len(self.hosts)


def prefix() -> str:
    value = os.environ.get("KDLIB_TEST_NET_PREFIX", "kdt")
    if not (value.isalpha() and value.islower() and 1 <= len(value) <= 7):  # letters: "<prefix><2 digits>" stays unambiguous
        raise HostsUnavailable(f"KDLIB_TEST_NET_PREFIX must be 1-7 lowercase letters, not {value!r}")
    return value


def unavailable_reason() -> str | None:
    """Why this machine cannot make the hosts, or None."""
    if os.geteuid() != 0:
        return "SSH test hosts need root (network namespaces, a bridge)"
    for tool in ("ip", "unshare", "ssh-keygen", "mount"):
        if shutil.which(tool) is None:
            return f"SSH test hosts need `{tool}` on PATH"
    if not os.access(SSHD, os.X_OK):
        return f"SSH test hosts need the OpenSSH server ({SSHD}): apt-get install openssh-server"
    return None


def _ip(*args: str, check: bool = True, netns: str | None = None) -> subprocess.CompletedProcess:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=20)
    if check and result.returncode != 0:
        raise HostsUnavailable(f"`{' '.join(argv)}` failed: {result.stderr.strip()}")
    return result


def _netns_names() -> list[str]:
    out = _ip("-j", "netns", "list", check=False).stdout.strip()
    return [entry["name"] for entry in json.loads(out or "[]")]


def _link_names() -> list[str]:
    out = _ip("-j", "link", "show", check=False).stdout.strip()
    return [entry["ifname"] for entry in json.loads(out or "[]")]


def _netns_pids(netns: str) -> list[int]:
    out = _ip("netns", "pids", netns, check=False).stdout.split()
    return [int(p) for p in out if p.isdigit()]


def _subnet_taken(subnet: ipaddress.IPv4Network) -> bool:
    out = _ip("-j", "-4", "route", "show", "table", "all", check=False).stdout.strip()
    for route in json.loads(out or "[]"):
        dst = route.get("dst", "")
        if dst in ("default", "") or "/" not in dst and not dst[0].isdigit():
            continue
        try:
            if ipaddress.ip_network(dst, strict=False).overlaps(subnet):
                return True
        except ValueError:
            continue
    return False


def leftovers(slot_prefix: str) -> dict[str, list]:
    """Namespaces, links and processes that carry ``slot_prefix``'s names."""
    namespaces = [n for n in _netns_names() if n.startswith(slot_prefix)]
    return {
        "netns": namespaces,
        "links": [link for link in _link_names() if link.startswith(slot_prefix)],
        "pids": [pid for ns in namespaces for pid in _netns_pids(ns)],
        "workdirs": [str(p) for p in Path(tempfile.gettempdir()).glob(f"{slot_prefix}-*")],
    }


def remove(slot_prefix: str, timeout: float = 5.0) -> dict[str, list]:
    """Remove everything named ``slot_prefix``...: kill the processes inside its
    namespaces (sshd and whatever was started over SSH), delete the namespaces (their
    veths go with them) and the links left on this side. Returns what is still there."""
    found = leftovers(slot_prefix)
    for pid in found["pids"]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while any(_netns_pids(ns) for ns in found["netns"]) and time.monotonic() < deadline:
        time.sleep(0.05)
    for ns in found["netns"]:
        _ip("netns", "del", ns, check=False)
    for link in _link_names():
        if link.startswith(slot_prefix):
            _ip("link", "del", link, check=False)
    for workdir in Path(tempfile.gettempdir()).glob(f"{slot_prefix}-*"):  # keys, configs, remote dirs
        shutil.rmtree(workdir, ignore_errors=True)
    return leftovers(slot_prefix)


class HostFactory:
    """Makes ``count`` hosts in one free slot; :meth:`destroy` removes them all."""

    def __init__(self, count: int = 3, *, connect_wait: float = 10.0) -> None:
        if not 1 <= count <= 250:
            raise ValueError(f"count must be in 1..250, not {count}")
        self.count = count
        self.connect_wait = connect_wait
        self.slot_prefix = ""
        self._lock_fd: int | None = None
        self._sshd: list[subprocess.Popen] = []
        self._workdir: Path | None = None

    # -- slot ----------------------------------------------------------------------------

    def _claim_slot(self) -> tuple[int, ipaddress.IPv4Network]:
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        for slot in SLOTS:
            subnet = ipaddress.ip_network(f"{SUBNET_BASE}.{slot}.0/24")
            fd = os.open(LOCK_DIR / f"{prefix()}{slot:02d}.lock", os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            slot_prefix = f"{prefix()}{slot:02d}"
            still = remove(slot_prefix)  # the remains of a crashed run in this slot
            if any(still.values()) or _subnet_taken(subnet):
                os.close(fd)  # someone else's subnet, or remains we cannot remove
                continue
            self._lock_fd, self.slot_prefix = fd, slot_prefix
            return slot, subnet
        raise HostsUnavailable(f"no free slot for SSH test hosts in {SUBNET_BASE}.1-63.0/24")

    # -- create --------------------------------------------------------------------------

    @destroyed_on_failure
    def create(self) -> TestHosts:
        slot, subnet = self._claim_slot()
        work = self._workdir = Path(tempfile.mkdtemp(prefix=f"{self.slot_prefix}-"))
        addresses = list(subnet.hosts())
        bridge, bridge_address = f"{self.slot_prefix}br", str(addresses[-1])
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{bridge_address}/24", "dev", bridge)
        _ip("link", "set", bridge, "up")

        key = work / "client_key"
        _keygen(key, "kdlib-test-client")
        (work / "authorized_keys").write_text(key.with_suffix(".pub").read_text())
        names = [f"{self.slot_prefix}-h{i}" for i in range(1, self.count + 1)]
        hosts_file = work / "hosts"
        hosts_file.write_text("127.0.0.1 localhost\n" + "".join(
            f"{addresses[i]} {name}\n" for i, name in enumerate(names)))
        (work / "bashrc").write_text("# the test hosts' root: no start-up files of this machine's user\n")
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation directory

        hosts = []
        for i, name in enumerate(names):
            hosts.append(self._host(i + 1, name, str(addresses[i]), bridge, work, hosts_file))
        known = work / "known_hosts"
        known.write_text("".join(f"{h.address} {h.host_key_pub}\n" for h in hosts))
        deadline = time.monotonic() + self.connect_wait
        for host, process in zip(hosts, self._sshd):
            _wait_banner(host, process, deadline, work)
        return TestHosts(tuple(hosts), "root", 22, key, known, bridge_address, work)

    def _host(self, index: int, name: str, address: str, bridge: str, work: Path, hosts_file: Path) -> TestHost:
        netns, veth = f"{self.slot_prefix}h{index}", f"{self.slot_prefix}h{index}"
        _ip("netns", "add", netns)
        _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns)
        _ip("link", "set", veth, "master", bridge)
        _ip("link", "set", veth, "up")
        _ip("addr", "add", f"{address}/24", "dev", "eth0", netns=netns)
        _ip("link", "set", "eth0", "up", netns=netns)
        _ip("link", "set", "lo", "up", netns=netns)

        directory = work / name
        directory.mkdir()
        host_key = directory / "ssh_host_ed25519_key"
        _keygen(host_key, name)
        config = directory / "sshd_config"
        config.write_text("\n".join([
            f"ListenAddress {address}",
            "Port 22",
            f"HostKey {host_key}",
            f"PidFile {directory / 'sshd.pid'}",
            f"AuthorizedKeysFile {work / 'authorized_keys'}",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",  # the keys live under /tmp
            "MaxSessions 64",
            "MaxStartups 64",
            f"Subsystem sftp {SFTP_SERVER}",
            "",
        ]))
        # Every SSH command runs `bash -c`, which reads root's ~/.bashrc (Debian's bash does for sshd's
        # commands): this machine's ran `pyenv rehash`, which serialises on a lock, so commands waited
        # up to a minute while other sessions ran. A host has a plain root of its own instead.
        bashrc = f"{{ [ ! -f {ROOT_BASHRC} ] || mount --bind {work / 'bashrc'} {ROOT_BASHRC}; }} && "
        script = (f"hostname {name} && mount --bind {hosts_file} /etc/hosts && {bashrc}{_cgroup_mounts()}"
                  f"exec {SSHD} -f {config} -D -e")
        log = open(directory / "sshd.log", "wb")
        process = subprocess.Popen(
            ["ip", "netns", "exec", netns, "unshare", "--uts", "sh", "-c", script],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self._sshd.append(process)
        public = host_key.with_suffix(".pub").read_text().split()
        return TestHost(name, address, netns, process.pid, f"{public[0]} {public[1]}")

    # -- destroy -------------------------------------------------------------------------

    def destroy(self) -> dict[str, list]:
        """Remove every host, the bridge and the key directory; returns what remains
        (empty lists when the clean-up is complete)."""
        still: dict[str, list] = {"netns": [], "links": [], "pids": [], "workdirs": []}
        if self.slot_prefix:
            still = remove(self.slot_prefix)
        for process in self._sshd:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                still["pids"].append(process.pid)
        self._sshd = []
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        return still

    def kill_sshd(self, index: int, sig: int = signal.SIGKILL, sessions: bool = True) -> None:
        """A fault: kill host ``index``'s sshd (and, with ``sessions``, its live sessions)."""
        process = self._sshd[index]
        os.kill(process.pid, sig)
        process.wait(timeout=5)
        if sessions:
            for pid in _netns_pids(f"{self.slot_prefix}h{index + 1}"):
                if _comm(pid) == "sshd":
                    os.kill(pid, sig)


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def answers_ssh(address: str, connect_timeout: float = 1.0, banner_timeout: float = 1.0) -> bool:
    """Does an sshd answer on ``address``:22 with its banner?"""
    try:
        with socket.create_connection((address, 22), timeout=connect_timeout) as sock:
            sock.settimeout(banner_timeout)
            return sock.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True, timeout=20)


def _wait_banner(host: TestHost, process: subprocess.Popen, deadline: float, work: Path) -> None:
    """Wait until the host's sshd answers with its banner."""
    while True:
        if process.poll() is not None:
            log = (work / host.name / "sshd.log").read_text(errors="replace")[-800:]
            raise HostsUnavailable(f"sshd of {host.name} exited ({process.returncode}): {log.strip()}")
        if answers_ssh(host.address):
            return
        if time.monotonic() > deadline:
            raise HostsUnavailable(f"sshd of {host.name} did not answer on {host.address}:22 in time")
        time.sleep(0.05)


def sweep() -> dict[str, list]:
    """Remove the remains of crashed runs in every slot nobody holds (e.g. from CI)."""
    remains: dict[str, list] = {}
    if not LOCK_DIR.is_dir():
        return remains
    for slot in SLOTS:
        path = LOCK_DIR / f"{prefix()}{slot:02d}.lock"
        if not path.exists():
            continue
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            still = remove(f"{prefix()}{slot:02d}")
            if any(still.values()):
                remains[f"{prefix()}{slot:02d}"] = still
        finally:
            os.close(fd)
    return remains
