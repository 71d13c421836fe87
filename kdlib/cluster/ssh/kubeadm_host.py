"""What a kubeadm node keeps after ``kubeadm reset``, recorded before kdlib starts and undone after.

``kubeadm reset`` removes the contents of its directories, its kubeconfigs and the
containers, and says itself what it leaves: "The reset process does not clean CNI
configuration ... iptables rules ... kubeconfig files". On a systemd + cgroup v2 node (a
Debian 12 VM, ``tests/integration/vm/``) it also left, measured: the directories it and the
kubelet made (``/etc/kubernetes``, ``/var/lib/kubelet``, ``/var/lib/etcd``, ``/var/log/pods``,
...), the kubelet's kernel settings (``vm.overcommit_memory`` 0→1, ``kernel.panic`` 0→10,
...), its ``kubepods`` slices (active units after the kubelet stopped), its iptables and
ip6tables chains (``KUBE-KUBELET-CANARY``, ...), the CNI bridge and its IPAM files,
the workload image kdlib imported, the cgroup v2 controllers turned on at the top, and the
netfilter modules its rules loaded (``nf_conntrack``: its sysctls appeared). A user's node must
be as it was after ``down``.

So before anything starts, :func:`record` writes what the host had (``<host dir>/before``:
those paths, sysctl values, units, chains, the bridge, the image) and :func:`restore`
removes, after reset, only what was not there (a path that existed stays; a sysctl is
written back only while it still holds the kubelet's value: a later change is someone
else's). Both work from the host's files alone, so ``down`` after a killed owner restores too.
"""

from __future__ import annotations

import shlex

from ...errors import RemoteError
from ..node import identity
from .remote import Remote

BEFORE = "before"
# Made by kubeadm init/join, the kubelet (its root, pod logs, the control plane's
# DirectoryOrCreate volumes: /usr/libexec/kubernetes, /etc/ssl/certs; the pods' network namespaces) or the CNI plugins (IPAM state, configuration directory).
PATHS = ("/etc/kubernetes", "/etc/ssl/certs", "/etc/ssl", "/run/netns", "/var/lib/kubelet", "/var/lib/etcd", "/var/log/pods", "/var/log/containers",
         "/usr/libexec/kubernetes", "/etc/cni/net.d", "/var/lib/cni", "/run/kubernetes")
# The kubelet's container manager's kernel tunables, and forwarding (kubeadm's prerequisite; the
# bridge plugin's isGateway turns it on too): written back while they hold these values.
SYSCTLS = {"vm.overcommit_memory": "1", "vm.panic_on_oom": "0", "kernel.panic": "10", "kernel.panic_on_oops": "1",
           "kernel.keys.root_maxkeys": "1000000", "kernel.keys.root_maxbytes": "25000000"}
UNITS = ("kubepods-besteffort.slice", "kubepods-burstable.slice", "kubepods.slice")  # children first
CHAIN_PREFIXES = ("KUBE-", "CNI-")
TABLES = ("filter", "nat", "mangle")

_RECORD = r"""
HD={host_dir}
[ -f "$HD/{before}" ] && exit 0  # the first start's record stands (a retry after a failure keeps it)
mkdir -p "$HD"
{{
for p in {paths}; do [ -e $p ] && echo "path $p"; done
for n in {sysctls}; do f=/proc/sys/$(echo $n | tr . /); [ -r $f ] && echo "sysctl $n $(cat $f)"; done
if [ -d /run/systemd/system ]; then for u in {units}; do systemctl is-active --quiet $u && echo "unit $u"; done; fi
for x in iptables ip6tables; do for t in {tables}; do $x-save -t $t 2>/dev/null | sed -n 's/^:\([A-Z][^ ]*\) .*/\1/p' \
  | grep -E '^({chains})' | sed "s/^/chain $x $t /"; done; done
ip link show {bridge} >/dev/null 2>&1 && echo "link {bridge}"
ctr --address {socket} -n k8s.io images ls -q 2>/dev/null | grep -qx {image} && echo "image {image}"
[ -f /sys/fs/cgroup/cgroup.subtree_control ] && echo "controllers $(cat /sys/fs/cgroup/cgroup.subtree_control)"
cut -d' ' -f1 /proc/modules | sed 's/^/module /'
true
}} > "$HD/{before}.tmp" && mv "$HD/{before}.tmp" "$HD/{before}"
"""

