"""Where a real node keeps its files, under a root that is a path on this machine or on an SSH host.

The configuration (:mod:`.config`) names every file through a :class:`NodeLayout`, so the
same builders serve a node of the local backend (root under the cluster's state directory)
and an SSH kubelet worker (root ``/tmp/kdlib-<id>`` on its host): the files are written
locally, or into a staging tree shipped whole to the root, and name the root's paths
either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

#: The host's fixed paths that a node overlays in its private mount namespace, so that the
#: kubelet's and containerd's files there (``/var/lib/kubelet/device-plugins``,
#: ``/var/log/containers``, ``/run/containerd/s``, ...) stay the node's own.
PRIVATE_PATHS = ("/var/lib", "/var/log", "/run", "/usr/libexec")


@dataclass(frozen=True)
class NodeLayout:
    """A real node's names and paths.

    ``root`` holds its configuration, containerd's root and the overlays' layers;
    ``runtime`` its sockets and the kubelet's root (unix socket paths must stay under 108
    bytes: a root deep under pytest's tmp is too long for them); ``cgroup`` is the kubelet's
    ``cgroupRoot``; ``index`` picks its pod range.
    """

    name: str
    address: str
    index: int
    root: PurePath
    runtime: PurePath
    cgroup: str

    @property
    def pod_cidr(self) -> str:
        return f"10.244.{self.index}.0/24"

    @property
    def containerd_socket(self) -> PurePath:
        return self.runtime / "containerd.sock"

    @property
    def kubelet_root(self) -> PurePath:
        return self.runtime / "kubelet"

    def overlay(self, path: str) -> PurePath:
        """The directory of the overlay over the fixed ``path`` (its ``upper`` and ``work``)."""
        return self.root / "overlay" / path.strip("/").replace("/", "-")

    @property
    def directories(self) -> tuple[str, ...]:
        """The directories under ``root`` the node needs before containerd starts."""
        return ("containerd", "runc", "cni/net.d", "cni/ipam", "pod-logs", "volume-plugins", "certs",
                *(str(self.overlay(p).relative_to(self.root) / x) for p in PRIVATE_PATHS for x in ("upper", "work")))
