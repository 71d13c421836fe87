"""What runs: the control plane's command lines and config files, from a layout, an address and ports.

Nothing here knows how or where a process is started (local processes, or a host over
SSH): the backend gives the address every component listens on, the ports, the root of
the files (a :class:`Layout` on this machine, or on the host that runs the components) and
the binaries' paths there, and starts the :class:`Component` values it gets back after
writing :func:`config_files` wherever that root's files are made. TLS and RBAC are as in a kubeadm
cluster: the apiserver has no insecure port and authorises with Node,RBAC; the
controller manager and the scheduler authenticate with their own certificates. The
artifact's flags come from :mod:`kdlib.cluster.settings`.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Mapping, Union

import yaml

from .. import kwok, settings
from ..binaries import BinarySet

#: Each component's binary: a :class:`BinarySet` here, or their paths on the host that runs them.
Binaries = Union[BinarySet, Mapping[str, Union[PurePath, str]]]

PORT_NAMES = ("etcd", "etcd-peer", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
START_ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


@dataclass(frozen=True)
class HealthProbe:
    """An HTTP(S) endpoint that answers 200 once the component is ready."""

    url: str
    ca: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None

    def ok(self, timeout: float = 2.0) -> bool:
        context = None
        if self.url.startswith("https"):
            context = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
            if self.client_cert:
                context.load_cert_chain(str(self.client_cert), str(self.client_key))
        try:
            with urllib.request.urlopen(self.url, timeout=timeout, context=context) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False


@dataclass(frozen=True)
class Component:
    """One process of the cluster: its name, command line and health endpoint."""

    name: str
    argv: tuple[str, ...]
    probe: HealthProbe


@dataclass(frozen=True)
class Endpoints:
    """Where the control plane listens: one address (loopback locally, the host's over SSH) and ports.

    ``api_address``, when given, is where the apiserver alone listens: on a local cluster
    with real nodes, the bridge's host-side address that the nodes reach (the apiserver
    takes one bind address).
    """

    address: str
    ports: dict[str, int]
    api_address: str | None = None

    def host(self, component: str) -> str:
        return (self.api_address or self.address) if component == "kube-apiserver" else self.address

    def url(self, component: str, scheme: str = "https") -> str:
        return f"{scheme}://{self.host(component)}:{self.ports[component]}"


@dataclass(frozen=True)
class Layout:
    """Where a cluster keeps its files, under its state directory: a :class:`~pathlib.Path` on
    this machine, or a :class:`~pathlib.PurePosixPath` on the SSH host that runs the components
    (the paths the command lines name are then that host's)."""

    state_dir: Path

    @property
    def pki(self) -> Path:
        return self.state_dir / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.state_dir / "etcd"

    @property
    def config(self) -> Path:
        return self.state_dir / "config"

    def kubeconfig(self, user: str) -> Path:
        return self.config / f"{user}.kubeconfig"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.kubeconfig("admin")

    def pem(self, name: str) -> Path:
        return self.pki / name

    @property
    def scheduler_config(self) -> Path:
        return self.config / "scheduler.yaml"

    @property
    def kwok_config(self) -> Path:
        return self.config / "kwok.yaml"


def _flags(values: dict[str, str]) -> list[str]:
    return [f"--{name}={value}" for name, value in values.items()]


def etcd(binaries: Binaries, layout: Layout, at: Endpoints) -> Component:
    """etcd over mutual TLS, as kubeadm runs it: clients and peers need a certificate of the etcd CA."""
    pem = layout.pem
    client_url = at.url("etcd")
    peer_url = at.url("etcd-peer")
    argv = [
        str(binaries["etcd"]),
        "--name=kdlib",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=kdlib={peer_url}",
        "--client-cert-auth=true",
        f"--trusted-ca-file={pem('etcd-ca.crt')}",
        f"--cert-file={pem('etcd-server.crt')}",
        f"--key-file={pem('etcd-server.key')}",
        "--peer-client-cert-auth=true",
        f"--peer-trusted-ca-file={pem('etcd-ca.crt')}",
        f"--peer-cert-file={pem('etcd-server.crt')}",
        f"--peer-key-file={pem('etcd-server.key')}",
        "--log-level=warn",
        *_flags(settings.ETCD_FLAGS),
    ]
    probe = HealthProbe(f"{client_url}/health", ca=pem("etcd-ca.crt"),
                        client_cert=pem("etcd-healthcheck-client.crt"), client_key=pem("etcd-healthcheck-client.key"))
    return Component("etcd", tuple(argv), probe)


def apiserver(binaries: Binaries, layout: Layout, at: Endpoints) -> Component:
    pem = layout.pem
    argv = [
        str(binaries["kube-apiserver"]),
        f"--etcd-servers={at.url('etcd')}",
        f"--etcd-cafile={pem('etcd-ca.crt')}",
        f"--etcd-certfile={pem('apiserver-etcd-client.crt')}",
        f"--etcd-keyfile={pem('apiserver-etcd-client.key')}",
        f"--bind-address={at.host('kube-apiserver')}",
        f"--advertise-address={at.host('kube-apiserver')}",
        f"--secure-port={at.ports['kube-apiserver']}",
        f"--tls-cert-file={pem('apiserver.crt')}",
        f"--tls-private-key-file={pem('apiserver.key')}",
        f"--client-ca-file={pem('ca.crt')}",
        f"--service-account-key-file={pem('sa.pub')}",
        f"--service-account-signing-key-file={pem('sa.key')}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-cluster-ip-range={settings.SERVICE_CLUSTER_IP_RANGE}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--allow-privileged=true",
        # No kubelet publishes the apiserver's endpoints and EndpointSlices reject
        # loopback addresses, so the `kubernetes` Service is left without endpoints.
        "--endpoint-reconciler-type=none",
        *_flags(settings.APISERVER_FLAGS),
    ]
    probe = HealthProbe(
        f"{at.url('kube-apiserver')}/readyz",
        ca=pem("ca.crt"), client_cert=pem("admin.crt"), client_key=pem("admin.key"),
    )
    return Component("kube-apiserver", tuple(argv), probe)


def _secure_serving(layout: Layout, name: str, address: str, port: int, user: str) -> list[str]:
    kubeconfig = layout.kubeconfig(user)
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={address}",
        f"--secure-port={port}",
        f"--tls-cert-file={layout.pem(name + '.crt')}",
        f"--tls-private-key-file={layout.pem(name + '.key')}",
        f"--client-ca-file={layout.pem('ca.crt')}",
        "--leader-elect=false",  # a single replica; election only delays start-up
    ]


