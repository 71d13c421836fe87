"""Commands, files and detached processes on SSH hosts, through fabric.

:class:`Remote` is one host's connection; :class:`Hosts` opens one per host of an
inventory and runs a command on several at once through fabric's ``ThreadingGroup``.
Every operation has a connect and a command timeout. Outcomes are values
(:class:`CommandResult`, :class:`PutResult`, :class:`GroupResult`); failures are kdlib
errors naming the host, the command and the tail of its output:

- cannot connect, authentication or host-key failure, connection lost → :class:`HostUnreachable`
- non-zero exit (with ``check``) or timeout → :class:`RemoteError`

:meth:`Hosts.each` never returns while one of its calls still runs: interrupted (Ctrl-C),
it refuses the calls' further commands and waits for the ones in flight, so a clean-up
that follows never races a start still going on a host.

Nothing of the user's ``~/.ssh`` is read or written unless the inventory says
``use_ssh_config: true``: no ssh_config, no agent, no default keys, host keys kept in
memory only (verified against the inventory's ``known_hosts`` when it names one).

Long because it is the whole fabric layer, one idea: :class:`Hosts` runs through each
:class:`Remote`'s connection, result mapping (``_result``, :func:`map_error`) and
interruption state (``_each``), so that every SSH call in kdlib shares one set of timeouts,
errors and Ctrl-C rules; split, each half would reach into the other's internals.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shlex
import socket
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, TypeVar

import paramiko
from fabric import Config, Connection, ThreadingGroup
from fabric.exceptions import GroupException
from invoke.exceptions import CommandTimedOut, UnexpectedExit

from ...errors import HostUnreachable, RemoteError
from ..signals import signals_deferred
from .inventory import Host, Inventory

log = logging.getLogger(__name__)
T = TypeVar("T")
TAIL_LINES = 15
HANDSHAKE_TIMEOUT = 10  # seconds, at least, for the SSH banner, the login and opening a channel
INTERRUPTED = "not run: the run was interrupted"

# The cancellation of the Hosts.each call this thread works for (None outside one).
_each = threading.local()


@dataclass(frozen=True)
class SshOptions:
    """How to connect: the inventory's timeouts and trust settings."""

    connect_timeout: int = 10
    command_timeout: float = 300.0
    known_hosts: Path | None = None
    use_ssh_config: bool = False

    @classmethod
    def of(cls, inventory: Inventory) -> "SshOptions":
        return cls(inventory.connect_timeout, inventory.command_timeout, inventory.known_hosts,
                   inventory.use_ssh_config)


@dataclass(frozen=True)
class CommandResult:
    """What a command did on one host."""

    host: str
    command: str
    exit_code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def tail(self, lines: int = TAIL_LINES) -> str:
        return "\n".join((self.stdout.rstrip() + "\n" + self.stderr.rstrip()).strip().splitlines()[-lines:])

    def __repr__(self) -> str:
        return f"<CommandResult {self.host} exit={self.exit_code} {self.seconds:.2f}s {self.command[:40]!r}>"


@dataclass(frozen=True)
class PutResult:
    """A file shipped to one host, or skipped because the same file is already there."""

    host: str
    local: Path
    remote: str
    sha256: str
    size: int
    skipped: bool
    seconds: float


class GroupResult(dict):
    """Per-host outcomes: host name → value, or the :class:`RemoteError` it met."""

    @property
    def failed(self) -> dict[str, RemoteError]:
        return {h: v for h, v in self.items() if isinstance(v, RemoteError)}

    @property
    def succeeded(self) -> dict:
        return {h: v for h, v in self.items() if not isinstance(v, RemoteError)}

    def check(self) -> "GroupResult":
        """Raise when any host failed: that host's error, or one naming every failed host."""
        failed = self.failed
        if len(failed) == 1:
            raise next(iter(failed.values()))
        if failed:
            kind = HostUnreachable if all(isinstance(e, HostUnreachable) for e in failed.values()) else RemoteError
            first = next(iter(failed.values()))
            reasons = "; ".join(f"{h}: {e.reason}" for h, e in failed.items())
            raise kind(", ".join(failed), first.command, f"failed on {len(failed)} hosts ({reasons})")
        return self


_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) → sha256: binaries are hashed once


