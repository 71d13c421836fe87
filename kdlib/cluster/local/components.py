"""The command lines of the local control plane, from its layout on disk and its ports.

Every component listens on 127.0.0.1 only. TLS and RBAC are as in a kubeadm cluster:
the apiserver has no insecure port and authorises with Node,RBAC; the controller
manager and the scheduler authenticate with their own certificates. The artifact's
flags come from :mod:`kdlib.settings`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from ... import kwok, settings
from ...binaries import BinarySet
from .processes import Component, HealthProbe

LOOPBACK = "127.0.0.1"
PORT_NAMES = ("etcd", "etcd-peer", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


@dataclass(frozen=True)
class Layout:
    """Where a local cluster keeps its files, under its state directory."""

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


def _flags(values: dict[str, str]) -> list[str]:
    return [f"--{name}={value}" for name, value in values.items()]


def etcd(binaries: BinarySet, layout: Layout, ports: dict[str, int]) -> Component:
    client_url = f"http://{LOOPBACK}:{ports['etcd']}"
    peer_url = f"http://{LOOPBACK}:{ports['etcd-peer']}"
    argv = [
        str(binaries["etcd"]),
        "--name=kdlib",
        f"--data-dir={layout.etcd_data}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster=kdlib={peer_url}",
        "--log-level=warn",
        *_flags(settings.ETCD_FLAGS),
    ]
    return Component("etcd", tuple(argv), HealthProbe(f"{client_url}/health"))


def apiserver(binaries: BinarySet, layout: Layout, ports: dict[str, int], address: str = LOOPBACK) -> Component:
    """``address``: where it listens and what it advertises (a real node's bridge address, else loopback)."""
    pem = layout.pem
    argv = [
        str(binaries["kube-apiserver"]),
        f"--etcd-servers=http://{LOOPBACK}:{ports['etcd']}",
        f"--bind-address={address}",
        f"--advertise-address={address}",
        f"--secure-port={ports['kube-apiserver']}",
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
        f"https://{address}:{ports['kube-apiserver']}/readyz",
        ca=pem("ca.crt"), client_cert=pem("admin.crt"), client_key=pem("admin.key"),
    )
    return Component("kube-apiserver", tuple(argv), probe)


def _secure_serving(layout: Layout, name: str, port: int, user: str) -> list[str]:
    kubeconfig = layout.kubeconfig(user)
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--bind-address={LOOPBACK}",
        f"--secure-port={port}",
        f"--tls-cert-file={layout.pem(name + '.crt')}",
        f"--tls-private-key-file={layout.pem(name + '.key')}",
        f"--client-ca-file={layout.pem('ca.crt')}",
        "--leader-elect=false",  # a single replica; election only delays start-up
    ]


def controller_manager(binaries: BinarySet, layout: Layout, ports: dict[str, int]) -> Component:
    port = ports["kube-controller-manager"]
    argv = [
        str(binaries["kube-controller-manager"]),
        *_secure_serving(layout, "controller-manager", port, "controller-manager"),
        f"--root-ca-file={layout.pem('ca.crt')}",
        f"--service-account-private-key-file={layout.pem('sa.key')}",
        f"--cluster-signing-cert-file={layout.pem('ca.crt')}",
        f"--cluster-signing-key-file={layout.pem('ca.key')}",
        "--use-service-account-credentials=true",
        "--controllers=*,bootstrapsigner,tokencleaner",
        # Its flexvolume prober would otherwise create /usr/libexec/kubernetes/... on the machine.
        f"--flex-volume-plugin-dir={layout.state_dir / 'flexvolume'}",
        *_flags(settings.CONTROLLER_MANAGER_FLAGS),
    ]
    probe = HealthProbe(f"https://{LOOPBACK}:{port}/healthz", ca=layout.pem("ca.crt"))
    return Component("kube-controller-manager", tuple(argv), probe)


def scheduler_config(layout: Layout) -> Path:
    config = {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": str(layout.kubeconfig("scheduler"))},
        "leaderElection": {"leaderElect": False},
        **settings.SCHEDULER_CONFIG,
    }
    path = layout.config / "scheduler.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def scheduler(binaries: BinarySet, layout: Layout, ports: dict[str, int]) -> Component:
    port = ports["kube-scheduler"]
    serving = [f for f in _secure_serving(layout, "scheduler", port, "scheduler")
               if not f.startswith(("--kubeconfig", "--leader-elect"))]  # both are in the config file
    argv = [str(binaries["kube-scheduler"]), f"--config={scheduler_config(layout)}", *serving]
    probe = HealthProbe(f"https://{LOOPBACK}:{port}/healthz", ca=layout.pem("ca.crt"))
    return Component("kube-scheduler", tuple(argv), probe)


def kwok_controller(binaries: BinarySet, layout: Layout, ports: dict[str, int]) -> Component:
    config = layout.config / "kwok.yaml"
    config.write_text(kwok.config_yaml())
    argv = [
        str(binaries["kwok"]),
        f"--kubeconfig={layout.kubeconfig('kwok')}",
        f"--config={config}",
        f"--manage-nodes-with-label-selector={settings.KWOK_NODE_SELECTOR}",
        f"--node-lease-duration-seconds={settings.KWOK_NODE_LEASE_SECONDS}",
        f"--server-address={LOOPBACK}:{ports['kwok']}",
    ]
    return Component("kwok", tuple(argv), HealthProbe(f"http://{LOOPBACK}:{ports['kwok']}/healthz"))


def control_plane(binaries: BinarySet, layout: Layout, ports: dict[str, int],
                  api_address: str = LOOPBACK) -> list[Component]:
    """The components in start order (stop in reverse)."""
    return [
        etcd(binaries, layout, ports),
        apiserver(binaries, layout, ports, api_address),
        controller_manager(binaries, layout, ports),
        scheduler(binaries, layout, ports),
        kwok_controller(binaries, layout, ports),
    ]
