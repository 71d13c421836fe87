"""A real Kubernetes control plane on this machine, with kwok fake nodes.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok run as local
processes under one state directory; ``LocalCluster`` starts them, creates the kwok
nodes and waits until all are Ready, and removes everything on stop (:func:`.state.down`,
which also handles a cluster whose owner process was killed).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from ...baselines import Baseline
from ...errors import ClusterBusyError, ComponentError, ConfigError
from ...log import get as get_logger
from .. import kwok, settings
from ..base import Cluster, ClusterInfo
from ..binaries import BinarySet, build_node_binaries, component_versions, default_bin_dir, ensure_binaries
from ..controlplane import components, pki
from ..controlplane.components import PORT_NAMES, START_ORDER, Endpoints, Layout
from ..marker import MARKER, is_ours
from ..signals import signals_deferred
from . import hostnet, realnodes
from .processes import Processes
from .state import LOOPBACK, MANIFEST, OWNER, default_state_dir, down, down_command, free_port, port_is_free, register, status

MAX_NODES = 5000  # kwok's own CI benchmark size; ~0.5 MiB of apiserver and etcd memory per node here
log = get_logger(__name__)


class LocalCluster(Cluster):
    """A local control plane with ``nodes`` kwok nodes.

    >>> with LocalCluster(nodes=20) as cluster:          # doctest: +SKIP
    ...     core = kubernetes.client.CoreV1Api(cluster.api_client())

    ``bin_dir`` points at a directory of the user's own binaries (Kd binaries come in
    this way, with ``kd=True``); without it kdlib builds its own, once, into the cache.
    ``unthrottled=True`` raises the controller manager's and scheduler's client limits
    (:func:`kdlib.cluster.settings.client_limits`). ``detach=True`` (the CLI's ``up``) leaves
    the processes running when this object goes away; ``down()`` stops them later.
    """

    backend = "local"

    def __init__(
        self,
        nodes: int = 20,
        *,
        state_dir: Path | str | None = None,
        bin_dir: Path | str | None = None,
        kd: bool = False,
        apiserver_port: int | None = None,
        keep_logs: bool = False,
        timeout: float = 120.0,
        take_over: bool = False,
        real_nodes: int = 0,
        unthrottled: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(nodes, int) or isinstance(nodes, bool) or nodes <= 0:
            raise ConfigError(f"nodes must be a positive integer, not {nodes!r}")
        if nodes > MAX_NODES:
            raise ConfigError(f"nodes: {nodes} is more than this backend holds ({MAX_NODES} kwok nodes, "
                              "the size kwok's own benchmark runs; the apiserver and etcd keep every node in memory)")
        if apiserver_port is not None and not (1 <= apiserver_port <= 65535):
            raise ConfigError(f"apiserver port must be in 1..65535, not {apiserver_port}")
        if kd and bin_dir is None:
            raise ConfigError("kd=True needs bin_dir: the directory holding the Kd binaries "
                              "(`python -m kdlib kd fetch` stores them)")
        if timeout <= 0:
            raise ConfigError(f"timeout must be positive, not {timeout}")
        if not isinstance(real_nodes, int) or isinstance(real_nodes, bool) or real_nodes < 0:
            raise ConfigError(f"real_nodes must be an integer >= 0, not {real_nodes!r}")
        if real_nodes and (reason := hostnet.why_not_real_nodes()):
            raise ConfigError(f"real_nodes={real_nodes}: this machine cannot run real nodes: {reason}")
        self.real_nodes = real_nodes
        self.api_address = LOOPBACK  # the bridge's host-side address once real nodes are planned
        self.nodes = nodes
        self.state_dir = Path(state_dir or default_state_dir()).expanduser().resolve()
        self.bin_dir = Path(bin_dir).expanduser() if bin_dir is not None else None
        self.kd = kd
        self.unthrottled = unthrottled
        self.apiserver_port = apiserver_port
        self.keep_logs = keep_logs
        self.timeout = timeout
        self.take_over = take_over  # stop a cluster left running in state_dir (a killed suite's)
        self.layout = Layout(self.state_dir)
        self.processes = Processes(self.state_dir)

    # -- start -------------------------------------------------------------------------

    def _start(self) -> ClusterInfo:
        binaries = ensure_binaries(self.bin_dir)
        if self.apiserver_port is not None and not port_is_free(self.apiserver_port):
            raise ConfigError(
                f"port {self.apiserver_port} on {LOOPBACK} is already in use: "
                "choose another apiserver port, or leave it unset to take a free one"
            )
        node_binaries = None
        if self.real_nodes:  # the kubelet: Kd's when its directory holds one, else ours
            node_binaries = build_node_binaries(default_bin_dir())
            if self.bin_dir is not None and (self.bin_dir / "kubelet").is_file():
                node_binaries["kubelet"] = self.bin_dir / "kubelet"
        self._claim_state_dir()
        try:
            return self._boot(binaries, node_binaries)
        except BaseException:
            with signals_deferred():  # a Ctrl-C again must not cut the clean-up short
                log.info("start-up failed; stopping what was started")
                down(self.state_dir, keep_logs=self.keep_logs, processes=self.processes)
            raise

    def _claim_state_dir(self) -> None:
        """Take the state directory, or fail at once naming the cluster that holds it."""
        self.state_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.state_dir.mkdir()
        except FileExistsError:
            if not is_ours(self.state_dir):
                raise ClusterBusyError(f"{self.state_dir} exists and was not made by kdlib: "
                                       "choose a state directory that does not exist yet") from None
            running = status(self.state_dir)
            if running["processes"] and self.take_over:
                log.warning("stopping a cluster left running in %s (its suite was killed)", self.state_dir)
                down(self.state_dir)
            elif running["processes"]:
                raise ClusterBusyError(
                    f"a local cluster is already running in {self.state_dir} "
                    f"(pids {', '.join(f'{n}={p}' for n, p in running['processes'].items())}; "
                    f"kubeconfig {running.get('kubeconfig')}): "
                    f"use it, or stop it with `{down_command(self.state_dir)}`"
                ) from None
            log.info("removing the remains of a stopped cluster in %s", self.state_dir)
            down(self.state_dir)
            self.state_dir.mkdir()
        (self.state_dir / MARKER).write_text(f"made by kdlib's local backend; `{down_command(self.state_dir)}` "
                                             "removes it\n")
        (self.state_dir / OWNER).write_text(str(os.getpid()))
        register(self.state_dir)

    def _boot(self, binaries: BinarySet, node_binaries: dict[str, Path] | None = None) -> ClusterInfo:
        started = time.monotonic()
        deadline = started + self.timeout
        ports = self._ports()
        net = None
        if self.real_nodes:  # before the apiserver: it binds the bridge's address
            net = realnodes.create_network(self.state_dir, self.real_nodes)
            self.api_address = net.host_address
        at = Endpoints(LOOPBACK, ports, api_address=self.api_address)
        hosts = (LOOPBACK, "localhost", *([self.api_address] if self.api_address != LOOPBACK else []))
        pki.write_control_plane_pki(self.layout, at.url("kube-apiserver"), hosts=hosts)
        self._write_manifest(binaries, ports, nodes=[])
        components.write_config(self.layout, self.unthrottled)
        comps = {c.name: c for c in components.control_plane(binaries, self.layout, at, self.unthrottled)}
        # etcd, then the apiserver; the rest only need the apiserver and start together.
        for wave in (["etcd"], ["kube-apiserver"], ["kube-controller-manager", "kube-scheduler", "kwok"]):
            for name in wave:
                self.processes.start(comps[name])
            for name in wave:
                self.processes.wait_healthy(comps[name], deadline)
            log.info("%s healthy after %.1f s", ", ".join(wave), time.monotonic() - started)
        api = ClusterInfo("local", self.layout.admin_kubeconfig, (), self.kd).api_client()
        try:
            names = kwok.ensure_nodes(api, self.nodes)
            kwok.wait_nodes_ready(api, names, timeout=max(1.0, deadline - time.monotonic()))
        finally:
            api.close()
        log.info("%d kwok nodes Ready after %.1f s", self.nodes, time.monotonic() - started)
        real = self._boot_real_nodes(net, node_binaries, at, deadline) if net and node_binaries else []
        if real:
            log.info("%d real nodes Ready after %.1f s", len(real), time.monotonic() - started)
        versions = component_versions(binaries)
        self._write_manifest(binaries, ports, nodes=names, versions=versions, real_nodes=real)
        (self.state_dir / OWNER).unlink(missing_ok=True)
        return ClusterInfo("local", self.layout.admin_kubeconfig, tuple(names), self.kd, versions,
                           dict(binaries.sources), real_node_names=tuple(real),
                           client_limits=settings.client_limits(self.unthrottled))

    def _boot_real_nodes(self, net: hostnet.HostNetwork, node_binaries: dict[str, Path], at: Endpoints,
                         deadline: float) -> list[str]:
        names = realnodes.start(
            self.state_dir, net, self.real_nodes, self.processes, kubelet=node_binaries["kubelet"],
            sleeper=node_binaries["sleeper"], pki_dir=self.layout.pki, server=at.url("kube-apiserver"),
            deadline=deadline)
        api = ClusterInfo("local", self.layout.admin_kubeconfig, (), self.kd).api_client()
        try:
            realnodes.wait_ready(api, names, deadline)
        finally:
            api.close()
        return names

    def _ports(self) -> dict[str, int]:
        ports: dict[str, int] = {}
        if self.apiserver_port is not None:
            ports["kube-apiserver"] = self.apiserver_port
        for name in PORT_NAMES:
            if name not in ports:
                ports[name] = free_port(set(ports.values()))
        return ports

    def _write_manifest(self, binaries: BinarySet, ports: dict[str, int], *,
                        nodes: list[str], versions: dict[str, str] | None = None,
                        real_nodes: list[str] | None = None) -> None:
        manifest = {
            "backend": "local",
            "state_dir": str(self.state_dir),
            "kubeconfig": str(self.layout.admin_kubeconfig),
            "ports": ports,
            "nodes": nodes,
            "real_nodes": real_nodes or [],
            "kd": self.kd,
            "client_limits": settings.client_limits(self.unthrottled),
            "bin_dir": str(binaries.directory),
            "sources": binaries.sources,
            "versions": versions or {},
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        tmp = self.state_dir / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=2))
        tmp.replace(self.state_dir / MANIFEST)

    # -- stop --------------------------------------------------------------------------

    def _stop(self) -> None:
        down(self.state_dir, keep_logs=self.keep_logs, processes=self.processes)

    def check(self) -> None:
        for name in START_ORDER:
            exit_status = self.processes.exit_status(name)
            if exit_status is not None:
                pid = self.processes.pid(name)
                raise ComponentError(name, f"(pid {pid}) exited with status {exit_status}",
                                     self.processes.log_tail(name))

    def pod_process_starts(self) -> dict[str, list[float]]:
        return realnodes.pod_process_starts(self.state_dir)

    def cpu_seconds(self) -> dict[str, float]:
        real = set(realnodes.process_names(self.state_dir))  # counted with their namespaces below
        found = {name: s for name, s in self.processes.cpu_seconds().items() if name not in real}
        found.update({f"real nodes/{key}": s for key, s in realnodes.cpu_seconds(self.state_dir).items()})
        return found

    def save_logs(self, destination: Path) -> None:
        if self.processes.log_dir.is_dir():
            shutil.copytree(self.processes.log_dir, destination, dirs_exist_ok=True)
            log.info("component logs saved in %s", destination)

    def why_not(self, baseline: Baseline) -> str | None:
        if baseline.simulated:
            return None
        if not self.real_nodes:
            reason = hostnet.why_not_real_nodes()
            return ("needs real kubelets and containers: this machine cannot run real nodes "
                    f"({reason})" if reason else "needs real kubelets and containers: set real_nodes >= 1")
        return None


__all__ = ["LocalCluster"]
