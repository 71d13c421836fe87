"""kubeadm's configuration for the SSH backend's ``kubeadm`` mode, as data (:mod:`.kubeadm` runs kubeadm with it).

The configuration is Python data rendered with ``yaml.safe_dump`` (kubeadm API
``kubeadm.k8s.io/v1beta4``, where ``extraArgs`` are lists of ``{name, value}``):

* ``InitConfiguration``: the control-plane host's address and name, the CRI socket;
* ``ClusterConfiguration``: ``kubernetesVersion`` and ``imageRepository`` (vanilla:
  ``registry.k8s.io`` at the pinned version; Kd's: ``shengqipku`` /
  ``v1.32.0-kubedirect``), the API endpoint, the pod and service subnets, and the
  artifact's flags (``kdlib.cluster.settings``) for etcd, the API server, the controller
  manager and the scheduler (its ``parallelism``/``percentageOfNodesToScore`` through a
  ``KubeSchedulerConfiguration`` file mounted into its pod);
* ``KubeletConfiguration`` (cgroup driver) and, for workers, ``JoinConfiguration``.

With Kd's repository, etcd and CoreDNS stay on ``registry.k8s.io`` (etcd at the pinned
etcd version); kubeadm has no per-image field for the rest, so ``kubeadm config images
list`` names ``shengqipku/{kube-apiserver,kube-controller-manager,kube-scheduler,
kube-proxy}:v1.32.0-kubedirect`` and ``shengqipku/pause:3.10``, as the original's config
did (whether that repository holds the last two was not checked here: no internet).
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass, replace
from typing import Any

import yaml

from ...errors import ConfigError
from .. import settings
from .inventory import Host

KUBEADM_API = "kubeadm.k8s.io/v1beta4"
KUBELET_API = "kubelet.config.k8s.io/v1beta1"
SCHEDULER_API = "kubescheduler.config.k8s.io/v1"
VANILLA_REPOSITORY = "registry.k8s.io"
KD_REPOSITORY = "shengqipku"  # the original artifact's kubeadm settings for Kd
KD_VERSION = "v1.32.0-kubedirect"
CONTAINERD_SOCKET = "unix:///run/containerd/containerd.sock"
POD_SUBNET = "10.244.0.0/16"  # flannel's default network (the original's CNI)
SCHEDULER_CONFIG = "/etc/kubernetes/kdlib-scheduler.yaml"  # on the control-plane host, mounted into the pod
API_PORT = 6443
RESET_API_TIMEOUT = "10s"
ENCRYPTION_ALGORITHMS = ("RSA-2048", "RSA-3072", "RSA-4096", "ECDSA-P256", "ECDSA-P384")  # kubeadm v1beta4's
# kubeadm's own waits (v1beta4 ``timeouts``) that the cluster's start-up timeout replaces: by
# default 4 min for the kubelet and the control plane, 5 min for TLS bootstrap and discovery,
# which an emulated VM on a busy machine exceeded (measured) while the caller allowed more.
KUBEADM_WAITS = {"init": ("kubeletHealthCheck", "controlPlaneComponentHealthCheck"),
                 "join": ("kubeletHealthCheck", "controlPlaneComponentHealthCheck", "tlsBootstrap", "discovery")}

# Preflight checks that cannot pass on this machine's SSH test hosts (network namespaces
# made by ``ip netns exec``), ignored BY NAME in the dry run only; every other check counts.
TEST_HOST_PREFLIGHT_IGNORED = {
    # The test hosts keep forwarding off so that no traffic leaves their bridge.
    "FileContent--proc-sys-net-ipv4-ip_forward": "test hosts keep IP forwarding off by design",
}
_VERSION = re.compile(r"^v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$")
_REPOSITORY = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")


@dataclass(frozen=True)
class KubeadmSettings:
    """What varies between kubeadm clusters; the artifact's flags are fixed (``settings``)."""

    kubernetes_version: str
    etcd_version: str
    image_repository: str = VANILLA_REPOSITORY
    pod_subnet: str = POD_SUBNET
    service_subnet: str = settings.SERVICE_CLUSTER_IP_RANGE
    cri_socket: str = CONTAINERD_SOCKET
    cgroup_driver: str = "systemd"  # kubeadm's default; containerd must use the same
    cluster_name: str = "kubernetes"
    kube_proxy: bool = True  # kubeadm's kube-proxy and CoreDNS addons (off: their images are not needed)
    coredns: bool = True
    unthrottled: bool = False  # the controller manager's and scheduler's client limits raised (settings.client_limits)
    # The certificates' keys: kubeadm's default; "ECDSA-P256" makes them in a fraction of the time
    # (an emulated VM spent 2.5 min of init on RSA keys).
    encryption_algorithm: str = "RSA-2048"

    @classmethod
    def vanilla(cls, **changes: Any) -> "KubeadmSettings":
        """Upstream images at the versions ``tools/kube/go.mod`` pins."""
        from ..binaries import pinned_versions

        versions = pinned_versions()
        return replace(cls(versions.kubernetes, versions.etcd), **changes)

    @classmethod
    def kd(cls, repository: str = KD_REPOSITORY, version: str = KD_VERSION, **changes: Any) -> "KubeadmSettings":
        """Kd's published control-plane images (the original's ``imageRepository``/``kubernetesVersion``)."""
        return cls.vanilla(image_repository=repository, kubernetes_version=version, **changes)

    @property
    def kd_images(self) -> bool:
        return self.image_repository != VANILLA_REPOSITORY

    def problems(self) -> list[str]:
        """Every problem, each naming its field; empty when the settings can be used."""
        found = []
        if not _VERSION.match(self.kubernetes_version):
            found.append(f"kubernetes_version: not a version like v1.32.13: {self.kubernetes_version!r}")
        if not _VERSION.match(self.etcd_version):
            found.append(f"etcd_version: not a version like v3.5.21: {self.etcd_version!r}")
        if not _REPOSITORY.match(self.image_repository):
            found.append(f"image_repository: not a registry path like registry.k8s.io: {self.image_repository!r}")
        nets = {}
        for name in ("pod_subnet", "service_subnet"):
            try:
                nets[name] = ipaddress.ip_network(getattr(self, name))
            except ValueError:
                found.append(f"{name}: not a CIDR: {getattr(self, name)!r}")
        if len(nets) == 2 and nets["pod_subnet"].overlaps(nets["service_subnet"]):
            found.append(f"pod_subnet: {self.pod_subnet} overlaps service_subnet {self.service_subnet}")
        if not self.cri_socket.startswith("unix:///"):
            found.append(f"cri_socket: must be unix:///PATH, not {self.cri_socket!r}")
        if self.encryption_algorithm not in ENCRYPTION_ALGORITHMS:
            found.append(f"encryption_algorithm: one of {', '.join(ENCRYPTION_ALGORITHMS)}, "
                         f"not {self.encryption_algorithm!r}")
        if self.cgroup_driver not in ("systemd", "cgroupfs"):
            found.append(f"cgroup_driver: must be systemd or cgroupfs, not {self.cgroup_driver!r}")
        return found

    def check(self) -> "KubeadmSettings":
        if self.problems():
            raise ConfigError("kubeadm settings: " + "; ".join(self.problems()))
        return self


