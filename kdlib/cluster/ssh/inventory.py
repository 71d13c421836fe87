"""The SSH inventory: which hosts make the cluster and how to log in to them.

A YAML file, validated as a whole before any connection; every problem names the host
and the field::

    cluster: kd-ae                 # names the cluster's lock and directories on the hosts
    mode: binaries                 # binaries | kubeadm
    user: root                     # defaults for every host ...
    port: 22
    key: ~/.ssh/kdlib_ed25519      # private key; ~/.ssh is read only for this file
    known_hosts: ~/kdlib/known_hosts   # optional: verify host keys against this file
    connect_timeout: 10            # seconds, per connection
    command_timeout: 300           # seconds, default per command
    remote_dir: /var/lib/kdlib     # where kdlib keeps binaries, state and logs on the hosts
    control_plane: {name: node0, address: 10.10.1.1}
    workers:
      - {name: node1, address: 10.10.1.2, kwok_nodes: 20}   # runs kwok with 20 fake nodes
      - {name: node2, address: 10.10.1.3, kubelet: true}    # runs a real kubelet
      - {name: node3, address: 10.10.1.4, user: ubuntu, port: 2222}

``use_ssh_config: true`` lets fabric read ``~/.ssh/config``, try the agent and the
default keys (off by default: nothing of the user's ``~/.ssh`` is read or written
unless asked). :func:`from_hosts_file` imports the original artifact's way of naming
hosts: every non-localhost line of ``/etc/hosts``.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ...errors import InventoryError

MODES = ("binaries", "kubeadm")
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$")
_HOST_FIELDS = {"name", "address", "user", "port", "key"}
_WORKER_FIELDS = _HOST_FIELDS | {"kwok_nodes", "kubelet"}
_TOP_FIELDS = {"cluster", "mode", "user", "port", "key", "known_hosts", "use_ssh_config",
               "connect_timeout", "command_timeout", "remote_dir", "control_plane", "workers"}


@dataclass(frozen=True)
class Host:
    """One SSH host. ``name`` is its Kubernetes node name (for a kubelet) and how errors name it."""

    name: str
    address: str
    user: str = "root"
    port: int = 22
    key: Path | None = None
    kwok_nodes: int = 0
    kubelet: bool = False

    @property
    def target(self) -> str:
        return f"{self.user}@{self.address}:{self.port}"


@dataclass(frozen=True)
class Inventory:
    """A validated inventory; build it with :func:`load`, :func:`parse` or :func:`from_hosts_file`."""

    cluster: str
    mode: str
    control_plane: Host
    workers: tuple[Host, ...]
    known_hosts: Path | None = None
    use_ssh_config: bool = False
    connect_timeout: int = 10
    command_timeout: float = 300.0
    remote_dir: str = "/var/lib/kdlib"
    source: str = field(default="<inventory>", compare=False)

    @property
    def hosts(self) -> tuple[Host, ...]:
        return (self.control_plane, *self.workers)

    @property
    def kwok_workers(self) -> tuple[Host, ...]:
        return tuple(w for w in self.workers if w.kwok_nodes > 0)

    @property
    def kubelet_workers(self) -> tuple[Host, ...]:
        return tuple(w for w in self.workers if w.kubelet)

    @property
    def kwok_node_count(self) -> int:
        return sum(w.kwok_nodes for w in self.workers)

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    def cluster_dir(self) -> str:
        """The cluster's directory on every host (per-host subdirectories below it)."""
        return f"{self.remote_dir.rstrip('/')}/{self.cluster}"

    def to_data(self) -> dict[str, Any]:
        """The inventory as YAML-ready data (what :func:`parse` reads back)."""
        def host(h: Host, worker: bool) -> dict[str, Any]:
            data: dict[str, Any] = {"name": h.name, "address": h.address, "user": h.user, "port": h.port}
            if h.key is not None:
                data["key"] = str(h.key)
            if worker and h.kwok_nodes:
                data["kwok_nodes"] = h.kwok_nodes
            if worker and h.kubelet:
                data["kubelet"] = True
            return data

        data: dict[str, Any] = {"cluster": self.cluster, "mode": self.mode, "use_ssh_config": self.use_ssh_config,
                                "connect_timeout": self.connect_timeout, "command_timeout": self.command_timeout,
                                "remote_dir": self.remote_dir}
        if self.known_hosts is not None:
            data["known_hosts"] = str(self.known_hosts)
        data["control_plane"] = host(self.control_plane, False)
        data["workers"] = [host(w, True) for w in self.workers]
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_data(), sort_keys=False)