def controller_manager(binaries: Binaries, layout: Layout, at: Endpoints, unthrottled: bool = False) -> Component:
    """``unthrottled``: the client limits raised (settings.UNTHROTTLED_CONTROLLER_MANAGER_FLAGS)."""
    port = at.ports["kube-controller-manager"]
    argv = [
        str(binaries["kube-controller-manager"]),
        *_secure_serving(layout, "controller-manager", at.address, port, "controller-manager"),
        f"--root-ca-file={layout.pem('ca.crt')}",
        f"--service-account-private-key-file={layout.pem('sa.key')}",
        f"--cluster-signing-cert-file={layout.pem('ca.crt')}",
        f"--cluster-signing-key-file={layout.pem('ca.key')}",
        "--use-service-account-credentials=true",
        "--controllers=*,bootstrapsigner,tokencleaner",
        # Its flexvolume prober would otherwise create /usr/libexec/kubernetes/... on the machine.
        f"--flex-volume-plugin-dir={layout.state_dir / 'flexvolume'}",
        *_flags(settings.CONTROLLER_MANAGER_FLAGS),
        *(_flags(settings.UNTHROTTLED_CONTROLLER_MANAGER_FLAGS) if unthrottled else ()),
    ]
    probe = HealthProbe(f"{at.url('kube-controller-manager')}/healthz", ca=layout.pem("ca.crt"))
    return Component("kube-controller-manager", tuple(argv), probe)


def scheduler_config(layout: Layout, unthrottled: bool = False) -> dict:
    """The KubeSchedulerConfiguration (it names the scheduler's kubeconfig in ``layout``)."""
    client = {"kubeconfig": str(layout.kubeconfig("scheduler")),
              **(settings.UNTHROTTLED_SCHEDULER_CLIENT if unthrottled else {})}
    return {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": client,
        "leaderElection": {"leaderElect": False},
        **settings.SCHEDULER_CONFIG,
    }


def config_files(layout: Layout, unthrottled: bool = False) -> dict[str, str]:
    """The components' config files by their path under ``layout``'s state directory."""
    root = layout.state_dir
    return {str(layout.scheduler_config.relative_to(root)): yaml.safe_dump(scheduler_config(layout, unthrottled),
                                                                            sort_keys=False),
            str(layout.kwok_config.relative_to(root)): kwok.config_yaml()}


def write_config(layout: Layout, unthrottled: bool = False, into: Path | None = None) -> None:
    """Write :func:`config_files` under ``into``: the state directory itself (default, a local
    cluster), or a staging copy of a remote one."""
    target = Path(into if into is not None else layout.state_dir)
    for name, text in config_files(layout, unthrottled).items():
        (target / name).write_text(text)


def scheduler(binaries: Binaries, layout: Layout, at: Endpoints, unthrottled: bool = False) -> Component:
    port = at.ports["kube-scheduler"]
    serving = [f for f in _secure_serving(layout, "scheduler", at.address, port, "scheduler")
               if not f.startswith(("--kubeconfig", "--leader-elect"))]  # both are in the config file
    argv = [str(binaries["kube-scheduler"]), f"--config={layout.scheduler_config}", *serving]
    probe = HealthProbe(f"{at.url('kube-scheduler')}/healthz", ca=layout.pem("ca.crt"))
    return Component("kube-scheduler", tuple(argv), probe)


def kwok_controller(binaries: Binaries, layout: Layout, at: Endpoints,
                    selector: str = settings.KWOK_NODE_SELECTOR) -> Component:
    """kwok, managing the nodes ``selector`` picks (on SSH: one worker's share of them)."""
    argv = [
        str(binaries["kwok"]),
        f"--kubeconfig={layout.kubeconfig('kwok')}",
        f"--config={layout.kwok_config}",
        f"--manage-nodes-with-label-selector={selector}",
        f"--node-lease-duration-seconds={settings.KWOK_NODE_LEASE_SECONDS}",
        f"--server-address={at.address}:{at.ports['kwok']}",
    ]
    return Component("kwok", tuple(argv), HealthProbe(f"{at.url('kwok', 'http')}/healthz"))


def control_plane(binaries: Binaries, layout: Layout, at: Endpoints, unthrottled: bool = False) -> list[Component]:
    """The components in start order (stop in reverse); ``unthrottled``: the controller
    manager's and the scheduler's client limits raised (:func:`settings.client_limits`).
    Their config files are :func:`write_config`'s."""
    return [
        etcd(binaries, layout, at),
        apiserver(binaries, layout, at),
        controller_manager(binaries, layout, at, unthrottled),
        scheduler(binaries, layout, at, unthrottled),
        kwok_controller(binaries, layout, at),
    ]
