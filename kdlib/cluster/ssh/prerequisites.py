"""What a host needs before kubeadm can make it a node, checked over SSH in one command.

Each check is data: a name, a POSIX shell test, and what is missing when it fails. All
checks run in one script per host; the answer lists every missing thing at once, so a
user fixes a host in one pass. :func:`check_hosts` raises one :class:`RemoteError`
naming every host that lacks something and what. kubeadm's own preflight runs later and
checks more (ports, files, versions); these are the things it assumes a package
installation did (containerd with its CRI plugin, kernel settings, tools).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from ...errors import RemoteError
from .kubeadm_config import CONTAINERD_SOCKET
from .remote import Hosts, Remote


@dataclass(frozen=True)
class Prerequisite:
    name: str
    test: str      # a shell test; exit 0 when the host has it
    missing: str   # what the user must provide when it fails


def prerequisites(cri_socket: str = CONTAINERD_SOCKET) -> tuple[Prerequisite, ...]:
    socket = cri_socket.removeprefix("unix://")
    # Not socat: containerd's CRI forwards ports itself (socat served dockershim's port-forward).
    tools = ("conntrack", "iptables", "ip", "mount", "nsenter")
    return (
        Prerequisite("root", '[ "$(id -u)" = 0 ]', "root (kubeadm writes /etc/kubernetes and runs containers)"),
        Prerequisite("cri", f"[ -S {shlex.quote(socket)} ]", f"containerd listening on {cri_socket} (the CRI)"),
        Prerequisite("cri-plugin", "! grep -Eqs '^[[:space:]]*disabled_plugins.*\"cri\"' /etc/containerd/config.toml",
                     "containerd's CRI plugin enabled (/etc/containerd/config.toml disables \"cri\")"),
        Prerequisite("swap", '[ "$(tail -n +2 /proc/swaps | wc -l)" = 0 ]',
                     "swap off (swapoff -a: the kubelet refuses to start with swap on)"),
        Prerequisite("br_netfilter", '[ "$(cat /proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null)" = 1 ]',
                     "br_netfilter loaded and net.bridge.bridge-nf-call-iptables=1"),
        Prerequisite("ip_forward", '[ "$(cat /proc/sys/net/ipv4/ip_forward)" = 1 ]', "net.ipv4.ip_forward=1"),
        Prerequisite("cgroups", "grep -qs ' cgroup2\\? ' /proc/mounts", "cgroups mounted under /sys/fs/cgroup"),
        *(Prerequisite(tool, f"command -v {tool} >/dev/null", f"`{tool}` on PATH") for tool in tools),
    )


def script(checks: tuple[Prerequisite, ...]) -> str:
    """One shell script printing ``missing NAME`` per failed check (always exit 0); each
    test runs in a subshell, so one that exits cannot end the others."""
    return "\n".join(f"( {c.test} ) 2>/dev/null || echo missing {c.name}" for c in checks) + "\nexit 0\n"


def missing(remote: Remote, checks: tuple[Prerequisite, ...] | None = None) -> list[Prerequisite]:
    """The prerequisites ``remote`` lacks."""
    checks = checks if checks is not None else prerequisites()
    out = remote.run(f"sh -c {shlex.quote(script(checks))}", timeout=30).stdout.split("\n")
    names = {line.split(" ", 1)[1] for line in out if line.startswith("missing ")}
    return [c for c in checks if c.name in names]


def check_hosts(hosts: Hosts, names: list[str], checks: tuple[Prerequisite, ...] | None = None) -> None:
    """Raise one RemoteError naming every host that lacks something, and what."""
    found = hosts.each(lambda r: missing(r, checks), hosts=names)
    found.check()  # an unreachable host is its own error
    lacking = {host: items for host, items in found.items() if items}
    if lacking:
        def needs(items: list[Prerequisite]) -> str:
            return "; ".join(p.missing for p in items)

        if len(lacking) == 1:
            reason = "missing prerequisites: " + needs(next(iter(lacking.values())))
        else:
            reason = "missing prerequisites: " + " | ".join(f"{h}: {needs(i)}" for h, i in lacking.items())
        raise RemoteError(", ".join(lacking), "kubeadm prerequisite checks", reason)
