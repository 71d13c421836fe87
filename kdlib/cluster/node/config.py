"""A real node's configuration as data: containerd's TOML, the CNI conflist, the KubeletConfiguration,
and the command lines of containerd and the kubelet.

The settings follow what a probe on this kind of machine measured (``restrict_oom_score_adj``:
no CAP_SYS_RESOURCE; no AppArmor, no hugetlb cgroup; cgroupfs). Every path comes from the
node's :class:`~.layout.NodeLayout`, so a local node and an SSH worker get the same files,
each naming its own root.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path, PurePath
from typing import Any

import yaml

from . import identity
from .layout import PRIVATE_PATHS, NodeLayout

MAX_PODS = 110
KUBELET_PORT = 10250
KUBELET_HEALTHZ_PORT = 10248
CNI_BRIDGE = "kdcni0"  # inside the node's network namespace (local) or on its host (SSH)
CNI_CONFLIST = "cni/net.d/10-kdlib.conflist"  # under the node's root
CONTAINERD_TOML = "containerd.toml"
KUBELET_YAML = "kubelet.yaml"


def toml(table: dict[str, Any], prefix: str = "") -> str:
    """The little TOML containerd's config needs: scalars, string lists, nested tables."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return str(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(str(v))

    lines = [f"{k} = {value(v)}" for k, v in table.items() if not isinstance(v, dict)]
    for k, v in table.items():
        if isinstance(v, dict):
            name = f'{prefix}.{json.dumps(k) if "." in k else k}' if prefix else (json.dumps(k) if "." in k else k)
            lines += ["", f"[{name}]", toml(v, name)]
    return "\n".join(line for line in lines if line is not None)


def containerd_config(node: NodeLayout, cni_dir: PurePath | str, *, systemd_cgroup: bool = False) -> dict[str, Any]:
    """containerd's configuration; ``cni_dir`` holds the CNI plugins on the node's machine.
    ``systemd_cgroup``: runc makes each container a systemd scope (a host whose PID 1 is
    systemd; the kubelet's cgroup driver must agree)."""
    d = node.root
    return {
        "version": 2,
        "root": str(d / "containerd" / "root"),
        "state": str(node.runtime / "containerd-state"),
        "disabled_plugins": [f"io.containerd.snapshotter.v1.{s}" for s in ("aufs", "btrfs", "zfs", "devmapper")],
        "grpc": {"address": str(node.containerd_socket)},
        "ttrpc": {"address": str(node.containerd_socket) + ".ttrpc"},
        "debug": {"address": "", "level": "warn"},
        "metrics": {"address": ""},
        "plugins": {
            "io.containerd.internal.v1.opt": {"path": str(d / "containerd" / "opt")},
            "io.containerd.grpc.v1.cri": {
                "sandbox_image": identity.SANDBOX_IMAGE,
                "restrict_oom_score_adj": True,  # no CAP_SYS_RESOURCE here: runc fails otherwise
                "disable_apparmor": True,
                "tolerate_missing_hugetlb_controller": True,
                "disable_hugetlb_controller": True,
                "netns_mounts_under_state_dir": True,
                "stream_server_address": "127.0.0.1",
                "stream_server_port": "0",
                "containerd": {
                    "snapshotter": "overlayfs",
                    "default_runtime_name": "runc",
                    "runtimes": {"runc": {
                        "runtime_type": "io.containerd.runc.v2",
                        "options": {"SystemdCgroup": systemd_cgroup, "Root": str(d / "runc"), "BinaryName": "runc"},
                    }},
                },
                "cni": {"bin_dir": str(cni_dir), "conf_dir": str(d / "cni" / "net.d"), "max_conf_num": 1},
            },
        },
    }


def cni_conflist(pod_cidr: str, *, bridge: str = CNI_BRIDGE, ipam_dir: PurePath | None = None,
                 port_map: bool = False) -> dict[str, Any]:
    """A node-local pod network on ``pod_cidr``: the CNI bridge and host-local plugins (pods
    reach pods of the same node only); ``port_map`` adds the portmap plugin (kubeadm mode)."""
    ipam: dict[str, Any] = {"type": "host-local", "ranges": [[{"subnet": pod_cidr}]]}
    if ipam_dir is not None:
        ipam["dataDir"] = str(ipam_dir)
    plugins: list[dict[str, Any]] = [{"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": False,
                                      "ipam": ipam}]
    if port_map:
        plugins.append({"type": "portmap", "capabilities": {"portMappings": True}})
    return {"cniVersion": "0.4.0", "name": "kdlib", "plugins": plugins}


