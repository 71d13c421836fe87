"""Real kubelets on SSH workers: containerd and a kubelet on each ``kubelet: true`` host.

A worker is set up as the local backend's real nodes are, with the same configuration
built as data (:mod:`kdlib.cluster.node`), but on the host itself:

* files: the node's configuration, containerd's root and the overlays' upper layers live
  in ``/tmp/kdlib-<id>/`` (``<id>``: a hash of the cluster directory and the host name;
  short, because unix socket paths are limited to 108 bytes); pid files and logs in the
  host's cluster directory, as for every detached process;
* mounts: containerd starts in a private mount namespace (``unshare --mount``) in which
  ``/var/lib``, ``/var/log``, ``/run`` and ``/usr/libexec`` are overlays, so the fixed paths
  of the kubelet and containerd never touch the host's; the kubelet joins it (``nsenter``);
* network: the host's own; pods sit on a CNI bridge ``kdcni0`` with ``10.244.<i>.0/24``,
  which the bridge plugin creates with the first pod and the clean-up deletes;
* cgroups: ``/kdlib-<id>`` (cgroup v1: in every hierarchy; v2: in the unified tree) is the
  kubelet's ``cgroupRoot``; its pods and containers are found and killed there. Where systemd
  is PID 1 (a user's node), containerd and the kubelet use the systemd cgroup driver, as
  kubeadm recommends there: the root is the slice ``kdlib_<id>.slice`` (a unit file in
  ``/run/systemd/system``, removed at the end), each pod a slice in it, each container a
  scope, and the sockets of D-Bus and systemd stay visible in the private mount namespace;
* sysctls: the kubelet changes a few (``vm.overcommit_memory``, ``kernel.panic``, ...);
  their values before are recorded in the host's directory and written back.

:func:`teardown` works from the host's files alone, so ``down`` after a crash cleans up.
The host needs root, containerd, runc, ctr, the CNI plugins bridge/host-local/loopback,
nsenter, unshare and the overlay filesystem; :func:`check` names what is missing.
Tested on cgroup v1 hosts without systemd (namespace test hosts) and on systemd + cgroup v2
hosts (Debian 12 VMs, ``tests/integration/vm/``); systemd with cgroup v1 is not tested.

Long because the host-side steps (prepare, wait for containerd, read process starts, kill,
remove) are shell scripts kept beside the Python that runs them, each covering cgroup v1 and
v2 and both cgroup drivers; split, each script would lose the one place that reads its output.
"""

from __future__ import annotations

import hashlib
import logging
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kubernetes import client

from ...errors import ComponentError, RemoteError
from ..controlplane import pki
from ..node import config, identity, images, ready
from ..node.layout import NodeLayout
from . import detached
from .inventory import Host, Inventory
from .remote import Remote

log = logging.getLogger(__name__)

REQUIRED_COMMANDS = ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "nsenter", "unshare", "mount", "ip")
CNI_DIRS = ("/usr/lib/cni", "/opt/cni/bin", "/usr/libexec/cni")
CNI_BRIDGE = config.CNI_BRIDGE
# What the kubelet writes at start (its container manager's kernel tunables), and the CNI
# bridge plugin with the first pod (isGateway turns forwarding on: on a host of its own, not
# a namespace, that outlives the worker); recorded as they were before, and written back at
# the end while they still hold these values.
KUBELET_SETS = {"vm.overcommit_memory": "1", "vm.panic_on_oom": "0", "kernel.panic": "10",
                "kernel.panic_on_oops": "1", "kernel.keys.root_maxkeys": "1000000",
                "kernel.keys.root_maxbytes": "25000000", "net.ipv4.ip_forward": "1"}
INSTALL_HINT = "Debian/Ubuntu: apt-get install containerd runc containernetworking-plugins"
# Under an overlaid /run, the sockets runc and the kubelet reach systemd by (systemd cgroup driver).
SYSTEMD_SOCKETS = ("/run/dbus", "/run/systemd")


