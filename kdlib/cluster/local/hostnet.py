"""The machine-level pieces of real nodes: a private bridge, one network namespace per
node, the sysctls the kubelet changes, and whether this machine can run real nodes.

The bridge holds a private /24 that exists only on this machine: the namespaces get no
default route and forwarding stays off on the host, so nothing leaves the bridge. The
apiserver listens on the bridge's host-side address, which the host itself and the node
namespaces reach. Every name starts with ``kdrn`` and a short hash of the cluster's state
directory, so that two clusters never collide and ``down`` finds its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ...errors import ClusterError

log = logging.getLogger(__name__)

SUBNET_POOL = ipaddress.ip_network("172.30.0.0/16")  # one /24 of it per cluster
# What the kubelet sets at start (pkg/kubelet/cm: setupKernelTunables) and the CNI bridge
# plugin turns on; the first group is machine-wide, so it is restored on the way down.
KUBELET_SYSCTLS = ("vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
                    "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes")
REQUIRED_COMMANDS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "ip", "nsenter", "unshare",
                     "mount", "iptables", "conntrack")
CNI_DIR = Path("/usr/lib/cni")
REQUIRED_CNI = ("bridge", "host-local", "loopback")
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "pids", "devices", "freezer", "blkio")
CAP_NET_ADMIN, CAP_SYS_ADMIN = 12, 21


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if check and result.returncode != 0:
        raise ClusterError(f"`{' '.join(argv)}` failed (exit {result.returncode}): {result.stderr.strip()}")
    return result


def cluster_tag(state_dir: Path) -> str:
    """``kdrn`` + 6 hex digits of the state directory: the prefix of every name of ours."""
    return "kdrn" + hashlib.sha256(str(state_dir).encode()).hexdigest()[:6]


@dataclass(frozen=True)
class HostNetwork:
    """The bridge of one cluster and the addresses on it."""

    tag: str
    subnet: str  # e.g. 172.30.7.0/24

    @property
    def bridge(self) -> str:
        return self.tag  # 10 characters: within the kernel's 15

    @property
    def host_address(self) -> str:
        return str(ipaddress.ip_network(self.subnet).network_address + 1)

    def node_address(self, index: int) -> str:
        return str(ipaddress.ip_network(self.subnet).network_address + 10 + index)

    def netns(self, index: int) -> str:
        return f"{self.tag}-n{index}"

    def veth(self, index: int) -> tuple[str, str]:
        """(host side, node side) of node ``index``'s veth pair."""
        return f"{self.tag}h{index}", f"{self.tag}n{index}"

    def to_json(self) -> dict:
        return {"tag": self.tag, "subnet": self.subnet}

    @classmethod
    def from_json(cls, data: dict) -> "HostNetwork":
        return cls(data["tag"], data["subnet"])


def _subnets_in_use() -> list[ipaddress.IPv4Network]:
    out = _run("ip", "-4", "-j", "addr", "show").stdout
    used = []
    for link in json.loads(out or "[]"):
        for address in link.get("addr_info", []):
            used.append(ipaddress.ip_network(f"{address['local']}/{address['prefixlen']}", strict=False))
    return used


def choose_network(state_dir: Path) -> HostNetwork:
    """A /24 of the pool that no address on this machine uses, starting from the tag's hash."""
    tag = cluster_tag(state_dir)
    used = _subnets_in_use()
    subnets = list(SUBNET_POOL.subnets(new_prefix=24))
    start = int(tag[4:], 16) % len(subnets)
    for offset in range(len(subnets)):
        candidate = subnets[(start + offset) % len(subnets)]
        if not any(candidate.overlaps(u) for u in used):
            return HostNetwork(tag, str(candidate))
    raise ClusterError(f"no free /24 left in {SUBNET_POOL} for the real nodes' bridge")


def create_bridge(net: HostNetwork) -> None:
    prefix = ipaddress.ip_network(net.subnet).prefixlen
    _run("ip", "link", "add", net.bridge, "type", "bridge")
    _run("ip", "addr", "add", f"{net.host_address}/{prefix}", "dev", net.bridge)
    _run("ip", "link", "set", net.bridge, "up")


def create_node_netns(net: HostNetwork, index: int) -> None:
    """A network namespace with ``lo`` and one veth on the bridge; no default route."""
    ns, (host_side, node_side) = net.netns(index), net.veth(index)
    prefix = ipaddress.ip_network(net.subnet).prefixlen
    _run("ip", "netns", "add", ns)
    _run("ip", "link", "add", host_side, "type", "veth", "peer", "name", node_side)
    _run("ip", "link", "set", node_side, "netns", ns)
    _run("ip", "link", "set", host_side, "master", net.bridge, "up")
    _run("ip", "-n", ns, "addr", "add", f"{net.node_address(index)}/{prefix}", "dev", node_side)
    _run("ip", "-n", ns, "link", "set", node_side, "up")
    _run("ip", "-n", ns, "link", "set", "lo", "up")


def netns_path(name: str) -> Path:
    return Path("/run/netns") / name