_RESTORE = r"""
HD={host_dir}; B="$HD/{before}"; problems=""
[ -f "$B" ] || exit 0
had() {{ grep -qxF "$1" "$B"; }}
if [ -d /run/systemd/system ]; then
  for u in {units}; do had "unit $u" || systemctl stop $u 2>/dev/null; done
fi
for p in {paths}; do
  had "path $p" && continue
  [ -e $p ] || continue
  # Mounts in it, and on it (the kubelet bind-mounts its root on itself to share it): reset does not unmount every one.
  awk -v p="$p" '$2 == p || index($2, p "/") == 1 {{print $2}}' /proc/self/mounts | sort -r | while read m; do
    umount -l $m 2>/dev/null; done
  why=$(rm -rf $p 2>&1) || problems="$problems path:$p ($(echo "$why" | head -n 1))"
done
while read kind n v; do
  [ "$kind" = sysctl ] || continue
  f=/proc/sys/$(echo $n | tr . /); now=$(cat $f 2>/dev/null)
  case " {sets} " in *" $n=$now "*) [ "$now" != "$v" ] && {{ echo "$v" > $f || problems="$problems sysctl:$n"; }};; esac
done < "$B"
chains() {{ $x-save -t $t 2>/dev/null | sed -n 's/^:\([A-Z][^ ]*\) .*/\1/p' | grep -E '^({chains})'; }}
for x in iptables ip6tables; do for t in {tables}; do
  for c in $(chains); do
    had "chain $x $t $c" && continue
    # Rules jumping to it first (anywhere), then its own rules, then the chain.
    $x-save -t $t | grep -E -- "^-A .* -j $c( |$)" | sed 's/^-A/-D/' | while read -r rule; do
      eval $x -w -t $t $rule; done
    $x -w -t $t -F $c 2>/dev/null
  done
  for c in $(chains); do
    had "chain $x $t $c" || $x -w -t $t -X $c 2>/dev/null || problems="$problems chain:$x/$t/$c"
  done
done; done
had "link {bridge}" || {{ ! ip link show {bridge} >/dev/null 2>&1 || ip link del {bridge} || problems="$problems link:{bridge}"; }}
if ! had "image {image}"; then
  ctr --address {socket} -n k8s.io images rm {image} >/dev/null 2>&1
fi
# cgroup v2: the controllers turned on at the top (the kubelet's, systemd's for its slices) off again;
# best effort: one a child cgroup has come to use since stays on.
if grep -q "^controllers " "$B" && [ -f /sys/fs/cgroup/cgroup.subtree_control ]; then
  for c in $(cat /sys/fs/cgroup/cgroup.subtree_control); do
    grep "^controllers " "$B" | grep -qw $c || echo "-$c" > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null
  done
fi
# Netfilter modules the rules loaded (conntrack, nat, xt_*): unloaded when unused; best effort, twice
# (a module goes once the modules using it went).
for pass in 1 2; do
  for m in $(cut -d' ' -f1 /proc/modules | grep -E '^(nf_|xt_|nft_|ipt_|ip6t_|iptable_|ip6table_|x_tables|veth|bridge|stp|llc)'); do
    had "module $m" || modprobe -r $m 2>/dev/null
  done
done
[ -z "$problems" ] || {{ echo "left:$problems"; exit 1; }}
rm -f "$B"
"""


def _values(host_dir: str, bridge: str, cri_socket: str) -> dict[str, str]:
    q = shlex.quote
    return {"host_dir": q(host_dir), "before": BEFORE, "paths": " ".join(PATHS), "sysctls": " ".join(SYSCTLS),
            "units": " ".join(UNITS), "tables": " ".join(TABLES), "chains": "|".join(CHAIN_PREFIXES),
            "bridge": q(bridge), "socket": q(cri_socket.removeprefix("unix://")), "image": q(identity.WORKLOAD_IMAGE),
            "sets": " ".join(f"{n}={v}" for n, v in SYSCTLS.items())}


def record(remote: Remote, host_dir: str, bridge: str, cri_socket: str) -> None:
    """Write what the host has now (once: a later call keeps the first record)."""
    remote.run("sh -c " + shlex.quote(_RECORD.format(**_values(host_dir, bridge, cri_socket))), timeout=120)


def restore(remote: Remote, host_dir: str, bridge: str, cri_socket: str) -> None:
    """After ``kubeadm reset``: remove what the record says was not there; raises naming what stayed."""
    result = remote.run("sh -c " + shlex.quote(_RESTORE.format(**_values(host_dir, bridge, cri_socket))),
                        check=False, timeout=300)
    if not result.ok:
        left = (result.stdout + result.stderr).strip()
        raise RemoteError(remote.host.name, "(kubeadm node restore)", f"not fully restored: {left[-500:]}", left[-2000:])