def extra_args(flags: dict[str, str]) -> list[dict[str, str]]:
    """Flags in v1beta4's shape: a list of ``{name, value}`` (v1beta3's was a map)."""
    return [{"name": name, "value": str(value)} for name, value in flags.items()]


def endpoint(control_plane: Host) -> str:
    return f"{control_plane.address}:{API_PORT}"


def node_registration(s: KubeadmSettings, host: Host, labels: dict[str, str] | None = None,
                      taints: list[dict[str, str]] | None = None) -> dict[str, Any]:
    # node-ip: the inventory's address, not whatever the kubelet finds on a default route.
    flags = {"node-ip": host.address}
    if labels:
        flags["node-labels"] = ",".join(f"{k}={v}" for k, v in labels.items())
    registration: dict[str, Any] = {"name": host.name, "criSocket": s.cri_socket,
                                    "kubeletExtraArgs": extra_args(flags)}
    if taints is not None:
        registration["taints"] = [dict(t) for t in taints]
    return registration


def timeouts(kind: str, wait_s: float | None) -> dict[str, Any]:
    """kubeadm's waits of an ``init`` or ``join`` set to ``wait_s`` (none given: kubeadm's defaults)."""
    if wait_s is None:
        return {}
    return {"timeouts": {name: f"{int(wait_s)}s" for name in KUBEADM_WAITS[kind]}}


def init_configuration(s: KubeadmSettings, control_plane: Host, token: str | None = None,
                       patches: str | None = None, wait_s: float | None = None) -> dict[str, Any]:
    """``patches``: a directory on the host of kubeadm patches (e.g. this host's kubelet settings);
    ``wait_s``: how long kubeadm waits for the kubelet and the control plane."""
    config: dict[str, Any] = {
        "apiVersion": KUBEADM_API, "kind": "InitConfiguration",
        "localAPIEndpoint": {"advertiseAddress": control_plane.address, "bindPort": API_PORT},
        "nodeRegistration": node_registration(s, control_plane),
        **timeouts("init", wait_s),
    }
    if patches is not None:
        config["patches"] = {"directory": patches}
    if token is not None:  # the workers' bootstrap token; kubeadm makes one when absent
        config["bootstrapTokens"] = [{"token": token, "ttl": "2h0m0s",
                                      "groups": ["system:bootstrappers:kubeadm:default-node-token"],
                                      "usages": ["signing", "authentication"]}]
    return config