@dataclass(frozen=True)
class HostFacts:
    """What :func:`check` found on a kubelet worker that its configuration depends on."""

    cni_dir: str
    systemd: bool      # systemd is PID 1: the systemd cgroup driver
    cgroup_v2: bool

    @property
    def cgroup_driver(self) -> str:
        return "systemd" if self.systemd else "cgroupfs"


@dataclass(frozen=True)
class Worker:
    """A kubelet host's names and paths."""

    host: Host
    index: int
    cluster_dir: str

    @property
    def name(self) -> str:
        return self.host.name

    @property
    def address(self) -> str:
        return self.host.address

    @property
    def ident(self) -> str:
        return hashlib.sha256(f"{self.cluster_dir}/{self.host.name}".encode()).hexdigest()[:10]

    @property
    def root(self) -> PurePosixPath:
        return PurePosixPath(f"/tmp/kdlib-{self.ident}")

    @property
    def cgroup(self) -> str:
        return f"/kdlib-{self.ident}"

    @property
    def layout(self) -> NodeLayout:
        """The node's paths on its host: its root holds its sockets and the kubelet's root too."""
        return NodeLayout(self.name, self.address, self.index, self.root, self.root, self.cgroup)

    @property
    def host_dir(self) -> str:
        return f"{self.cluster_dir}/{self.host.name}"


def workers(inventory: Inventory) -> dict[str, Worker]:
    """The inventory's kubelet workers by name; a worker's index picks its pod range."""
    return {w.name: Worker(w, i, inventory.cluster_dir()) for i, w in enumerate(inventory.kubelet_workers)}


# -- before anything starts ----------------------------------------------------------------

_CHECK = r"""
missing=""
for c in {commands}; do command -v $c >/dev/null 2>&1 || missing="$missing $c"; done
cni=""
for d in {cni_dirs}; do
  [ -x $d/bridge ] && [ -x $d/host-local ] && [ -x $d/loopback ] && {{ cni=$d; break; }}
done
[ -n "$cni" ] || missing="$missing CNI-plugins(bridge,host-local,loopback)"
grep -qw overlay /proc/filesystems || missing="$missing overlay-filesystem"
[ "$(id -u)" = 0 ] || missing="$missing root"
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then echo "cgroup v2"
elif [ -d /sys/fs/cgroup/memory ]; then echo "cgroup v1"
else missing="$missing cgroups"; fi
ip link show {bridge} >/dev/null 2>&1 && echo "bridge-exists"
[ -d /run/systemd/system ] && echo "systemd"
echo "cni $cni"
echo "missing$missing"
"""


def check(remote: Remote) -> HostFacts:
    """Raise naming the host and every missing prerequisite; returns the CNI plugin directory
    and whether systemd is PID 1 (``/run/systemd/system``, as ``sd_booted()`` tells) and cgroup v2."""
    script = _CHECK.format(commands=" ".join(REQUIRED_COMMANDS), cni_dirs=" ".join(CNI_DIRS), bridge=CNI_BRIDGE)
    out = remote.run(f"sh -c {shlex.quote(script)}", timeout=30).stdout.splitlines()
    missing = next((line.split()[1:] for line in out if line.startswith("missing")), [])
    if missing:
        raise RemoteError(remote.host.name, "(prerequisites of a kubelet worker)",
                          f"missing: {', '.join(missing)} ({INSTALL_HINT})")
    if "bridge-exists" in out:
        raise RemoteError(remote.host.name, f"ip link show {CNI_BRIDGE}",
                          f"a network device {CNI_BRIDGE} exists and was not made by this run: refusing to use "
                          "or delete it (`python -m kdlib ssh down` removes one of ours)")
    return HostFacts(next(line.split(maxsplit=1)[1] for line in out if line.startswith("cni ")),
                     "systemd" in out, "cgroup v2" in out)


# -- files ----------------------------------------------------------------------------------