def delete_node_netns(net: HostNetwork, index: int) -> None:
    """Delete the namespace and the veth (deleting either end deletes the pair)."""
    if netns_path(net.netns(index)).exists():
        _run("ip", "netns", "delete", net.netns(index), check=False)
    _run("ip", "link", "delete", net.veth(index)[0], check=False)


def delete_bridge(net: HostNetwork) -> None:
    _run("ip", "link", "delete", net.bridge, check=False)


def leftovers(tag: str) -> list[str]:
    """Links and namespaces whose names carry ``tag`` (what ``down`` must have removed)."""
    links = [link["ifname"] for link in json.loads(_run("ip", "-j", "link", "show").stdout or "[]")
             if link["ifname"].startswith(tag)]
    namespaces = [p.name for p in Path("/run/netns").glob(f"{tag}-*")] if Path("/run/netns").is_dir() else []
    return links + namespaces


# -- sysctls ------------------------------------------------------------------------------

def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctls(names: tuple[str, ...] = KUBELET_SYSCTLS) -> dict[str, str]:
    values = {}
    for name in names:
        try:
            values[name] = _sysctl_path(name).read_text().strip()
        except OSError:
            pass
    return values


SYSCTL_RECORD = Path(tempfile.gettempdir()) / "kdrn-sysctls.json"  # machine-wide, as the sysctls are


@contextlib.contextmanager
def _locked_record() -> Iterator[dict]:
    """The machine-wide sysctl record, under an exclusive lock; written back on exit."""
    lock = os.open(SYSCTL_RECORD.parent, os.O_RDONLY)  # the directory: no lock file is left behind
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            record = json.loads(SYSCTL_RECORD.read_text())
        except (OSError, ValueError):
            record = {}
        # Holders whose cluster is gone (its real-node record removed) no longer count.
        record["holders"] = [h for h in record.get("holders", []) if (Path(h) / "real-nodes.json").exists()]
        yield record
        if record["holders"]:
            SYSCTL_RECORD.write_text(json.dumps(record, indent=2))
        else:
            SYSCTL_RECORD.unlink(missing_ok=True)
    finally:
        os.close(lock)  # releases the lock


def claim_sysctls(state_dir: Path) -> None:
    """Record the sysctls as they are before the first kubelet of ours on this machine, once:
    with two clusters of real nodes the second must not take the first's changes for the originals."""
    with _locked_record() as record:
        if not record["holders"]:
            record["before"] = read_sysctls()
        if str(state_dir) not in record["holders"]:
            record["holders"].append(str(state_dir))


def release_sysctls(state_dir: Path) -> dict[str, tuple[str, str]]:
    """Drop this cluster's claim; the last one out restores the values (returned)."""
    with _locked_record() as record:
        record["holders"] = [h for h in record["holders"] if h != str(state_dir)]
        if record["holders"] or not record.get("before"):
            return {}
        return restore_sysctls(record["before"])


def restore_sysctls(before: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Write back every recorded value that changed; returns {name: (was, restored)}."""
    changed = {}
    for name, value in before.items():
        now = read_sysctls((name,)).get(name)
        if now is not None and now != value:
            try:
                _sysctl_path(name).write_text(value)
                changed[name] = (now, value)
            except OSError as error:
                log.warning("could not restore %s to %s: %s", name, value, error)
    return changed


# -- can this machine run real nodes? ----------------------------------------------------

def _has_capability(bit: int) -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> bit & 1)
    return False


def why_not_real_nodes() -> str | None:
    """Why this machine cannot run real nodes, or None when it can (nothing is changed)."""
    if os.geteuid() != 0:
        return "real nodes need root (network namespaces, mounts, cgroups)"
    for bit, name in ((CAP_SYS_ADMIN, "CAP_SYS_ADMIN"), (CAP_NET_ADMIN, "CAP_NET_ADMIN")):
        if not _has_capability(bit):
            return f"real nodes need {name}, which this process lacks"
    missing = [c for c in REQUIRED_COMMANDS if shutil.which(c) is None]
    if missing:
        return (f"missing {', '.join(missing)}: install Debian's containerd, runc, iptables, conntrack "
                "(`bash setup.sh` does)")
    missing = [p for p in REQUIRED_CNI if not (CNI_DIR / p).is_file()]
    if missing:
        return f"missing CNI plugins {', '.join(missing)} in {CNI_DIR}: install containernetworking-plugins"
    if "overlay" not in Path("/proc/filesystems").read_text():
        return "the kernel has no overlay filesystem (needed for the nodes' private paths and images)"
    if not (CGROUP_ROOT / "memory").is_dir() or not (CGROUP_ROOT / "cpu").is_dir():
        return f"no cgroup v1 hierarchies under {CGROUP_ROOT} (the real nodes use cgroupfs v1)"
    for controller in CGROUP_CONTROLLERS:
        if (CGROUP_ROOT / controller).is_dir() and not os.access(CGROUP_ROOT / controller, os.W_OK):
            return f"cgroup {CGROUP_ROOT / controller} is not writable"
    return None