def sha256_file(path: Path) -> str:
    stat = os.stat(path)
    key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def map_error(host: Host, command: str, error: BaseException, timeout: float | None = None) -> RemoteError:
    """A fabric/paramiko/socket failure as a kdlib error naming the host."""
    name = host.name
    if isinstance(error, RemoteError):
        return error
    if isinstance(error, CommandTimedOut):
        return RemoteError(name, command, f"no exit after the {error.timeout} s command timeout",
                           _tail(error.result.stdout, error.result.stderr))
    if isinstance(error, UnexpectedExit):
        return RemoteError(name, command, f"exit code {error.result.exited}",
                           _tail(error.result.stdout, error.result.stderr))
    if isinstance(error, paramiko.AuthenticationException):
        return HostUnreachable(name, command, f"authentication failed at {host.target} "
                                              f"with key {host.key}: {error}")
    if isinstance(error, paramiko.BadHostKeyException):
        return HostUnreachable(name, command, f"host key of {host.target} differs from known_hosts")
    if isinstance(error, paramiko.ssh_exception.NoValidConnectionsError):
        reasons = "; ".join(sorted({e.strerror or str(e) for e in error.errors.values()}))
        return HostUnreachable(name, command, f"cannot connect to {host.target}: {reasons}")
    if isinstance(error, (socket.timeout, TimeoutError)):
        return HostUnreachable(name, command, f"no answer from {host.target} within {timeout or '?'} s")
    if isinstance(error, (paramiko.SSHException, EOFError)):
        detail = str(error) or "the connection was lost"
        return HostUnreachable(name, command, f"SSH failure with {host.target}: {detail}")
    if isinstance(error, OSError):
        return HostUnreachable(name, command, f"connection to {host.target} failed: {error}")
    return RemoteError(name, command, f"{type(error).__name__}: {error}")


def _tail(stdout: str, stderr: str) -> str:
    return "\n".join((stdout.rstrip() + "\n" + stderr.rstrip()).strip().splitlines()[-TAIL_LINES:])


