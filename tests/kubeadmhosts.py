"""SSH test hosts made ready for kubeadm: what a package installation does on a real host.

A test host (``tests/sshhosts.py``) shares this machine's filesystem, PID space and
cgroup hierarchies, and has no internet. To be a kubeadm node it gets, in its own mount
namespace (the private one ``ip netns exec`` gave its sshd, so nothing shows outside it):

* overlays on ``/etc``, ``/var/lib``, ``/var/log``, ``/run``, ``/usr/libexec`` (upper layers in the
  host's work directory), so kubeadm's fixed paths (``/etc/kubernetes``,
  ``/var/lib/kubelet``, ``/var/lib/etcd``, ``/run/containerd``) are the host's own; the
  hosts file is bound again on top; ``/var/lib/containerd`` is a plain directory bound
  over the overlay (containerd's overlayfs snapshots cannot live on an overlay: "failed
  to mount rootfs component ... invalid argument");
* a cgroup root ``/kdlib-<host>`` in each cgroup v1 hierarchy (which the test hosts
  mount again: ``ip netns exec`` mounts a fresh sysfs over them), so the host's kubelet
  never touches another's pods;
* ``net.ipv4.ip_forward=1`` in its own network namespace (it has no default route and
  the machine's side keeps forwarding off, so nothing leaves the bridge);
* containerd (Debian's) with the CRI plugin, cgroupfs, started as a detached process;
* images made here, imported into containerd: the control plane's from our multi-call
  ``kube`` binary under the names kubeadm asks for (``registry.k8s.io/kube-apiserver:
  v1.32.13`` ... ``etcd:3.5.21-0``), the pause image from ``tools/sleeper``. No registry
  is contacted; kubeadm's kube-proxy and CoreDNS addons are turned off (no binaries).

Findings: a full ``kubeadm init`` and ``join`` on these hosts (measured 2026-11-28)
-----------------------------------------------------------------------------------
It runs: two hosts, init + join + both nodes Ready (bridge CNI) + a real container on
the worker + ``kubeadm reset``, in 53-65 s (cluster up in 34-43 s: shipping kubeadm and
the kubelet ~7-10 s, init ~15-18 s, join ~9-10 s). What blocked it, in order, exactly:

1. Plain test host, ``kubeadm init --dry-run``: ``[ERROR SystemVerification]: cannot get
   a cgroup mount point: cannot get a cgroupfs mount point from "/proc/mounts"`` (``ip
   netns exec`` mounts a fresh sysfs over /sys; the test hosts now mount the cgroup
   hierarchies again, and the check passes); ``[ERROR KubeletVersion]: couldn't get
   kubelet version: cannot execute 'kubelet --version': executable file not found in
   $PATH`` (kdlib now puts our kubelet on kubeadm's PATH); ``[ERROR
   FileContent--proc-sys-net-ipv4-ip_forward]``. No CRI is only a warning in a dry run.
   The dry run also wrote ``/etc/kubernetes/tmp/kubeadm-init-dryrun*`` on the machine's
   shared /etc, hence ``KUBEADM_INIT_DRYRUN_DIR``.
2. Full init: ``[ERROR ImagePull]: failed to pull image registry.k8s.io/kube-proxy:v1.32.13
   ... dial udp 10.255.255.53:53: connect: network is unreachable`` (and CoreDNS): no
   internet; the control-plane images are made here, the two addons are turned off.
3. ``[kubelet-start] WARNING: unable to start the kubelet service: [failed to reload
   systemd: exit status 1]``: PID 1 is not systemd. kubeadm goes on and waits for the
   kubelet's healthz, so kdlib runs the kubelet itself (a restart loop).
4. ``[api-check] The API server is not healthy after 4m0s``; the kubelet log:
   ``failed to create shim task: failed to mount rootfs component &{overlay overlay ...}:
   invalid argument``: containerd's root was on the /var/lib overlay. A plain directory
   bound on /var/lib/containerd fixed it; init then took 13 s.
5. Clean-up: ``[reset] Failed to remove containers: ... failed to set removing state``
   (a warning, exit 0), and the static pods came back: the kubelet had outlived its
   SIGTERM and restarted them while reset ran. The kubelet loop now SIGKILLs its kubelet
   and waits for it; reset is retried (3 times) while it still warns.
6. SIGTERM during init: the reset after it spent a minute on ``[reset] Unable to fetch the
   kubeadm-config ConfigMap from cluster: failed to getAPIEndpoint`` (init had not uploaded
   it yet): reset now gets a ResetConfiguration with a 10 s API timeout (clean in ~19 s).
7. The kubelets changed this machine's ``vm.overcommit_memory`` 0→1, ``kernel.panic`` 1→10,
   ``kernel.panic_on_oops`` 0→1 (one kernel for all hosts); they were written back by hand
   once, and :func:`node_hosts` now claims and releases them in the local backend's record.
8. Shared fixed paths and cgroups: without the private overlays two hosts would share
   /etc/kubernetes, /var/lib/kubelet and /var/lib/etcd; without a per-host cgroupRoot
   (a kubeadm patch, ``kubeletconfiguration+merge.yaml``) two kubelets would manage one
   ``/kubepods`` tree and kill each other's pods.

Not run here: Kd's images (``shengqipku/...``, no internet; only validated and
dry-run), flannel (its images come from the internet; the bridge CNI is node-local).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shlex
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from kdlib.cluster.local import hostnet
from kdlib.cluster.node import images
from kdlib.cluster.ssh import detached
from kdlib.cluster.ssh.remote import Remote

# /usr/libexec: kubeadm's controller-manager pod mounts /usr/libexec/kubernetes/kubelet-plugins/
# volume/exec with DirectoryOrCreate, which the kubelet would otherwise create on the machine.
OVERLAID = ("/etc", "/var/lib", "/var/log", "/run", "/usr/libexec")
HIERARCHIES = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids")
SOCKET = "/run/containerd/containerd.sock"
CONTAINERD_TOML = """version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", \
"io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
address = "/run/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
sandbox_image = "registry.k8s.io/pause:3.10"
restrict_oom_score_adj = true
disable_apparmor = true
tolerate_missing_hugetlb_controller = true
disable_hugetlb_controller = true
[plugins."io.containerd.grpc.v1.cri".containerd]
snapshotter = "overlayfs"
default_runtime_name = "runc"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
SystemdCgroup = false
[plugins."io.containerd.grpc.v1.cri".cni]
bin_dir = "/usr/lib/cni"
conf_dir = "/etc/cni/net.d"
"""


def cgroup_root(host: str) -> str:
    return f"/kdlib-{host}"


def control_plane_archive(bin_dir: Path, target: Path, kubernetes_version: str, etcd_version: str) -> Path:
    """One image (docker-archive) holding our multi-call ``kube`` binary under each
    component's name in /usr/local/bin, tagged with the names kubeadm's manifests use."""
    names = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd")
    tags = [f"registry.k8s.io/{n}:{kubernetes_version}" for n in names[:3]]
    tags.append(f"registry.k8s.io/etcd:{etcd_version.lstrip('v')}-0")
    layer = io.BytesIO()
    data = (bin_dir / "kube").read_bytes()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for directory in ("usr", "usr/local", "usr/local/bin", "tmp", "var", "etc"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        info = tarfile.TarInfo("usr/local/bin/kube")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        for name in names:
            link = tarfile.TarInfo(f"usr/local/bin/{name}")
            link.type, link.linkname, link.mode = tarfile.LNKTYPE, "usr/local/bin/kube", 0o755
            tar.addfile(link)
    layer_bytes = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "WorkingDir": "/"},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]},
                         "history": [{"created_by": "kdlib tests: tools/kube"}]}, sort_keys=True).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_name = diff_id.split(":")[1] + "/layer.tar"
    manifest = json.dumps([{"Config": config_name, "RepoTags": tags, "Layers": [layer_name]}]).encode()
    with tarfile.open(target, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, content in ((layer_name, layer_bytes), (config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o644
            tar.addfile(info, io.BytesIO(content))
    return target


@dataclass(frozen=True)
class NodeHost:
    remote: Remote
    work: str  # on the shared filesystem: overlay layers, containerd's root, its pid file and log

    @property
    def host(self) -> str:
        return self.remote.host.name


def _setup_script(host: str, work: str, hosts_file: str) -> str:
    q = shlex.quote
    lines = ["set -e"]
    for path in OVERLAID:
        layer = f"{work}/overlay{path.replace('/', '-')}"
        lines.append(f"mkdir -p {q(layer)}/upper {q(layer)}/work && mount -t overlay kdlib-test -o "
                     f"lowerdir={path},upperdir={q(layer)}/upper,workdir={q(layer)}/work {path}")
    lines.append(f"mount --bind {q(hosts_file)} /etc/hosts")
    lines.append(f"mkdir -p {q(work)}/containerd-root /var/lib/containerd && "
                 f"mount --bind {q(work)}/containerd-root /var/lib/containerd")
    root = cgroup_root(host)  # the hierarchies are mounted already (tests/sshhosts.py)
    lines.append(f"for h in {' '.join(HIERARCHIES)} systemd; do mkdir -p /sys/fs/cgroup/$h{root}; done")
    lines.append(f"cat /sys/fs/cgroup/cpuset/cpuset.cpus > /sys/fs/cgroup/cpuset{root}/cpuset.cpus")
    lines.append(f"cat /sys/fs/cgroup/cpuset/cpuset.mems > /sys/fs/cgroup/cpuset{root}/cpuset.mems")
    lines.append("echo 1 > /proc/sys/net/ipv4/ip_forward")
    lines.append(f"mkdir -p /etc/containerd /etc/cni/net.d && cat > /etc/containerd/config.toml <<'EOF'\n"
                 f"{CONTAINERD_TOML}EOF")
    return "\n".join(lines) + "\n"


def prepare(node: NodeHost, hosts_file: str, archives: list[Path]) -> None:
    """Make one test host ready for kubeadm (see the module docstring)."""
    remote, work = node.remote, node.work
    remote.run(f"sh -c {shlex.quote(_setup_script(remote.host.name, work, hosts_file))}", timeout=60)
    detached.start(remote, "containerd", ("containerd", "--config", "/etc/containerd/config.toml"), work)
    remote.run(f"i=0; until ctr --address {SOCKET} version >/dev/null 2>&1; do i=$((i+1)); "
               f"[ $i -gt 100 ] && exit 1; sleep 0.1; done", timeout=30)
    for archive in archives:
        remote.run(f"ctr --address {SOCKET} --namespace k8s.io images import {shlex.quote(str(archive))}",
                   timeout=120)


def release(node: NodeHost) -> None:
    """Stop containerd and the shims left (by PID, in this host's namespace only), remove
    the cgroup root; the mounts go with the host's mount namespace."""
    detached.stop(node.remote, "containerd", None, node.work)
    root = cgroup_root(node.host)
    # Every hierarchy: the kubelet also makes its root in the cgroup2 one (/sys/fs/cgroup/unified).
    node.remote.run(f"for d in /sys/fs/cgroup/*{root}; do [ -d $d ] && "
                    f"find $d -depth -type d -exec rmdir {{}} +; done; exit 0", timeout=60)


@contextlib.contextmanager
def node_hosts(remotes: list[Remote], workdir: Path, hosts_file: Path, bin_dir: Path, kubernetes_version: str,
               etcd_version: str) -> Iterator[list[NodeHost]]:
    """Every remote made ready for kubeadm; released at the end whatever happened.

    The kubelets set machine-wide sysctls (``vm.overcommit_memory``, ``kernel.panic``,
    ``kernel.panic_on_oops``: the hosts share this machine's kernel). They are claimed and
    released in the local backend's machine-wide record, so the last user of real kubelets
    on this machine, these tests or a local cluster's real nodes, writes the originals back.
    """
    archives = [control_plane_archive(bin_dir, workdir / "controlplane.tar", kubernetes_version, etcd_version),
                images.build_archive(bin_dir / "sleeper", workdir / "pause.tar")]
    holder = workdir / "sysctl-holder"  # alive while its record file exists (the record's convention)
    holder.mkdir(exist_ok=True)
    (holder / "real-nodes.json").write_text('{"holder": "kdlib tests: kubeadm test hosts"}\n')
    hostnet.claim_sysctls(holder)
    prepared: list[NodeHost] = []
    try:
        for remote in remotes:
            prepared.append(NodeHost(remote, f"{workdir}/node-{remote.host.name}"))  # released even if half made
            prepare(prepared[-1], str(hosts_file), archives)
        yield prepared
    finally:
        for node in prepared:
            release(node)
        hostnet.release_sysctls(holder)
