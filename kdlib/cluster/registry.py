"""The cluster backends, by name: the one place that knows which exist and how to open one.

A backend is a function that returns a not-yet-started :class:`Cluster` for a suite;
the cluster then says itself which baselines it cannot run. A backend that this
version cannot offer is registered with the reason, so that validation names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ConfigError
from .base import Cluster

Opener = Callable[..., Cluster]  # (nodes=, kd=, bin_dir=, real_nodes=, inventory=, unthrottled=) -> a not-yet-started cluster


@dataclass(frozen=True)
class Backend:
    name: str
    open: Opener | None
    unavailable: str | None = None  # why this version cannot offer it


_BACKENDS: dict[str, Backend] = {}


def register(name: str, opener: Opener | None, *, unavailable: str | None = None) -> None:
    _BACKENDS[name] = Backend(name, opener, unavailable)


def names() -> tuple[str, ...]:
    return tuple(_BACKENDS)


def problem(name: str) -> str | None:
    """Why ``name`` cannot be used, or None."""
    backend = _BACKENDS.get(name)
    if backend is None:
        return f"{name!r} is not one of {', '.join(_BACKENDS)}"
    return backend.unavailable


def backend_problems(backend: object, inventory: Path | None) -> list[str]:
    """What is wrong with a backend choice and its inventory (read and validated, never
    connected to): the checks every experiment runs before it provisions anything."""
    if not isinstance(backend, str):
        return [f"backend: must be a name ({', '.join(_BACKENDS)}), not {backend!r}"]
    reason = problem(backend)
    if reason:
        return [f"backend: {reason}"]
    if backend != "ssh":
        return [f"inventory: only the 'ssh' backend uses one, not {backend!r}"] if inventory else []
    if inventory is None:
        return ["inventory: required with backend 'ssh': the YAML file naming the hosts (see `kdlib ssh check`)"]
    if not isinstance(inventory, (str, Path)):
        return [f"inventory: must be the path of a YAML file, not {inventory!r}"]
    from ..errors import InventoryError
    from .ssh import inventory as inventories

    try:
        inventories.load(inventory)
    except InventoryError as error:
        return [f"inventory: {inventory}: {line}" for line in error.problems]
    return []


def open_cluster(name: str, *, nodes: int, kd: bool, bin_dir: Path | None, real_nodes: int = 0,
                 inventory: Path | None = None, unthrottled: bool = False) -> Cluster:
    """A not-yet-started cluster of backend ``name``; use it as a context manager.
    ``real_nodes`` is the local backend's; ``inventory`` the ssh backend's hosts;
    ``unthrottled`` raises the control plane's client limits (``settings.client_limits``)."""
    reason = problem(name)
    if reason:
        raise ConfigError(f"backend: {reason}")
    opener = _BACKENDS[name].open
    assert opener is not None  # registered without one only with the reason problem() gave
    return opener(nodes=nodes, kd=kd, bin_dir=bin_dir, real_nodes=real_nodes, inventory=inventory,
                  unthrottled=unthrottled)


def kwok_nodes(name: str, *, nodes: int, inventory: Path | None = None) -> int:
    """How many kwok nodes a cluster of backend ``name`` asked for ``nodes`` has: none over SSH
    when no worker of the inventory runs kwok (its real nodes only)."""
    if name == "ssh" and inventory is not None:
        from .ssh import inventory as inventories

        return nodes if inventories.load(inventory).kwok_workers else 0
    return nodes


def _local(*, nodes: int, kd: bool, bin_dir: Path | None, real_nodes: int, inventory: Path | None,
           unthrottled: bool = False) -> Cluster:
    from .local import LocalCluster, suite_state_dir
    from .local.hostnet import why_not_real_nodes

    if real_nodes and why_not_real_nodes():  # the cluster's why_not names the reason for the rows
        real_nodes = 0

    # The suite holds the machine's suite lock, so a cluster left running in its state
    # directory belongs to a suite that was killed (e.g. its kernel): take it over.
    return LocalCluster(nodes=nodes, kd=kd, bin_dir=bin_dir if kd else None, state_dir=suite_state_dir(),
                        take_over=True, real_nodes=real_nodes, unthrottled=unthrottled)


def _ssh(*, nodes: int, kd: bool, bin_dir: Path | None, real_nodes: int, inventory: Path | None,
         unthrottled: bool = False) -> Cluster:
    from .ssh import inventory as inventories
    from .ssh.cluster import SshCluster

    if inventory is None:
        raise ConfigError("backend 'ssh' needs an inventory: the YAML file naming the hosts")
    hosts = inventories.load(inventory)
    if hosts.mode == "kubeadm":  # the original's way: kubeadm init/join; real kubelets only
        from .ssh.kubeadm_cluster import KubeadmCluster

        return KubeadmCluster(hosts, kd=kd, unthrottled=unthrottled, bin_dir=bin_dir if kd else None, cni="bridge")
    # The real nodes are the inventory's kubelet workers; a suite's lock is the cluster's
    # lock on the control-plane host, and a killed suite's remains are cleaned at start.
    # No kwok worker: no kwok nodes; the cluster's why_not names the systems that needed them.
    return SshCluster(hosts, nodes=kwok_nodes("ssh", nodes=nodes, inventory=inventory), kd=kd,
                      bin_dir=bin_dir if kd else None,
                      take_over=True, unthrottled=unthrottled)


register("local", _local)
register("ssh", _ssh)
