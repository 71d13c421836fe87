"""kubeadm for the SSH backend's ``kubeadm`` mode: its configuration as data, and kubeadm run on a host.

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

kubeadm itself is ours (``tools/kube/kubeadm``, the control plane's pins), shipped to
each host content-addressed; it runs with a per-host ``bin`` directory first on PATH
that holds it and the kubelet (its preflight asks ``kubelet --version``).
``kubeadm config validate`` and ``kubeadm init --dry-run`` check a configuration on a
host; the dry run writes into a per-host directory (``KUBEADM_INIT_DRYRUN_DIR``), not
``/etc/kubernetes/tmp``. A failure is a :class:`RemoteError` naming the host, the
command and the tail of kubeadm's output.

On this machine's SSH test hosts (network namespaces) the dry run needs one preflight
check ignored by name (:data:`TEST_HOST_PREFLIGHT_IGNORED`); a full init and join run
once the hosts are made ready as a package installation would (``tests/kubeadmhosts.py``
lists what that took and each error met on the way).
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import shlex
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from ...errors import ConfigError, RemoteError
from .. import settings
from .inventory import Host
from .remote import Remote, sha256_file

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


def init_configuration(s: KubeadmSettings, control_plane: Host, token: str | None = None,
                       patches: str | None = None) -> dict[str, Any]:
    """``patches``: a directory on the host of kubeadm patches (e.g. this host's kubelet settings)."""
    config: dict[str, Any] = {
        "apiVersion": KUBEADM_API, "kind": "InitConfiguration",
        "localAPIEndpoint": {"advertiseAddress": control_plane.address, "bindPort": API_PORT},
        "nodeRegistration": node_registration(s, control_plane),
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
                       taints: list[dict[str, str]] | None = None) -> dict[str, Any]:
    """A worker's join: bootstrap token discovery pinned to the cluster CA's public key;
    the node registers with ``labels`` and ``taints``."""
    config: dict[str, Any] = {
        "apiVersion": KUBEADM_API, "kind": "JoinConfiguration",
        "nodeRegistration": node_registration(s, worker, labels, taints),
        "discovery": {"bootstrapToken": {"apiServerEndpoint": endpoint(control_plane), "token": token,
                                         "caCertHashes": [ca_cert_hash]}},
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


def init_yaml(s: KubeadmSettings, control_plane: Host, token: str | None = None, patches: str | None = None) -> str:
    s.check()
    return render(init_configuration(s, control_plane, token, patches), cluster_configuration(s, control_plane),
                  kubelet_configuration(s))


def join_yaml(s: KubeadmSettings, worker: Host, control_plane: Host, token: str, ca_cert_hash: str,
              patches: str | None = None, labels: dict[str, str] | None = None,
              taints: list[dict[str, str]] | None = None) -> str:
    """The join configuration; the kubelet's settings come from the cluster (kubeadm's
    kubelet-config ConfigMap, written by init), plus this host's ``patches``."""
    s.check()
    return render(join_configuration(s, worker, control_plane, token, ca_cert_hash, patches, labels, taints))


# -- kubeadm on a host ----------------------------------------------------------------


@dataclass(frozen=True)
class HostTools:
    """Where kubeadm runs on one host: its bin directory (first on PATH) and its work directory."""

    remote: Remote
    bin_dir: str
    work_dir: str

    @property
    def host(self) -> str:
        return self.remote.host.name

    def command(self, args: str, env: dict[str, str] | None = None) -> str:
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        return f"env PATH={shlex.quote(self.bin_dir)}:\"$PATH\" {exports} kubeadm {args}".replace("  ", " ")

    def kubeadm(self, args: str, *, failed: str, env: dict[str, str] | None = None,
                timeout: float | None = None) -> str:
        """Run ``kubeadm ARGS``; a failure is a RemoteError whose reason is ``failed`` and
        the exit code, with kubeadm's output tail. Its PID is recorded in ``run/kubeadm.pid``
        (an interrupted owner leaves a remote kubeadm running: :func:`stop_kubeadm`)."""
        command = self.command(args, env)
        pid_file = shlex.quote(f"{self.work_dir}/run/kubeadm.pid")
        recorded = f"mkdir -p {shlex.quote(self.work_dir)}/run && echo $$ > {pid_file} && exec {command}"
        result = self.remote.run(f"sh -c {shlex.quote(recorded)}", timeout=timeout, check=False)
        if not result.ok:
            raise RemoteError(self.host, command, f"{failed} (exit {result.exit_code})", result.tail(20))
        return result.stdout + result.stderr


def install(remote: Remote, binaries: dict[str, Path], remote_dir: str, work_dir: str) -> HostTools:
    """Ship ``binaries`` (``kubeadm``, ``kubelet``, ...) content-addressed to
    ``<remote_dir>/bin/<sha256[:16]>/NAME`` (skipped when there) and link each into
    ``<work_dir>/bin``, the directory put first on PATH for kubeadm."""
    bin_dir = f"{work_dir}/bin"
    links = []
    for name, local in binaries.items():
        target = f"{remote_dir}/bin/{sha256_file(Path(local))[:16]}/{name}"
        remote.put(local, target)
        links.append(f"ln -sfn {shlex.quote(target)} {shlex.quote(bin_dir + '/' + name)}")
    remote.run(f"mkdir -p {shlex.quote(bin_dir)} && " + " && ".join(links))
    return HostTools(remote, bin_dir, work_dir)


def stop_kubeadm(remote: Remote, work_dir: str, timeout: float = 10.0) -> str:
    """Stop a kubeadm still running from ``work_dir`` (its owner was interrupted), by the
    recorded PID and only while that PID's command line is our kubeadm. Returns
    ``absent``, ``stale`` or ``stopped``."""
    q = shlex.quote
    tenths = max(1, int(timeout * 10))
    script = f"""pid=$(cat {q(work_dir)}/run/kubeadm.pid 2>/dev/null) || {{ echo absent; exit 0; }}
ours() {{ tr '\\0' ' ' < /proc/$pid/cmdline 2>/dev/null | grep -q '^kubeadm \\|/kubeadm '; }}
rm -f {q(work_dir)}/run/kubeadm.pid
ours || {{ echo stale; exit 0; }}
kill -TERM $pid; i=0
while [ $i -lt {tenths} ] && ours; do sleep 0.1; i=$((i+1)); done
ours && kill -KILL $pid
echo stopped
"""
    return remote.run(f"sh -c {q(script)}", timeout=timeout + 30).stdout.strip()


def put_text(remote: Remote, text: str, path: str, mode: int = 0o600) -> None:
    """Write ``text`` to ``path`` on the host (atomically, through :meth:`Remote.put`)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        file.write(text)
        file.flush()
        remote.put(file.name, path, mode=mode)


def validate(tools: HostTools, config: str) -> None:
    """``kubeadm config validate`` on the host: the configuration's schema and values."""
    tools.kubeadm(f"config validate --config {shlex.quote(config)}",
                  failed="kubeadm config validate refused the configuration")


def dry_run(tools: HostTools, config: str, ignored: tuple[str, ...] = ()) -> str:
    """``kubeadm init --dry-run`` on the host: preflight (minus the checks ``ignored`` by
    name), certificates, kubeconfigs, manifests, written to ``<work_dir>/dryrun``, not to
    /etc/kubernetes. Returns kubeadm's output; the manifests stay in that directory."""
    out = f"{tools.work_dir}/dryrun"
    tools.remote.run(f"rm -rf {shlex.quote(out)} && mkdir -p {shlex.quote(out)}")
    return tools.kubeadm(f"init --dry-run --config {shlex.quote(config)}{_ignoring(ignored)}",
                         failed="kubeadm init --dry-run failed", env={"KUBEADM_INIT_DRYRUN_DIR": out})


def _ignoring(ignored: tuple[str, ...]) -> str:
    return f" --ignore-preflight-errors={','.join(ignored)}" if ignored else ""


def init(tools: HostTools, config: str, timeout: float = 600.0, ignored: tuple[str, ...] = ()) -> str:
    """``kubeadm init``: the kubelet must be running (or restarting) already; kubeadm waits for it."""
    return tools.kubeadm(f"init --config {shlex.quote(config)} --skip-token-print{_ignoring(ignored)}",
                         failed="kubeadm init failed", timeout=timeout)


def join(tools: HostTools, config: str, timeout: float = 600.0, ignored: tuple[str, ...] = ()) -> str:
    return tools.kubeadm(f"join --config {shlex.quote(config)}{_ignoring(ignored)}", failed="kubeadm join failed",
                         timeout=timeout)


def reset_configuration(cri_socket: str = CONTAINERD_SOCKET, *, dry_run: bool = False) -> dict[str, Any]:
    """``kubeadm reset``'s own configuration. Its API timeout is short: after an interrupted
    init (no kubeadm-config ConfigMap yet) reset spent the default minute trying to read
    the cluster's configuration before going on (measured); a healthy API answers in ms."""
    return {"apiVersion": KUBEADM_API, "kind": "ResetConfiguration", "force": True, "criSocket": cri_socket,
            "dryRun": dry_run, "timeouts": {"kubernetesAPICall": RESET_API_TIMEOUT}}


def reset(tools: HostTools, cri_socket: str = CONTAINERD_SOCKET, *, dry_run: bool = False) -> str:
    """``kubeadm reset``, without questions: removes what init/join made on the host
    (manifests, /var/lib/kubelet, /var/lib/etcd, the containers). Not CNI configuration or
    iptables rules: kubeadm leaves those to the caller."""
    config = f"{tools.work_dir}/kubeadm-reset.yaml"
    put_text(tools.remote, render(reset_configuration(cri_socket, dry_run=dry_run)), config)
    return tools.kubeadm(f"reset --config {shlex.quote(config)}", failed="kubeadm reset failed")
