"""VM test hosts: Debian 12 virtual machines with their own kernel, systemd as PID 1 and cgroup v2.

The users' cluster nodes are systemd + cgroup v2 hosts; the namespace test hosts
(``tests/sshhosts.py``) share this machine's cgroup v1 kernel and have no systemd. A
:class:`VmLab` makes both on one private bridge: ``namespace_hosts`` namespace hosts (fast,
e.g. a control plane) and up to :data:`MAX_VMS` VMs booted with QEMU, each from a
copy-on-write overlay of the cached base image (``tests/vmimage.py``).

* **CPU:** software emulation (TCG), one vCPU each: KVM exists here but cannot boot a stock
  kernel (``$KDLIB_VM_ACCEL`` picks another accelerator where it works).
* **Network:** each VM's one NIC is a tap device on the slot's bridge, with the address
  ``<subnet>.<100+i>`` (the kernel's ``ip=`` option, applied by systemd-networkd) and a default
  route to ``.253``, which nobody holds (the kubelet needs a default route to pick its node
  IP; nothing can leave: this machine does not forward). So a VM's SSH address is also its
  address in the cluster, as on a user's node (an SSH port forward through 127.0.0.1 would
  give the kubelet a loopback node IP, which it refuses). VMs and namespace hosts reach each
  other directly, any number of them.
* **Identity:** hostname, machine-id (from ``-uuid``), MAC, SSH host key and root's
  authorized key are each VM's own, given on the kernel command line (the image holds no
  key); the lab's ``known_hosts`` lists every host.
* **Clean-up:** each qemu is killed by the PID in its pid file after checking its command
  line; its tap goes with it; its overlay is removed. qemu carries ``-name
  kdlib-testvm-<slot>-vm<i>``, so :func:`sweep` finds the VMs of a crashed run: those of a
  slot whose flock nobody holds (the slot scheme of ``tests/sshhosts.py``).

Facts behind the recipe (timings, pitfalls): ``/work/shared/reference/vm-test-hosts.md``.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import ipaddress
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from . import sshhosts, vmimage

QEMU = "qemu-system-x86_64"
QEMU_IMG = "qemu-img"
MAX_VMS = 2          # the machine has 2 cores, shared: never more VMs than that at once
VM_ADDRESS_OFFSET = 100
GATEWAY_OFFSET = 253  # a default route to an address nobody holds
MARKER = "kdlib-testvm-"


class VmsUnavailable(Exception):
    """This machine cannot boot the VMs (the reason says why)."""


@dataclass(frozen=True)
class TestVm:
    name: str          # hostname, also the Kubernetes node name
    address: str
    pid: int           # qemu's
    host_key_pub: str
    directory: Path    # overlay, pid file, console log
    boot_seconds: float

    @property
    def console(self) -> Path:
        return self.directory / "console.log"


@dataclass(frozen=True)
class Lab:
    """Namespace hosts and VMs on one bridge; one client key and one known_hosts for all."""

    hosts: sshhosts.TestHosts
    vms: tuple[TestVm, ...]
    boot_seconds: float  # all VMs, booted together, until each answers SSH

    @property
    def key(self) -> Path:
        return self.hosts.key

    @property
    def known_hosts(self) -> Path:
        return self.hosts.known_hosts


def unavailable_reason() -> str | None:
    """Why this machine cannot boot the VMs, or None (the image may still need building)."""
    reason = sshhosts.unavailable_reason()
    if reason:
        return reason
    for tool in (QEMU, QEMU_IMG, "ssh"):
        if shutil.which(tool) is None:
            return f"VM test hosts need `{tool}` (apt-get install qemu-system-x86 qemu-utils openssh-client)"
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        return "VM test hosts need /dev/net/tun (their NICs are tap devices)"
    return vmimage.unavailable_reason()


def _mac(name: str) -> str:
    digest = hashlib.sha256(name.encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _qemu_pids(marker: str) -> list[int]:
    """qemu processes whose ``-name`` starts with ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"-name" in argv[:-1] and argv[argv.index(b"-name") + 1].decode(errors="replace").startswith(marker):
            found.append(int(entry.name))
    return found