def cluster_configuration(s: KubeadmSettings, control_plane: Host) -> dict[str, Any]:
    scheduler_volume = {"name": "kdlib-scheduler-config", "hostPath": SCHEDULER_CONFIG,
                        "mountPath": SCHEDULER_CONFIG, "readOnly": True, "pathType": "File"}
    config: dict[str, Any] = {
        "apiVersion": KUBEADM_API, "kind": "ClusterConfiguration",
        "clusterName": s.cluster_name,
        "kubernetesVersion": s.kubernetes_version,
        "imageRepository": s.image_repository,
        "controlPlaneEndpoint": endpoint(control_plane),
        "networking": {"podSubnet": s.pod_subnet, "serviceSubnet": s.service_subnet},
        "encryptionAlgorithm": s.encryption_algorithm,
        "etcd": {"local": {"imageTag": f"{s.etcd_version.lstrip('v')}-0",
                           "extraArgs": extra_args(settings.ETCD_FLAGS)}},
        "apiServer": {"extraArgs": extra_args(settings.APISERVER_FLAGS),
                      "certSANs": [control_plane.address, control_plane.name]},
        "controllerManager": {"extraArgs": extra_args({
            **settings.CONTROLLER_MANAGER_FLAGS,
            **(settings.UNTHROTTLED_CONTROLLER_MANAGER_FLAGS if s.unthrottled else {})})},
        "scheduler": {"extraArgs": extra_args({"config": SCHEDULER_CONFIG}), "extraVolumes": [scheduler_volume]},
    }
    if s.kd_images:  # Kd publishes the control plane only: the rest stays upstream's
        config["etcd"]["local"]["imageRepository"] = VANILLA_REPOSITORY
        config["dns"] = {"imageRepository": f"{VANILLA_REPOSITORY}/coredns"}
    if not s.coredns:
        config["dns"] = {**config.get("dns", {}), "disabled": True}
    if not s.kube_proxy:
        config["proxy"] = {"disabled": True}
    return config


def kubelet_configuration(s: KubeadmSettings) -> dict[str, Any]:
    return {"apiVersion": KUBELET_API, "kind": "KubeletConfiguration", "cgroupDriver": s.cgroup_driver}


def scheduler_configuration(unthrottled: bool = False) -> dict[str, Any]:
    """The scheduler's own config file (kubeadm has no field for it): the artifact's
    scoring settings, and the kubeconfig kubeadm writes for the scheduler; ``unthrottled``:
    its client limit raised."""
    return {"apiVersion": SCHEDULER_API, "kind": "KubeSchedulerConfiguration",
            "clientConnection": {"kubeconfig": "/etc/kubernetes/scheduler.conf",
                                 **(settings.UNTHROTTLED_SCHEDULER_CLIENT if unthrottled else {})},
            "leaderElection": {"leaderElect": True}, **settings.SCHEDULER_CONFIG}


def join_configuration(s: KubeadmSettings, worker: Host, control_plane: Host, token: str,
                       ca_cert_hash: str, patches: str | None = None, labels: dict[str, str] | None = None,
                       taints: list[dict[str, str]] | None = None, wait_s: float | None = None) -> dict[str, Any]:
    """A worker's join: bootstrap token discovery pinned to the cluster CA's public key;
    the node registers with ``labels`` and ``taints``."""
    config: dict[str, Any] = {
        "apiVersion": KUBEADM_API, "kind": "JoinConfiguration",
        "nodeRegistration": node_registration(s, worker, labels, taints),
        "discovery": {"bootstrapToken": {"apiServerEndpoint": endpoint(control_plane), "token": token,
                                         "caCertHashes": [ca_cert_hash]}},
        **timeouts("join", wait_s),
    }
    if patches is not None:
        config["patches"] = {"directory": patches}
    return config


def new_token() -> str:
    """A bootstrap token, ``[a-z0-9]{6}.[a-z0-9]{16}`` as kubeadm requires."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(6)) + "." + \
        "".join(secrets.choice(alphabet) for _ in range(16))


def render(*documents: dict[str, Any]) -> str:
    """YAML documents, one per kind, in the order given."""
    return yaml.safe_dump_all(documents, sort_keys=False, explicit_start=False)


def init_yaml(s: KubeadmSettings, control_plane: Host, token: str | None = None, patches: str | None = None,
              wait_s: float | None = None) -> str:
    s.check()
    return render(init_configuration(s, control_plane, token, patches, wait_s), cluster_configuration(s, control_plane),
                  kubelet_configuration(s))


def join_yaml(s: KubeadmSettings, worker: Host, control_plane: Host, token: str, ca_cert_hash: str,
              patches: str | None = None, labels: dict[str, str] | None = None,
              taints: list[dict[str, str]] | None = None, wait_s: float | None = None) -> str:
    """The join configuration; the kubelet's settings come from the cluster (kubeadm's
    kubelet-config ConfigMap, written by init), plus this host's ``patches``."""
    s.check()
    return render(join_configuration(s, worker, control_plane, token, ca_cert_hash, patches, labels, taints, wait_s))


# -- kubeadm on a host ----------------------------------------------------------------


def reset_configuration(cri_socket: str = CONTAINERD_SOCKET, *, dry_run: bool = False) -> dict[str, Any]:
    """``kubeadm reset``'s own configuration. Its API timeout is short: after an interrupted
    init (no kubeadm-config ConfigMap yet) reset spent the default minute trying to read
    the cluster's configuration before going on (measured); a healthy API answers in ms."""
    return {"apiVersion": KUBEADM_API, "kind": "ResetConfiguration", "force": True, "criSocket": cri_socket,
            "dryRun": dry_run, "timeouts": {"kubernetesAPICall": RESET_API_TIMEOUT}}