def stage(worker: Worker, staging: Path, *, ca: pki.KeyPair, server: str, facts: HostFacts, sleeper: Path) -> Path:
    """Write the worker's tree (shipped whole to ``worker.root``) under ``staging``; returns it.
    Its client certificate is issued here, signed by the cluster CA."""
    keys = staging / "keys"
    tree = staging / "tree"
    keys.mkdir(parents=True, exist_ok=True)
    node = worker.layout
    config.write_tree(tree, node, worker.root / "ca.crt", facts.cni_dir,
                      extra_directories=(str(node.kubelet_root.relative_to(node.root)),), systemd=facts.systemd)
    pair = pki.issue(ca, keys, f"{worker.name}-client", f"system:node:{worker.name}",
                     organizations=("system:nodes",))
    pki.write_kubeconfig(tree / "kubelet.kubeconfig", server, ca, pair, f"system:node:{worker.name}")
    shutil.copy(ca.cert, tree / "ca.crt")
    images.build_archive(sleeper, tree / "sleeper.tar")
    return tree


# -- start ----------------------------------------------------------------------------------

# The kubelet's cgroup root: ``/a-b`` in each cgroup v1 hierarchy or the v2 tree (cgroupfs
# driver), or the slice ``a_b.slice`` (systemd driver: the kubelet escapes "-" as "_").
_CGROUPS = r"""
CG={cgroup}; SLICE=$(echo "${{CG#/}}" | tr - _).slice
cgdirs() {{
  if [ -f /sys/fs/cgroup/cgroup.controllers ]; then ls -d /sys/fs/cgroup$CG /sys/fs/cgroup/$SLICE 2>/dev/null
  else ls -d /sys/fs/cgroup/*$CG /sys/fs/cgroup/*/$SLICE 2>/dev/null; fi
}}
"""

_PREPARE = _CGROUPS + r"""
set -e
HD={host_dir}
mkdir -p "$HD" {root}
[ -f "$HD/sysctls.before" ] || while read n k; do
  f=/proc/sys/$(echo $n | tr . /); if [ -r $f ]; then echo "$n $(cat $f) $k"; fi; done > "$HD/sysctls.before" <<EOF
{sysctls}
EOF
# cgroup v2: the controllers on at the top, as found (runc and the kubelet turn on every one they can).
if [ -f /sys/fs/cgroup/cgroup.controllers ] && [ ! -f "$HD/controllers.before" ]; then
  cat /sys/fs/cgroup/cgroup.subtree_control > "$HD/controllers.before"
fi
if [ {systemd} = 1 ]; then
  touch "$HD/slice.ours"
  # Accounting and AllowedCPUs: systemd then keeps on the controllers the kubelet checks (cpu, memory, pids, cpuset).
  printf '[Unit]\nDescription=kdlib: the pods of the kubelet worker in %s\n[Slice]\nCPUAccounting=yes\nMemoryAccounting=yes\nTasksAccounting=yes\nAllowedCPUs=%s\n' \
    "$HD" "$(cat /sys/fs/cgroup/cpuset.cpus.effective 2>/dev/null || echo 0)" > /run/systemd/system/$SLICE
  systemctl daemon-reload
  systemctl start $SLICE
elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then mkdir -p /sys/fs/cgroup$CG
else
  for h in /sys/fs/cgroup/*/; do
    [ -f "$h/cgroup.procs" ] || continue
    mkdir -p "$h${{CG#/}}"
    if [ -f "$h/cpuset.cpus" ]; then cat "$h/cpuset.cpus" > "$h${{CG#/}}/cpuset.cpus"; cat "$h/cpuset.mems" > "$h${{CG#/}}/cpuset.mems"; fi
  done
fi
if [ -f /sys/fs/cgroup/cgroup.controllers ]; then
  # The kubelet refuses a v2 cgroup root that lacks one of these: enable the missing at the top (undone at the end).
  for c in cpu cpuset memory hugetlb pids; do
    grep -qw $c /sys/fs/cgroup/cgroup.controllers || continue
    grep -qw $c /sys/fs/cgroup/cgroup.subtree_control && continue
    echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control
  done
fi
touch "$HD/bridge.ours"
"""