class Remote:
    """One host: a lazily opened fabric ``Connection`` with timeouts on everything."""

    def __init__(self, host: Host, options: SshOptions = SshOptions()) -> None:
        self.host = host
        self.options = options
        self.connection = self._connection()

    def _connection(self) -> Connection:
        timeout = self.options.connect_timeout
        # The TCP connect gets connect_timeout; the SSH handshake and the login at least
        # 10 s, so a loaded host is not taken for a dead one (a frozen sshd still fails).
        handshake = max(timeout, HANDSHAKE_TIMEOUT)
        own = self.options.use_ssh_config
        # An explicit, empty SSHConfig: fabric then reads no ssh_config file at all.
        config = Config(overrides={"load_ssh_configs": own}, **({} if own else {"ssh_config": paramiko.SSHConfig()}))
        connect_kwargs = {"look_for_keys": own, "allow_agent": own, "banner_timeout": handshake,
                          "auth_timeout": handshake, "channel_timeout": handshake}
        if self.host.key is not None:
            connect_kwargs["key_filename"] = str(self.host.key)
        connection = Connection(self.host.address, user=self.host.user, port=self.host.port, config=config,
                                connect_timeout=timeout, connect_kwargs=connect_kwargs)
        if self.options.known_hosts is not None:
            connection.client.load_host_keys(str(self.options.known_hosts))
            connection.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        return connection

    def open(self) -> None:
        try:
            self.connection.open()
        except Exception as error:  # mapped to a kdlib error naming the host
            raise map_error(self.host, "(connect)", error, self.options.connect_timeout) from None

    def close(self) -> None:
        self.connection.close()

    def _refuse_if_interrupted(self, command: str) -> None:
        """Raise when this thread works for a :meth:`Hosts.each` call that was interrupted:
        nothing new may begin on a host once its clean-up may have begun."""
        cancelled = getattr(_each, "cancelled", None)
        if cancelled is not None and cancelled.is_set():
            raise RemoteError(self.host.name, command, INTERRUPTED)

    def run(self, command: str, *, timeout: float | None = None, check: bool = True) -> CommandResult:
        """Run ``command`` (a shell string) and return its result; raise on failure when ``check``."""
        self._refuse_if_interrupted(command)
        return self._run(command, timeout=timeout, check=check)

    def _run(self, command: str, *, timeout: float | None = None, check: bool = True) -> CommandResult:
        timeout = timeout or self.options.command_timeout
        started = time.monotonic()
        was_open = self.connection.is_connected
        try:
            raw = self.connection.run(command, hide=True, warn=True, in_stream=False, timeout=timeout)
        except (paramiko.SSHException, EOFError, OSError) as error:
            if not (was_open and not self.connection.is_connected):
                raise map_error(self.host, command, error, self.options.connect_timeout) from None
            # The open connection had died (e.g. sshd restarted): connect once more, so the
            # error, if any, says why the host cannot be reached now.
            self.connection.close()
            try:
                raw = self.connection.run(command, hide=True, warn=True, in_stream=False, timeout=timeout)
            except Exception as again:
                raise map_error(self.host, command, again, self.options.connect_timeout) from None
        except Exception as error:
            raise map_error(self.host, command, error, self.options.connect_timeout) from None
        return self._result(command, raw, time.monotonic() - started, check, timeout)

    def _result(self, command: str, raw, seconds: float, check: bool, timeout: float) -> CommandResult:
        result = CommandResult(self.host.name, command, raw.exited, raw.stdout, raw.stderr, seconds)
        if raw.exited == -1 and seconds >= timeout:
            # invoke's timer closed the channel, but its check of the timer can run before
            # the timer's thread has ended, so no CommandTimedOut was raised: still ours.
            raise RemoteError(self.host.name, command, f"no exit after the {timeout} s command timeout",
                              result.tail())
        if raw.exited == -1:  # no exit status: the session or the connection died under it
            raise HostUnreachable(self.host.name, command, "the connection was lost before the command ended",
                                  result.tail())
        if check and not result.ok:
            raise RemoteError(self.host.name, command, f"exit code {result.exit_code}", result.tail())
        return result

    def put(self, local: Path | str, remote: str, *, mode: int = 0o755, addressed: bool = False) -> PutResult:
        """Ship ``local`` to ``remote`` unless a file with the same SHA-256 is already there.

        The file lands under a temporary name and is renamed into place, so a running
        binary is never overwritten and a broken transfer leaves no half file. With
        ``addressed`` the remote path names the content (``bin/<sha256>/...``): a file of
        the same size there is complete and the same, and is not hashed again.
        """
        local = Path(local)
        self._refuse_if_interrupted(f"put {local} {remote}")  # once begun, a transfer ends (no half file)
        started = time.monotonic()
        digest, size = sha256_file(local), local.stat().st_size
        quoted = shlex.quote(remote)
        if addressed:
            there_size = self._run(f"stat -c %s {quoted} 2>/dev/null", check=False).stdout.strip()
            there = digest if there_size == str(size) else ""
        else:
            there = self._run(f"sha256sum {quoted} 2>/dev/null | cut -d' ' -f1", check=False).stdout.strip()
        if there == digest:
            return PutResult(self.host.name, local, remote, digest, size, True, time.monotonic() - started)
        part = f"{remote}.part-{self.host.name}"
        self._run(f"mkdir -p {shlex.quote(str(Path(remote).parent))}")
        try:
            sftp = self.connection.sftp()
            sftp.get_channel().settimeout(self.options.command_timeout)
            self.connection.put(str(local), part, preserve_mode=False)
        except Exception as error:
            raise map_error(self.host, f"put {local} {part}", error, self.options.connect_timeout) from None
        self._run(f"chmod {mode:o} {shlex.quote(part)} && mv -f {shlex.quote(part)} {quoted}")
        return PutResult(self.host.name, local, remote, digest, size, False, time.monotonic() - started)

    def put_tree(self, local_dir: Path | str, remote_dir: str) -> PutResult:
        """Ship the files under ``local_dir`` into ``remote_dir`` as one tar stream
        (one transfer instead of three round trips per small file)."""
        local_dir = Path(local_dir)
        self._refuse_if_interrupted(f"put {local_dir}/ {remote_dir}")  # once begun: unpacked, archive removed
        started = time.monotonic()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            tar.add(local_dir, arcname=".")
        data = buffer.getvalue()
        archive = f"{remote_dir}.tar.gz.part-{self.host.name}"
        q = shlex.quote
        self._run(f"mkdir -p {q(str(Path(remote_dir).parent))}")
        try:
            sftp = self.connection.sftp()
            sftp.get_channel().settimeout(self.options.command_timeout)
            self.connection.put(io.BytesIO(data), archive)
        except Exception as error:
            raise map_error(self.host, f"put {local_dir}/ {archive}", error, self.options.connect_timeout) from None
        self._run(f"mkdir -p {q(remote_dir)} && tar -xzf {q(archive)} -C {q(remote_dir)} --no-same-owner; "
                 f"status=$?; rm -f {q(archive)}; exit $status")
        return PutResult(self.host.name, local_dir, remote_dir, hashlib.sha256(data).hexdigest(), len(data),
                         False, time.monotonic() - started)

    def __enter__(self) -> "Remote":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Remote {self.host.name} {self.host.target}>"