def _kill_and_wait(pids: list[int], timeout: float = 10.0) -> list[int]:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if Path(f"/proc/{p}").exists() and _state(p) != "Z"]
        time.sleep(0.05)
    return alive


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def sweep() -> list[int]:
    """Kill the VMs of crashed runs (their slot's flock is free); returns the PIDs still alive."""
    slots = {}
    for pid in _qemu_pids(MARKER):
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        name = argv[argv.index(b"-name") + 1].decode()[len(MARKER):]
        slots.setdefault(name.split("-vm", 1)[0], []).append(pid)
    left = []
    for slot_prefix, pids in slots.items():
        path = sshhosts.LOCK_DIR / f"{slot_prefix}.lock"
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a live run's
        try:
            left += _kill_and_wait(pids)
        finally:
            os.close(fd)
    return left


class VmLab:
    """Makes ``namespace_hosts`` namespace hosts and ``vms`` VMs on one bridge; :meth:`destroy`
    removes them all."""

    def __init__(self, vms: int = 1, namespace_hosts: int = 1, *, memory_mib: int = 2048,
                 boot_wait: float = 300.0, image: vmimage.Image | None = None) -> None:
        if not 1 <= vms <= MAX_VMS:
            raise ValueError(f"vms must be in 1..{MAX_VMS} (2 cores), not {vms}")
        self.vm_count = vms
        self.memory_mib = memory_mib
        self.boot_wait = boot_wait
        self.image = image
        self.hosts_factory = sshhosts.HostFactory(namespace_hosts)
        self.vms: list[TestVm] = []
        self._pids: list[int] = []
        self._dirs: list[Path] = []

    @sshhosts.destroyed_on_failure
    def create(self) -> Lab:
        image = self.image or vmimage.ensure()
        hosts = self.hosts_factory.create()
        prefix = self.hosts_factory.slot_prefix
        subnet = ipaddress.ip_network(f"{hosts.bridge_address}/24", strict=False)
        bridge = f"{prefix}br"
        started = time.monotonic()
        pending = []
        for i in range(1, self.vm_count + 1):
            name = f"{prefix}-vm{i}"
            address = str(subnet.network_address + VM_ADDRESS_OFFSET + i)
            pending.append(self._start(image, hosts, name, address, f"{prefix}v{i}", bridge,
                                       str(subnet.network_address + GATEWAY_OFFSET)))
        deadline = started + self.boot_wait
        for name, address, pid, directory, host_pub in pending:
            _wait_ssh(name, address, pid, directory, deadline)
            self.vms.append(TestVm(name, address, pid, host_pub, directory, time.monotonic() - started))
        with open(hosts.known_hosts, "a") as known:
            known.writelines(f"{vm.address} {vm.host_key_pub}\n" for vm in self.vms)
        for vm in self.vms:
            sync_clock(vm, hosts.key, hosts.known_hosts)
        return Lab(hosts, tuple(self.vms), time.monotonic() - started)

    def _start(self, image: vmimage.Image, hosts: sshhosts.TestHosts, name: str, address: str, tap: str,
               bridge: str, gateway: str) -> tuple[str, str, int, Path, str]:
        directory = hosts.workdir / name
        directory.mkdir()
        self._dirs.append(directory)
        overlay = directory / "disk.qcow2"
        subprocess.run([QEMU_IMG, "create", "-q", "-f", "qcow2", "-b", str(image.disk), "-F", "raw", str(overlay)],
                       check=True, capture_output=True, timeout=60)
        host_key = directory / "ssh_host_ed25519_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(host_key)],
                       check=True, capture_output=True, timeout=20)
        append = " ".join([
            "root=/dev/vda", "rw", "console=ttyS0", "panic=-1", "net.ifnames=0", "systemd.unified_cgroup_hierarchy=1",
            "systemd.firstboot=off",  # an empty machine-id is a first boot: never wait for answers on the console
            f"systemd.hostname={name}", f"ip={address}::{gateway}:255.255.255.0::eth0:none",
            f"kdlib.authorized_key={_b64(hosts.key.with_suffix('.pub'))}", f"kdlib.host_key={_b64(host_key)}",
        ])
        accel = os.environ.get("KDLIB_VM_ACCEL", "tcg")
        pidfile = directory / "qemu.pid"
        argv = [
            QEMU, "-name", MARKER + name, "-nodefaults", "-no-reboot",
            "-accel", f"{accel},tb-size=256" if accel == "tcg" else accel, "-cpu", "max",
            "-m", str(self.memory_mib), "-smp", "1", "-uuid", str(uuid.uuid5(uuid.NAMESPACE_DNS, name)),
            "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", append,
            # cache=unsafe: the overlay is thrown away, so flushes need not reach the disk (etcd's fdatasync took
            # 1.6 s through an emulated disk and its requests timed out: kubeadm init never became healthy).
            "-drive", f"file={overlay},if=virtio,format=qcow2,cache=unsafe",
            "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=n0,mac={_mac(name)}",
            "-device", "virtio-rng-pci", "-display", "none", "-serial", f"file:{directory / 'console.log'}",
            "-monitor", "none", "-daemonize", "-pidfile", str(pidfile),
        ]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise VmsUnavailable(f"qemu for {name} failed ({result.returncode}): {result.stderr.strip()[-800:]}")
        pid = int(pidfile.read_text())
        self._pids.append(pid)
        for args in (("link", "set", tap, "master", bridge), ("link", "set", tap, "up")):
            sshhosts._ip(*args)
        public = host_key.with_suffix(".pub").read_text().split()
        return name, address, pid, directory, f"{public[0]} {public[1]}"

    def power_off(self, vm: TestVm) -> None:
        """A fault: the VM loses power (its qemu is killed)."""
        if _kill_and_wait([vm.pid]):
            raise VmsUnavailable(f"qemu of {vm.name} (pid {vm.pid}) did not die")

    def destroy(self) -> dict[str, list]:
        """Kill every VM by PID, remove the overlays, then the namespace hosts and the bridge.
        Returns what remains (empty lists when the clean-up is complete)."""
        prefix = self.hosts_factory.slot_prefix
        ours = set(_qemu_pids(MARKER + prefix)) if prefix else set()
        alive = _kill_and_wait([p for p in self._pids if p in ours])
        for directory in self._dirs:
            shutil.rmtree(directory, ignore_errors=True)
        self._pids, self.vms = [], []
        still = self.hosts_factory.destroy()
        still["vm_pids"] = alive + (_qemu_pids(MARKER + prefix) if prefix else [])
        still["vm_dirs"] = [str(d) for d in self._dirs if d.exists()]
        self._dirs = []
        return still


