"""How fabric/paramiko failures become kdlib errors naming the host (no network needed)."""

from __future__ import annotations

import socket
import subprocess

import paramiko
import pytest
from invoke.exceptions import CommandTimedOut
from invoke.runners import Result

from kdlib.cluster.ssh.detached import argv_hash
from kdlib.cluster.ssh.inventory import Host
from kdlib.cluster.ssh.remote import CommandResult, GroupResult, map_error
from kdlib.errors import ClusterError, HostUnreachable, RemoteError

HOST = Host("node1", "10.10.1.2", key=None)


@pytest.mark.parametrize("error, kind, reason", [
    (paramiko.ssh_exception.NoValidConnectionsError({("10.10.1.2", 22): ConnectionRefusedError(111, "Connection refused")}),
     HostUnreachable, "cannot connect to root@10.10.1.2:22: Connection refused"),
    (TimeoutError("timed out"), HostUnreachable, "no answer from root@10.10.1.2:22 within 3 s"),
    (socket.timeout("timed out"), HostUnreachable, "no answer from root@10.10.1.2:22 within 3 s"),
    (paramiko.AuthenticationException("Authentication failed."), HostUnreachable,
     "authentication failed at root@10.10.1.2:22 with key None: Authentication failed."),
    (paramiko.SSHException("Error reading SSH protocol banner"), HostUnreachable,
     "SSH failure with root@10.10.1.2:22: Error reading SSH protocol banner"),
    (paramiko.SSHException(), HostUnreachable, "SSH failure with root@10.10.1.2:22: the connection was lost"),
    (CommandTimedOut(Result(stdout="partial\n", command="sleep 9", exited=-1), timeout=2), RemoteError,
     "no exit after the 2 s command timeout"),
])
def test_failures_map_to_errors_naming_the_host(error, kind, reason):
    mapped = map_error(HOST, "uptime", error, timeout=3)
    assert type(mapped) is kind and isinstance(mapped, ClusterError)
    assert mapped.host == "node1" and mapped.reason == reason
    assert str(mapped).splitlines()[0] == f"node1: {reason}: uptime"


def test_group_result_check_names_every_failed_host():
    ok = CommandResult("a", "true", 0, "", "", 0.1)
    results = GroupResult(a=ok, b=HostUnreachable("b", "true", "cannot connect"),
                          c=HostUnreachable("c", "true", "no answer"))
    assert set(results.failed) == {"b", "c"} and results.succeeded == {"a": ok}
    with pytest.raises(HostUnreachable, match=r"^b, c: failed on 2 hosts \(b: cannot connect; c: no answer\): true"):
        results.check()
    assert GroupResult(a=ok).check() == {"a": ok}


def test_the_output_tail_is_the_last_lines():
    error = RemoteError("h", "cmd", "exit code 1", "\n".join(str(i) for i in range(100)))
    lines = str(error).splitlines()
    assert lines[1] == "--- last lines of its output on h ---" and lines[2:] == [str(i) for i in range(85, 100)]


def test_the_cmdline_hash_matches_what_the_remote_shell_computes(tmp_path):
    argv = ("/usr/bin/kwok", "--config=/a b/c.yaml", "--x=")
    cmdline = tmp_path / "cmdline"
    cmdline.write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    shell = subprocess.run(["sh", "-c", f"tr '\\0' '\\n' < {cmdline} | sha256sum | cut -d' ' -f1"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert shell == argv_hash(argv)