class Hosts:
    """Connections to several hosts; a context manager that closes them all.

    ``run`` goes through fabric's ``ThreadingGroup``; ``each`` runs any per-host
    function in parallel. Both return a :class:`GroupResult` keyed by host name.
    """

    def __init__(self, hosts: Iterable[Host], options: SshOptions = SshOptions()) -> None:
        self.options = options
        self.remotes = {host.name: Remote(host, options) for host in hosts}

    @classmethod
    def of(cls, inventory: Inventory) -> "Hosts":
        return cls(inventory.hosts, SshOptions.of(inventory))

    def __getitem__(self, name: str) -> Remote:
        return self.remotes[name]

    def run(self, command: str, *, hosts: Iterable[str] | None = None, timeout: float | None = None,
            check: bool = True) -> GroupResult:
        """Run ``command`` on the named hosts (all by default) at once.

        Never raises for a host: with ``check`` a non-zero exit is that host's
        :class:`RemoteError`, without it a :class:`CommandResult` like any other.
        """
        remotes = [self.remotes[n] for n in (self.remotes if hosts is None else hosts)]  # [] is none, not all
        timeout = timeout or self.options.command_timeout
        by_connection = {id(r.connection): r for r in remotes}
        group = ThreadingGroup.from_connections([r.connection for r in remotes])
        started = time.monotonic()
        try:
            raw = group.run(command, hide=True, warn=True, in_stream=False, timeout=timeout)
        except GroupException as error:
            raw = error.result
        seconds = time.monotonic() - started
        results = GroupResult()
        for connection, value in raw.items():
            remote = by_connection[id(connection)]
            if isinstance(value, BaseException):
                results[remote.host.name] = map_error(remote.host, command, value, self.options.connect_timeout)
                continue
            try:
                results[remote.host.name] = remote._result(command, value, seconds, check, timeout)
            except RemoteError as error:
                results[remote.host.name] = error
        return results

    def each(self, function: Callable[[Remote], T], *, hosts: Iterable[str] | None = None) -> GroupResult:
        """``function(remote)`` on the named hosts in parallel; errors become values.

        Returns or raises only once every call has ended. Interrupted (Ctrl-C, SIGTERM),
        it refuses the calls' further commands (:data:`INTERRUPTED`), waits for those in
        flight (each ends within its timeout; signals meanwhile wait) and re-raises: a call
        left running would go on starting processes and writing files on its host while
        the clean-up that follows removes them.
        """
        remotes = [self.remotes[n] for n in (self.remotes if hosts is None else hosts)]  # [] is none, not all
        cancelled = threading.Event()

        def call(remote: Remote):
            _each.cancelled = cancelled
            try:
                return function(remote)
            except RemoteError as error:
                return error
            except Exception as error:
                return map_error(remote.host, getattr(function, "__name__", "(call)"), error)
            finally:
                _each.cancelled = None

        pool = ThreadPoolExecutor(max_workers=max(1, min(16, len(remotes))))
        try:
            futures = [pool.submit(call, remote) for remote in remotes]
            values = [future.result() for future in futures]
        except BaseException:
            with signals_deferred():
                cancelled.set()
                pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
        return GroupResult(zip((r.host.name for r in remotes), values))

    def close(self) -> None:
        for remote in self.remotes.values():
            remote.close()

    def __enter__(self) -> "Hosts":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
