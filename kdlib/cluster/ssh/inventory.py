"""The SSH inventory: which hosts make the cluster and how to log in to them.

A YAML file, validated as a whole before any connection (declared once, as the pydantic
model :class:`InventoryFile`); every problem names the field's path (``workers[2].port``)::

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
    kubeadm:                       # mode kubeadm only; each optional, kubeadm's defaults shown
      kube_proxy: true             # kubeadm's addons: off when their images cannot be had
      coredns: true
      encryption_algorithm: RSA-2048   # the certificates' keys (ECDSA-P256: much faster on slow hosts)
      ignore_preflight_errors: []  # kubeadm's check names, e.g. [NumCPU] on 1-CPU hosts

``use_ssh_config: true`` lets fabric read ``~/.ssh/config``, try the agent and the
default keys (off by default: nothing of the user's ``~/.ssh`` is read or written
unless asked). :func:`from_hosts_file` imports the original artifact's way of naming
hosts: every non-localhost line of ``/etc/hosts``.

Long because the file is declared here field by field, each with its check: one format, one home.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, model_validator

from ...errors import InventoryError
from ...params import check, problems

MODES = ("binaries", "kubeadm")
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$")


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
class KubeadmOptions:
    """The inventory's ``kubeadm:`` section: what a user's hosts may need changed in kubeadm mode."""

    kube_proxy: bool = True
    coredns: bool = True
    encryption_algorithm: str = "RSA-2048"
    ignore_preflight_errors: tuple[str, ...] = ()

    def settings(self) -> dict[str, Any]:
        """The :class:`~.kubeadm_config.KubeadmSettings` fields these options set."""
        return {"kube_proxy": self.kube_proxy, "coredns": self.coredns,
                "encryption_algorithm": self.encryption_algorithm}


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
    kubeadm: KubeadmOptions = KubeadmOptions()

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
        if self.kubeadm != KubeadmOptions():
            data["kubeadm"] = {**self.kubeadm.__dict__,
                               "ignore_preflight_errors": list(self.kubeadm.ignore_preflight_errors)}
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_data(), sort_keys=False)


# -- the file as declared: one pydantic model per level; every check names the field's path --------

def _int_in(low: int, high: int, *, none: bool = False) -> Any:
    """An integer in ``low..high`` (or None, the top's, with ``none``)."""
    return check(lambda v: None if (none and v is None) or (isinstance(v, int) and not isinstance(v, bool)
                                                            and low <= v <= high)
                 else f"must be an integer in {low}..{high}, not {v!r}")


def _true_or_false(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, not {value!r}"


def _file(value: Any) -> Path | None:
    """A file this machine reads (a key, known_hosts); ``~`` expanded."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a file path, not {value!r}")
    path = Path(os.path.expanduser(value))
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    if not os.access(path, os.R_OK):
        raise ValueError(f"not readable: {path}")
    return path


def _name(value: Any) -> str | None:
    ok = isinstance(value, str) and _DNS1123.match(value) and len(value) <= 63
    return None if ok else f"required: a lowercase DNS-1123 name (a-z, 0-9, '-', '.'), not {value!r}"


def _address(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return f"required: an IP address or a DNS name, not {value!r}"
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not _HOSTNAME.match(value) or len(value) > 253:
            return f"not an IP address or a DNS name: {value!r}"
    return None


def _user(value: Any) -> str | None:
    ok = value is None or (isinstance(value, str) and re.match(r"^[a-z_][a-z0-9_.-]*$", value))
    return None if ok else f"must be a user name, not {value!r}"


KeyFile = Annotated[Path | None, BeforeValidator(_file)]


class HostEntry(BaseModel):
    """A host as the file gives it; ``user``, ``port`` and ``key`` default to the top's."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)
    UNKNOWN_FIELD_HINTS: ClassVar[dict[str, str]] = {"kwok_nodes": "only workers run kwok or kubelets",
                                                     "kubelet": "only workers run kwok or kubelets"}

    name: Annotated[str | None, check(_name)] = None  # None is refused: required
    address: Annotated[str | None, check(_address)] = None  # None is refused: required
    user: Annotated[str | None, check(_user)] = None
    port: Annotated[int | None, _int_in(1, 65535, none=True)] = None
    key: KeyFile = None


class WorkerEntry(HostEntry):
    """A worker: kwok with ``kwok_nodes`` fake nodes, a real kubelet, or both."""

    UNKNOWN_FIELD_HINTS: ClassVar[dict[str, str]] = {}

    kwok_nodes: Annotated[int, _int_in(0, 100_000)] = 0
    kubelet: Annotated[bool, check(_true_or_false)] = False

    @model_validator(mode="after")
    def _has_a_role(self) -> "WorkerEntry":
        if not self.kwok_nodes and not self.kubelet and not {"kwok_nodes", "kubelet"} & self.model_fields_set:
            raise ValueError("kwok_nodes: this worker has no role: set kwok_nodes: N or kubelet: true")
        return self


def _encryption_algorithm(value: Any) -> str | None:
    from .kubeadm_config import ENCRYPTION_ALGORITHMS  # here: kubeadm_config reads this module's Host

    return None if value in ENCRYPTION_ALGORITHMS else f"must be one of {', '.join(ENCRYPTION_ALGORITHMS)}, not {value!r}"


def _check_names(value: Any) -> str | None:
    ok = isinstance(value, list) and all(isinstance(v, str) and re.match(r"^[A-Za-z0-9-]+$", v) for v in value)
    return None if ok else f"must be a list of kubeadm preflight check names (like NumCPU), not {value!r}"


class KubeadmEntry(BaseModel):
    """The ``kubeadm:`` section as the file gives it (:class:`KubeadmOptions`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    kube_proxy: Annotated[bool, check(_true_or_false)] = True
    coredns: Annotated[bool, check(_true_or_false)] = True
    encryption_algorithm: Annotated[str, check(_encryption_algorithm)] = "RSA-2048"
    ignore_preflight_errors: Annotated[list[str], check(_check_names)] = []


class InventoryFile(BaseModel):
    """The inventory file as declared; :func:`parse` makes the :class:`Inventory` from it."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    cluster: Annotated[str, check(lambda v: None if isinstance(v, str) and re.match(r"^[a-z0-9][-a-z0-9]{0,39}$", v)
                                  else f"must be 1-40 of a-z, 0-9, '-', not {v!r}")] = "kdlib"
    mode: Annotated[str, check(lambda v: None if v in MODES else f"must be one of {', '.join(MODES)}, not {v!r}")] = \
        "binaries"
    user: Annotated[str, check(lambda v: _user(v) if v is not None else "must be a user name, not None")] = "root"
    port: Annotated[int, _int_in(1, 65535)] = 22
    key: KeyFile = None
    known_hosts: KeyFile = None
    use_ssh_config: Annotated[bool, check(_true_or_false)] = False
    connect_timeout: Annotated[int, _int_in(1, 600)] = 10
    command_timeout: Annotated[float, check(
        lambda v: None if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
        else f"must be a positive number of seconds, not {v!r}")] = 300.0
    remote_dir: Annotated[str, check(
        lambda v: None if isinstance(v, str) and v.startswith("/") and re.match(r"^[A-Za-z0-9_./-]+$", v)
        else f"must be an absolute path of [A-Za-z0-9_./-], not {v!r}")] = "/var/lib/kdlib"
    control_plane: Annotated[HostEntry | None, check(
        lambda v: "required: the host of etcd and the API server" if v is None else None)] = None
    workers: Annotated[list[WorkerEntry] | None, check(
        lambda v: None if isinstance(v, list) and v else "required: a list of at least one worker")] = None
    kubeadm: KubeadmEntry | None = None

    @model_validator(mode="after")
    def _hosts_together(self) -> "InventoryFile":
        """What only the hosts together tell: keys, duplicate names and addresses, kubeadm's kubelets."""
        found = []
        entries = [("control_plane", self.control_plane), *((f"workers[{i}]", w) for i, w in enumerate(self.workers))]
        if self.key is None and not self.use_ssh_config:
            found += [f"{where}.key: required (here or at the top) unless use_ssh_config is true"
                      for where, entry in entries if entry.key is None]
        names: dict[str, str] = {}
        targets: dict[tuple[str, int], str] = {}
        for where, entry in entries:
            if entry.name in names:
                found.append(f"{where}.name: also the name of {names[entry.name]}")
            names.setdefault(entry.name, where)
            target = (entry.address, entry.port or self.port)
            if target in targets:
                found.append(f"{where}.address: {target[0]}:{target[1]} is also {targets[target]}")
            targets.setdefault(target, entry.name)
        if (self.mode == "kubeadm" and any(w.kwok_nodes for w in self.workers)
                and not any(w.kubelet for w in self.workers)):
            found.append("workers: kubeadm mode needs at least one worker with kubelet: true (kwok runs as a pod)")
        if self.kubeadm is not None and self.mode != "kubeadm":
            found.append(f"kubeadm: only for mode: kubeadm (this inventory's mode is {self.mode})")
        if found:
            raise ValueError("\n".join(found))
        return self

    def host(self, entry: HostEntry) -> Host:
        """The host ``entry`` names, with the top's defaults filled in."""
        worker = isinstance(entry, WorkerEntry)
        return Host(entry.name, entry.address, entry.user or self.user, entry.port or self.port,
                    entry.key or self.key, entry.kwok_nodes if worker else 0, entry.kubelet if worker else False)


