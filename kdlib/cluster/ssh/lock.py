"""One run at a time per cluster: an flock held on the control-plane host.

The lock is held by ``flock -n LOCKFILE ... cat`` in an SSH session of its own, kept
open while the run lasts: ``cat`` reads the session's stdin, so when the holder
releases the lock, exits or dies (its TCP connection closes), ``cat`` sees end of file,
exits, and the kernel drops the flock. No stale lock survives a crashed run, and no
lock file has to be cleaned. Who holds it is written beside it for the error message.
"""

from __future__ import annotations

import getpass
import os
import shlex
import socket

import paramiko

from ...errors import RemoteError, RemoteLockBusy
from ...wait import wait_until
from .remote import HANDSHAKE_TIMEOUT, Remote, map_error

BUSY = 75  # flock -E: the lock is held elsewhere


class ClusterLock:
    """The cluster's lock on ``remote`` (the control-plane host); a context manager."""

    def __init__(self, remote: Remote, directory: str, *, owner: str | None = None) -> None:
        self.remote = remote
        self.path = f"{directory}/lock"
        self.owner = owner or f"{getpass.getuser()}@{socket.gethostname()} pid {os.getpid()}"
        self._channel: paramiko.Channel | None = None

    @property
    def held(self) -> bool:
        return self._channel is not None and not self._channel.exit_status_ready()

    def acquire(self) -> None:
        """Take the lock or raise :class:`RemoteLockBusy` naming its holder, at once."""
        q = shlex.quote
        directory = os.path.dirname(self.path)
        script = (f"mkdir -p {q(directory)} && exec flock -n -E {BUSY} {q(self.path)} sh -c "
                  + q(f"echo {q(self.owner)} > {q(self.path)}.owner; echo locked; exec cat >/dev/null"))
        command = f"sh -c {q(script)}"
        self.remote.open()
        timeout = max(self.remote.options.connect_timeout, HANDSHAKE_TIMEOUT)
        try:
            channel = self.remote.connection.client.get_transport().open_session(timeout=timeout)
            channel.settimeout(timeout)
            channel.exec_command(command)
            first = channel.makefile("r").readline().strip()
        except Exception as error:
            raise map_error(self.remote.host, command, error, timeout) from None
        if first == "locked":
            channel.settimeout(None)
            self._channel = channel
            return
        status = channel.recv_exit_status() if channel.exit_status_ready() or not first else -1
        channel.close()
        if status == BUSY:
            holder = self.remote.run(f"cat {q(self.path)}.owner 2>/dev/null", check=False).stdout.strip()
            raise RemoteLockBusy(self.remote.host.name, f"flock {self.path}",
                                 f"another run holds the cluster lock ({holder or 'holder unknown'})")
        raise RemoteError(self.remote.host.name, command, f"could not take the cluster lock (exit {status})", first)

    def release(self) -> None:
        """Close the lock's session: the remote ``cat`` ends and the flock is dropped."""
        channel, self._channel = self._channel, None
        if channel is None:
            return
        try:
            channel.shutdown_write()
            wait_until(channel.exit_status_ready, timeout=5, interval=0.02)
        except (OSError, EOFError, paramiko.SSHException, TimeoutError):
            pass  # the connection is gone, and with it the lock
        finally:
            channel.close()

    def __enter__(self) -> "ClusterLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