_WAIT_CONTAINERD = r"""
PID={pid}; SOCK={socket}
i=0
while [ $i -lt {tenths} ]; do
  [ -S $SOCK ] && ctr --address $SOCK version >/dev/null 2>&1 && break
  [ -d /proc/$PID ] || {{ echo "containerd exited"; exit 4; }}
  sleep 0.1; i=$((i+1))
done
[ $i -lt {tenths} ] || {{ echo "containerd's socket did not answer"; exit 5; }}
stat -L -c %i /proc/$PID/ns/mnt > {host_dir}/containerd.mntns
ctr --address $SOCK --namespace k8s.io images import {archive} >/dev/null
"""


def start(remote: Remote, worker: Worker, tree: Path, kubelet: str, facts: HostFacts, *, wait: float = 60.0) -> None:
    """Prepare the host (cgroups, recorded sysctls), ship the tree, start containerd, import
    the image and start the kubelet. Raises naming the host; the caller cleans up."""
    q = shlex.quote
    remote.run("sh -c " + q(_PREPARE.format(host_dir=q(worker.host_dir), cgroup=q(worker.cgroup),
                                            systemd=int(facts.systemd), root=q(str(worker.root)),
                                            sysctls="\n".join(f"{n} {v}" for n, v in KUBELET_SETS.items()))))
    remote.put_tree(tree, str(worker.root))
    node = worker.layout
    containerd_toml = worker.root / config.CONTAINERD_TOML
    script = config.containerd_script(node, containerd_toml, SYSTEMD_SOCKETS if facts.systemd else ())
    containerd = detached.start(remote, "containerd", ("unshare", "--mount", "--propagation", "private", "--",
                                                        "sh", "-c", script), worker.host_dir,
                                shows=("containerd", "--config", str(containerd_toml)), wait=10)
    result = remote.run("sh -c " + q(_WAIT_CONTAINERD.format(
        pid=containerd.pid, socket=q(str(node.containerd_socket)), tenths=int(wait * 10),
        host_dir=q(worker.host_dir), archive=q(str(worker.root / "sleeper.tar")))), check=False,
        timeout=wait + 60)
    if not result.ok:
        raise ComponentError("containerd", f"on {worker.name}: {result.stdout.strip() or 'start-up failed'}",
                             tail(remote, worker, "containerd"))
    argv = config.kubelet_argv(node, kubelet, worker.root / config.KUBELET_YAML, worker.root / "kubelet.kubeconfig")
    detached.start(remote, "kubelet", ("nsenter", f"--mount=/proc/{containerd.pid}/ns/mnt", "--", *argv),
                   worker.host_dir, shows=argv, wait=10)


def wait_ready(api: client.ApiClient, workers: dict[str, tuple[Remote, Worker]], deadline: float) -> None:
    """Poll until every worker's Node is Ready; a kubelet or containerd that died is named."""
    last_check = [time.monotonic()]

    def alive() -> None:
        if time.monotonic() - last_check[0] <= 2:  # one SSH round trip per host every 2 s, not every poll
            return
        last_check[0] = time.monotonic()
        for remote, worker in workers.values():
            for name in ("containerd", "kubelet"):
                if detached.status(remote, name, None, worker.host_dir) is None:
                    raise ComponentError(name, f"exited on {worker.name}", tail(remote, worker, name))

    def late(missing: list[str]) -> ComponentError:
        remote, worker = workers[missing[0]]
        return ComponentError("kubelet", f"node {', '.join(missing)} not Ready before the start-up deadline",
                              tail(remote, worker, "kubelet"))

    ready.wait_ready(api, workers, selector=identity.SELECTOR, deadline=deadline, interval=0.3, check=alive,
                     error=late)


def tail(remote: Remote, worker: Worker, name: str) -> str:
    return detached.log_tail(remote, worker.host_dir, name, lines=20)


# -- measurement ------------------------------------------------------------------------------