def kubelet_config(node: NodeLayout, ca: PurePath, cgroup_driver: str = "cgroupfs") -> dict[str, Any]:
    """The KubeletConfiguration; ``ca`` is the cluster CA's certificate on the node's machine.
    ``cgroup_driver`` "systemd" where systemd is PID 1 (containerd's must agree): ``node.cgroup``
    then names the slice the kubelet puts its pods under (``/a-b`` is ``a_b.slice``)."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node.address,
        "port": KUBELET_PORT,
        "readOnlyPort": 0,
        "healthzBindAddress": node.address,  # the host probes it over the bridge
        "healthzPort": KUBELET_HEALTHZ_PORT,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": False},
                           "x509": {"clientCAFile": str(ca)}},
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": f"unix://{node.containerd_socket}",
        "imageServiceEndpoint": f"unix://{node.containerd_socket}",
        "cgroupDriver": cgroup_driver,
        "cgroupRoot": node.cgroup,
        "failCgroupV1": False,  # this machine has cgroup v1 only
        "failSwapOn": False,
        "podCIDR": node.pod_cidr,
        "podLogsDir": str(node.root / "pod-logs"),
        "volumePluginDir": str(node.root / "volume-plugins"),
        "makeIPTablesUtilChains": False,
        "maxPods": MAX_PODS,
        "serializeImagePulls": False,
        # The disk is shared with everything else: evict only when it is really full,
        # and never collect the imported images (they cannot be pulled again).
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                         "nodefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "registerWithTaints": [identity.TAINT],
        "resolvConf": "/etc/resolv.conf",
    }


def files(node: NodeLayout, ca: PurePath, cni_dir: PurePath | str, *, systemd: bool = False) -> dict[str, str]:
    """The node's configuration files by their path under its root; ``systemd``: the systemd
    cgroup driver in containerd and the kubelet alike."""
    return {
        CONTAINERD_TOML: toml(containerd_config(node, cni_dir, systemd_cgroup=systemd)) + "\n",
        CNI_CONFLIST: json.dumps(cni_conflist(node.pod_cidr, ipam_dir=node.root / "cni" / "ipam"), indent=2),
        KUBELET_YAML: yaml.safe_dump(kubelet_config(node, ca, "systemd" if systemd else "cgroupfs"), sort_keys=False),
    }


def write_tree(target: Path, node: NodeLayout, ca: PurePath, cni_dir: PurePath | str,
               extra_directories: tuple[str, ...] = (), *, systemd: bool = False) -> None:
    """Make the node's directories and write its files under ``target``: its root itself (a
    local node), or a staging copy shipped whole to the root (an SSH worker)."""
    for sub in (*node.directories, *extra_directories):
        (target / sub).mkdir(parents=True, exist_ok=True)
    for name, text in files(node, ca, cni_dir, systemd=systemd).items():
        (target / name).write_text(text)


def containerd_script(node: NodeLayout, config: PurePath, shared: tuple[str, ...] = ()) -> str:
    """The shell line run in a new private mount namespace: the overlays over the fixed
    paths, then containerd (which shows as ``containerd --config CONFIG``).

    ``shared``: directories under the overlaid paths that stay the host's own, e.g. the
    sockets of D-Bus and systemd (``/run/dbus``, ``/run/systemd``) that runc and the kubelet
    talk to with the systemd cgroup driver: a unix socket cannot be reached through an
    overlay (measured: "Failed to connect to bus: Connection refused"). Each is bound aside
    before the overlays and moved back on top of them."""
    aside = [(path, node.root / "shared" / path.strip("/").replace("/", "-")) for path in shared]
    keep = [f"mkdir -p {shlex.quote(str(spot))} && mount --bind {shlex.quote(path)} {shlex.quote(str(spot))}"
            for path, spot in aside]
    mounts = []
    for path in PRIVATE_PATHS:
        layer = node.overlay(path)
        mounts.append(f"mount -t overlay kdlib-node -o lowerdir={path},upperdir={layer}/upper,"
                      f"workdir={layer}/work {path}")
    back = [f"mount --move {shlex.quote(str(spot))} {shlex.quote(path)}" for path, spot in aside]
    return " && ".join([*keep, *mounts, *back, f"exec containerd --config {shlex.quote(str(config))}"])


def kubelet_argv(node: NodeLayout, kubelet: PurePath | str, config: PurePath,
                 kubeconfig: PurePath) -> tuple[str, ...]:
    """The kubelet's own command line (run in containerd's mount namespace)."""
    return (
        str(kubelet),
        f"--config={config}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={node.kubelet_root}",
        f"--cert-dir={node.root / 'certs'}",
        f"--hostname-override={node.name}",
        f"--node-ip={node.address}",
        "--node-labels=" + ",".join(f"{k}={v}" for k, v in identity.LABEL.items()),
    )