def parse(data: Any, source: str = "<inventory>") -> Inventory:
    """Validate inventory data (as read from YAML); raises one :class:`InventoryError`
    listing every problem, each naming the field's path (``workers[2].port``)."""
    if not isinstance(data, dict):
        raise InventoryError(source, [f"(file): must be a mapping, not {type(data).__name__}"])
    try:
        given = InventoryFile.model_validate(data)
    except ValidationError as error:
        raise InventoryError(source, problems(error, InventoryFile)) from None
    return Inventory(given.cluster, given.mode, given.host(given.control_plane),
                     tuple(given.host(w) for w in given.workers), given.known_hosts, given.use_ssh_config,
                     given.connect_timeout, float(given.command_timeout), given.remote_dir.rstrip("/") or "/", source,
                     _kubeadm_options(given.kubeadm))


def _kubeadm_options(entry: KubeadmEntry | None) -> KubeadmOptions:
    if entry is None:
        return KubeadmOptions()
    return KubeadmOptions(entry.kube_proxy, entry.coredns, entry.encryption_algorithm,
                          tuple(entry.ignore_preflight_errors))


def load(path: Path | str) -> Inventory:
    """Read and validate an inventory file."""
    path = Path(path).expanduser()
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise InventoryError(str(path), [f"(file): cannot read it: {error.strerror}"]) from None
    except yaml.YAMLError as error:
        raise InventoryError(str(path), [f"(file): not valid YAML: {str(error).splitlines()[0]}"]) from None
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
        raise InventoryError(source, [f"control_plane: {control_plane!r} is not a host in {source} "
                                      f"(hosts: {', '.join(names) or 'none'})"])
    chosen = [(n, a) for n, a in entries if n != control_plane][:workers]
    if kwok_nodes and not 1 <= kwok_workers <= len(chosen):
        raise InventoryError(source, [f"kwok_workers: must be in 1..{len(chosen)}, not {kwok_workers}"])
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