class _Problems:
    """Collects every problem, each as "<where>: <field>: <what>"."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, name: str, what: str) -> None:
        self.items.append(f"{where}: {name}: {what}")


def _path(value: Any, where: str, name: str, problems: _Problems, *, must_exist: bool) -> Path | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        problems.add(where, name, f"must be a file path, not {value!r}")
        return None
    path = Path(os.path.expanduser(value))
    if must_exist and not path.is_file():
        problems.add(where, name, f"no such file: {path}")
    elif must_exist and not os.access(path, os.R_OK):
        problems.add(where, name, f"not readable: {path}")
    return path


def _int(value: Any, where: str, name: str, problems: _Problems, low: int, high: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        problems.add(where, name, f"must be an integer in {low}..{high}, not {value!r}")
        return None
    return value


def _address(value: Any, where: str, problems: _Problems) -> str | None:
    if not isinstance(value, str) or not value:
        problems.add(where, "address", f"required: an IP address or a DNS name, not {value!r}")
        return None
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not _HOSTNAME.match(value) or len(value) > 253:
            problems.add(where, "address", f"not an IP address or a DNS name: {value!r}")
            return None
    return value


def _host(data: Any, where: str, defaults: dict[str, Any], problems: _Problems, *, worker: bool) -> Host | None:
    if not isinstance(data, dict):
        problems.add(where, "(entry)", f"must be a mapping with name and address, not {data!r}")
        return None
    name = data.get("name")
    if isinstance(name, str) and _DNS1123.match(name) and len(name) <= 63:
        where = f"{where} ({name})"
    else:
        problems.add(where, "name", f"required: a lowercase DNS-1123 name (a-z, 0-9, '-', '.'), not {name!r}")
        name = None
    allowed = _WORKER_FIELDS if worker else _HOST_FIELDS
    for unknown in sorted(set(data) - allowed, key=str):
        hint = " (only workers run kwok or kubelets)" if unknown in _WORKER_FIELDS else ""
        problems.add(where, str(unknown), f"unknown field{hint}; known: {', '.join(sorted(allowed))}")
    address = _address(data.get("address"), where, problems)
    user = data.get("user", defaults["user"])
    if not isinstance(user, str) or not re.match(r"^[a-z_][a-z0-9_.-]*$", user):
        problems.add(where, "user", f"must be a user name, not {user!r}")
    port = _int(data.get("port", defaults["port"]), where, "port", problems, 1, 65535)
    key = _path(data.get("key", defaults["key"]), where, "key", problems, must_exist=True)
    if key is None and not defaults["use_ssh_config"] and "key" not in data:
        problems.add(where, "key", "required (here or at the top) unless use_ssh_config is true")
    kwok_nodes, kubelet = 0, False
    if worker:
        kwok_nodes = _int(data.get("kwok_nodes", 0), where, "kwok_nodes", problems, 0, 100_000) or 0
        kubelet = data.get("kubelet", False)
        if not isinstance(kubelet, bool):
            problems.add(where, "kubelet", f"must be true or false, not {kubelet!r}")
            kubelet = False
        if kwok_nodes == 0 and not kubelet and "kwok_nodes" not in data and "kubelet" not in data:
            problems.add(where, "kwok_nodes", "this worker has no role: set kwok_nodes: N or kubelet: true")
    if name is None or address is None or port is None or not isinstance(user, str):
        return None
    return Host(name, address, user, port, key, kwok_nodes, kubelet)


def parse(data: Any, source: str = "<inventory>") -> Inventory:
    """Validate inventory data (as read from YAML); raises one :class:`InventoryError`
    listing every problem."""
    problems = _Problems()
    if not isinstance(data, dict):
        raise InventoryError(source, [f"top: (file): must be a mapping, not {type(data).__name__}"])
    for unknown in sorted(set(data) - _TOP_FIELDS, key=str):
        problems.add("top", str(unknown), f"unknown field; known: {', '.join(sorted(_TOP_FIELDS))}")
    cluster = data.get("cluster", "kdlib")
    if not isinstance(cluster, str) or not re.match(r"^[a-z0-9][-a-z0-9]{0,39}$", cluster):
        problems.add("top", "cluster", f"must be 1-40 of a-z, 0-9, '-', not {cluster!r}")
    mode = data.get("mode", "binaries")
    if mode not in MODES:
        problems.add("top", "mode", f"must be one of {', '.join(MODES)}, not {mode!r}")
    use_ssh_config = data.get("use_ssh_config", False)
    if not isinstance(use_ssh_config, bool):
        problems.add("top", "use_ssh_config", f"must be true or false, not {use_ssh_config!r}")
        use_ssh_config = False
    connect_timeout = _int(data.get("connect_timeout", 10), "top", "connect_timeout", problems, 1, 600)
    command_timeout = data.get("command_timeout", 300)
    if isinstance(command_timeout, bool) or not isinstance(command_timeout, (int, float)) or command_timeout <= 0:
        problems.add("top", "command_timeout", f"must be a positive number of seconds, not {command_timeout!r}")
    remote_dir = data.get("remote_dir", "/var/lib/kdlib")
    if not isinstance(remote_dir, str) or not remote_dir.startswith("/") or not re.match(r"^[A-Za-z0-9_./-]+$", remote_dir):
        problems.add("top", "remote_dir", f"must be an absolute path of [A-Za-z0-9_./-], not {remote_dir!r}")
    known_hosts = _path(data.get("known_hosts"), "top", "known_hosts", problems, must_exist=True)
    defaults = {"user": data.get("user", "root"), "port": data.get("port", 22), "key": data.get("key"),
                "use_ssh_config": use_ssh_config}

    control_plane = None
    if "control_plane" not in data:
        problems.add("top", "control_plane", "required: the host of etcd and the API server")
    else:
        control_plane = _host(data["control_plane"], "control_plane", defaults, problems, worker=False)
    workers_data = data.get("workers")
    workers: list[Host] = []
    if not isinstance(workers_data, list) or not workers_data:
        problems.add("top", "workers", "required: a list of at least one worker")
    else:
        for i, entry in enumerate(workers_data):
            host = _host(entry, f"workers[{i}]", defaults, problems, worker=True)
            if host is not None:
                workers.append(host)

    seen_names: dict[str, str] = {}
    seen_targets: dict[tuple[str, int], str] = {}
    for where, host in [("control_plane", control_plane), *((f"workers[{i}]", w) for i, w in enumerate(workers))]:
        if host is None:
            continue
        if host.name in seen_names:
            problems.add(f"{where} ({host.name})", "name", f"also the name of {seen_names[host.name]}")
        seen_names.setdefault(host.name, where)
        if (host.address, host.port) in seen_targets:
            problems.add(f"{where} ({host.name})", "address",
                         f"{host.address}:{host.port} is also {seen_targets[(host.address, host.port)]}")
        seen_targets.setdefault((host.address, host.port), host.name)
    if mode == "kubeadm" and any(w.kwok_nodes for w in workers) and not any(w.kubelet for w in workers):
        problems.add("top", "workers", "kubeadm mode needs at least one worker with kubelet: true (kwok runs as a pod)")
    if problems.items:
        raise InventoryError(source, problems.items)
    assert control_plane is not None and connect_timeout is not None  # guaranteed when no problem was found
    return Inventory(cluster, mode, control_plane, tuple(workers), known_hosts, use_ssh_config,
                     connect_timeout, float(command_timeout), remote_dir.rstrip("/") or "/", source)


def load(path: Path | str) -> Inventory:
    """Read and validate an inventory file."""
    path = Path(path).expanduser()
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise InventoryError(str(path), [f"top: (file): cannot read it: {error.strerror}"]) from None
    except yaml.YAMLError as error:
        raise InventoryError(str(path), [f"top: (file): not valid YAML: {str(error).splitlines()[0]}"]) from None
    return parse(data, str(path))


def hosts_file_entries(text: str, exclude: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    """(name, address) pairs as the original artifact reads ``/etc/hosts``: every line
    that does not mention localhost, its last field the name, its first the address;
    names listed in ``exclude`` (its ``~/.ssh/exclude``) are left out."""
    entries = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2 or "localhost" in line:
            continue
        if fields[-1] not in exclude:
            entries.append((fields[-1], fields[0]))
    return entries


def from_hosts_file(
    text: str,
    control_plane: str,
    *,
    key: Path | str,
    user: str = "root",
    exclude: tuple[str, ...] = (),
    workers: int | None = None,
    kwok_nodes: int = 0,
    kwok_workers: int = 1,
    kubelet: bool = True,
    cluster: str = "kdlib",
    mode: str = "binaries",
    source: str = "/etc/hosts",
) -> Inventory:
    """An inventory from the original artifact's host list.

    As there: the control plane is the named host (the artifact's master, the machine
    its scripts ran on), the workers are the other hosts in file order (the first
    ``workers`` of them when given), and every worker runs a real kubelet. The
    ``kwok_nodes`` fake nodes are split evenly over the first ``kwok_workers`` workers.
    """
    entries = hosts_file_entries(text, exclude)
    names = [name for name, _ in entries]
    if control_plane not in names:
        raise InventoryError(source, [f"top: control_plane: {control_plane!r} is not a host in {source} "
                                      f"(hosts: {', '.join(names) or 'none'})"])
    chosen = [(n, a) for n, a in entries if n != control_plane][:workers]
    if kwok_nodes and not 1 <= kwok_workers <= len(chosen):
        raise InventoryError(source, [f"top: kwok_workers: must be in 1..{len(chosen)}, not {kwok_workers}"])
    per_worker = [kwok_nodes // kwok_workers + (1 if i < kwok_nodes % kwok_workers else 0)
                  for i in range(kwok_workers)] if kwok_nodes else []
    worker_data = []
    for i, (name, address) in enumerate(chosen):
        entry: dict[str, Any] = {"name": name.lower(), "address": address, "kubelet": kubelet}
        if i < len(per_worker):
            entry["kwok_nodes"] = per_worker[i]
        worker_data.append(entry)
    data = {"cluster": cluster, "mode": mode, "user": user, "key": str(key),
            "control_plane": {"name": control_plane.lower(), "address": dict(entries)[control_plane]},
            "workers": worker_data}
    return parse(data, source)