def _wait_ssh(name: str, address: str, pid: int, directory: Path, deadline: float) -> None:
    """Wait until the VM's sshd answers with its banner (QEMU-side resets come first)."""
    while True:
        if not Path(f"/proc/{pid}").exists() or _state(pid) == "Z":
            raise VmsUnavailable(f"qemu of {name} exited during boot: {_console_tail(directory)}")
        if sshhosts.answers_ssh(address, connect_timeout=2, banner_timeout=5):
            return
        if time.monotonic() > deadline:
            raise VmsUnavailable(f"{name} did not answer SSH on {address}:22 in time: {_console_tail(directory)}")
        time.sleep(0.5)


def _console_tail(directory: Path, lines: int = 15) -> str:
    try:
        return "\n".join((directory / "console.log").read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no console log)"


def ssh_argv(vm: TestVm, key: Path, known_hosts: Path) -> list[str]:
    return ["ssh", "-i", str(key), "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=20", "-F", "/dev/null", f"root@{vm.address}"]


def sync_clock(vm: TestVm, key: Path, known_hosts: Path) -> None:
    """Set the VM's clock to this machine's, as NTP would on a cluster (the virtual RTC has
    whole seconds): the time is written once the remote shell is waiting for it, so only a
    line's one-way trip is lost."""
    process = subprocess.Popen([*ssh_argv(vm, key, known_hosts), "echo ready; read t; date -u -s @$t >/dev/null; "
                                "echo done"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdin is not None
        if process.stdout.readline().strip() != "ready":
            raise VmsUnavailable(f"{vm.name}: the clock could not be set (no shell)")
        process.stdin.write(f"{time.time():.6f}\n")
        process.stdin.flush()
        if process.stdout.readline().strip() != "done":
            raise VmsUnavailable(f"{vm.name}: the clock could not be set")
    finally:
        process.kill()
        process.wait(timeout=10)