_PROCESS_STARTS = _CGROUPS + r"""
echo "ticks $(getconf CLK_TCK)"
for top in $(cgdirs); do
  case $top in /sys/fs/cgroup/*/*) case $top in /sys/fs/cgroup/pids/*) ;; *) continue;; esac;; esac  # v1: one hierarchy
  find $top -name cgroup.procs 2>/dev/null
done | while read f; do
  # cgroupfs: .../pod<uid>/<container>; systemd: ...-pod<uid with _ for ->.slice/cri-containerd-<id>.scope
  pod=$(echo $f | grep -o 'pod{uid}' | head -n1)
  [ -n "$pod" ] || continue
  for pid in $(cat $f 2>/dev/null); do
    start=$(cut -d')' -f2 /proc/$pid/stat 2>/dev/null | cut -d' ' -f21)
    [ -n "$start" ] && echo "$pod $start"
  done
done
"""


_UID = r"[0-9a-f]\{8\}[-_][0-9a-f]\{4\}[-_][0-9a-f]\{4\}[-_][0-9a-f]\{4\}[-_][0-9a-f]\{12\}"  # grep's BRE


def pod_process_starts(remote: Remote, cgroup: str) -> dict[str, list[float]]:
    """Each pod's process start times under a kubelet's ``cgroup`` on a host, by pod uid, in
    this machine's ``time.monotonic()`` seconds (sandbox first). A start is counted in ticks of
    the host's boot clock, placed on this machine's clock by :func:`host_boot`."""
    out = remote.run("sh -c " + shlex.quote(_PROCESS_STARTS.format(cgroup=shlex.quote(cgroup), uid=_UID)),
                     check=False, timeout=60).stdout.splitlines()
    if not out or not out[0].startswith("ticks "):
        return {}
    if len(out) == 1:  # no pod process: nothing to place on this machine's clock (the teardown wait's usual answer)
        return {}
    ticks = float(out[0].split()[1])
    boot = host_boot(remote)
    starts: dict[str, list[float]] = {}
    for line in out[1:]:
        pod, tick = line.split()
        uid = pod[len("pod"):].replace("_", "-")
        starts.setdefault(uid, []).append(boot + int(tick) / ticks)
    return {uid: sorted(times) for uid, times in starts.items()}


_CLOCK_WARNED: set[str] = set()


def host_boot(remote: Remote) -> float:
    """When the host booted, in this machine's ``time.monotonic()`` seconds.

    Its boot clock (``/proc/uptime``, what ``/proc/PID/stat`` counts from) and wall clock are
    read in one command between two readings of this machine's clock. Where the wall clocks
    agree (NTP), the boot is placed through them (to the ms); where they disagree by more than
    that round trip can tell (an emulated VM's drifted by a second in ten minutes; a cluster
    without NTP), by the round trip itself, to within half of it, and a warning says so."""
    before = time.monotonic()
    # date first, then the shell's own read: no process starts between the two clocks' readings
    uptime, wall = (float(x) for x in remote.run('d=$(date +%s.%N); read u _ < /proc/uptime; echo "$u $d"',
                                                 timeout=60).stdout.split())
    after = time.monotonic()
    by_wall = wall - uptime - (time.time() - time.monotonic())
    by_trip = (before + after) / 2 - uptime
    if abs(by_wall - by_trip) <= (after - before) / 2 + 0.01:  # + /proc/uptime's 10 ms
        return by_wall
    if remote.host.name not in _CLOCK_WARNED:
        _CLOCK_WARNED.add(remote.host.name)
        log.warning("%s: its clock differs from this machine's by %.3f s; its pods' process start times are "
                    "placed by a %.0f ms round trip instead (run NTP on the nodes for ms precision)",
                    remote.host.name, by_wall - by_trip, (after - before) * 1000)
    return by_trip


# -- clean-up ---------------------------------------------------------------------------------

_KILL_CONTAINERS = _CGROUPS + r"""
HD={host_dir}
procs() {{
  for d in $(cgdirs); do [ -d $d ] && find $d -name cgroup.procs -exec cat {{}} + 2>/dev/null; done | sort -u
}}
# systemd: stopping the slice stops every pod slice and container scope in it, killing their processes.
if [ -f "$HD/slice.ours" ] && [ -d /run/systemd/system ]; then systemctl stop $SLICE 2>/dev/null; fi
i=0
while [ $i -lt 50 ]; do p=$(procs); [ -z "$p" ] && exit 0; kill -KILL $p 2>/dev/null; sleep 0.1; i=$((i+1)); done
echo "still running in $CG: $(procs | head -n 5 | tr '\n' ' ')"; exit 1
"""

_REMOVE = _CGROUPS + r"""
HD={host_dir}; ROOT={root}; problems=""
if [ -f "$HD/containerd.mntns" ]; then
  ns=$(cat "$HD/containerd.mntns")
  for p in /proc/[0-9]*; do
    [ "$(stat -L -c %i $p/ns/mnt 2>/dev/null)" = "$ns" ] || continue
    case "$(readlink $p/exe 2>/dev/null)" in *containerd-shim*) kill -KILL ${{p#/proc/}} 2>/dev/null;; esac
  done
  sleep 0.2
fi
if [ -f "$HD/slice.ours" ] && [ -d /run/systemd/system ]; then systemctl stop $SLICE 2>/dev/null; fi
for d in $(cgdirs); do
  [ -d $d ] || continue
  i=0; while [ $i -lt 30 ] && [ -d $d ]; do find $d -depth -type d -exec rmdir {{}} + 2>/dev/null; [ -d $d ] && sleep 0.1; i=$((i+1)); done
  [ -d $d ] && problems="$problems cgroup:$d"
done
if [ -f "$HD/slice.ours" ]; then
  rm -f /run/systemd/system/$SLICE && systemctl daemon-reload || problems="$problems unit:$SLICE"
  rm -f "$HD/slice.ours"
fi
if [ -f "$HD/controllers.before" ]; then
  # Off again at the top: what was not on before (ours, runc's, the kubelet's). Best effort: one
  # someone else has come to use since stays on (the write fails while a child cgroup uses it).
  for c in $(cat /sys/fs/cgroup/cgroup.subtree_control); do
    grep -qw $c "$HD/controllers.before" || echo "-$c" > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null
  done
  rm -f "$HD/controllers.before"
fi
if [ -f "$HD/sysctls.before" ]; then
  # Written back only while it still holds the kubelet's value: a later change is someone else's.
  while read n v k; do
    f=/proc/sys/$(echo $n | tr . /); now=$(cat $f 2>/dev/null)
    if [ "$now" != "$v" ] && [ "$now" = "$k" ]; then echo "$v" > $f || problems="$problems sysctl:$n"; fi
  done < "$HD/sysctls.before"
  rm -f "$HD/sysctls.before"
fi
if [ -f "$HD/bridge.ours" ]; then ip link del {bridge} 2>/dev/null; rm -f "$HD/bridge.ours"; fi
rm -rf "$ROOT" "$HD/containerd.mntns" || problems="$problems files:$ROOT"
[ -z "$problems" ] || {{ echo "left:$problems"; exit 1; }}
"""


def teardown(remote: Remote, worker: Worker, timeout: float = 10.0) -> dict[str, str]:
    """Stop the kubelet, its containers, containerd and its shims; remove the cgroups, the
    bridge and the files; write the sysctls back. Works from the host's files alone."""
    q = shlex.quote
    stopped = {"kubelet": detached.stop(remote, "kubelet", None, worker.host_dir, timeout=timeout)}
    killed = remote.run("sh -c " + q(_KILL_CONTAINERS.format(cgroup=q(worker.cgroup), host_dir=q(worker.host_dir))),
                        check=False, timeout=60)
    stopped["containerd"] = detached.stop(remote, "containerd", None, worker.host_dir, timeout=timeout)
    removed = remote.run("sh -c " + q(_REMOVE.format(host_dir=q(worker.host_dir), cgroup=q(worker.cgroup),
                                                      root=q(str(worker.root)), bridge=CNI_BRIDGE)),
                         check=False, timeout=60)
    if not killed.ok or not removed.ok:
        raise RemoteError(worker.name, "(kubelet worker clean-up)", "not fully cleaned",
                          (killed.stdout + removed.stdout).strip())
    return stopped
