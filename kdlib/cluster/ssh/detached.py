"""Detached processes on an SSH host, tracked by pid files; stopped by PID only.

A process is started as ONE backgrounded simple command with all three standard
streams redirected (``nohup setsid ARGV >LOG 2>&1 </dev/null &``): backgrounding a
compound command keeps the SSH channel open and makes ``$!`` a subshell's PID (see
``ssh-test-hosts.md``). ``setsid`` makes it the leader of its own session, so stopping
signals its whole process group; it survives the SSH session (parent PID 1).

Each process has ``<dir>/run/<name>.pid`` and ``<dir>/logs/<name>.log`` in a per-host
directory (hosts may share a filesystem). A PID counts as ours only while
``/proc/PID/cmdline`` is exactly the command line we started: PIDs are reused, and a
stale pid file (e.g. after SIGKILL) must never lead to signalling a stranger.

Before it runs its program a process passes through the launch's wrappers (the forked
start shell, ``nohup``, ``setsid``, each ``nsenter``/``unshare ... --``), each exec'd in
the same PID: a stop meeting it there must still stop it, so the hashes of those command
lines are recorded beside the final one (:func:`stages`) and count as ours for a stop. A
start that cannot see its program running kills what it launched before it reports.

Starts and the clean-up meet on the host, not only in the caller: a start holds
``<dir>/spawn.lock`` (an flock) from its checks until its process runs or is killed, and
refuses when ``<dir>`` is gone or :func:`close` marked it ``<dir>/closed``; :func:`close`
takes the same lock. So a start whose caller is gone (its SSH session outlives a killed
owner) cannot launch anything after a clean-up began. ``<dir>`` is made by the caller
before the first start (shipping files there) and removed last by the clean-up.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass

from ...errors import RemoteError
from .remote import Remote

# Shell functions shared by the scripts below; $PIDFILE and $HASH are set before them.
_FUNCTIONS = r"""
hash_of() { tr '\0' '\n' < /proc/$1/cmdline 2>/dev/null | sha256sum | cut -d' ' -f1; }
ours() { [ -n "$pid" ] && [ "$(hash_of $pid)" = "$HASH" ]; }
launched() { [ -n "$pid" ] && h=$(hash_of $pid) && { [ "$h" = "$HASH" ] || echo "$STAGES" | grep -qx "$h"; }; }
"""  # launched: ours, or still in one of the launch's stages ($STAGES, one hash a line)


@dataclass(frozen=True)
class Detached:
    """A process started on a host: where its pid and log live."""

    host: str
    name: str
    pid: int
    argv: tuple[str, ...]
    pid_file: str
    log_file: str


def argv_hash(argv: tuple[str, ...]) -> str:
    """SHA-256 of the command line as ``tr '\\0' '\\n' < /proc/PID/cmdline`` prints it."""
    return hashlib.sha256(("\n".join(argv) + "\n").encode()).hexdigest()


def stages(argv: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The command lines PID shows on its way to ``argv``'s program: ``nohup setsid ARGV``,
    ``setsid ARGV``, ``ARGV``, and what follows each ``--`` of a wrapper (``nsenter ... --``,
    ``unshare ... --``)."""
    shown = [("nohup", "setsid", *argv), ("setsid", *argv)]
    rest = tuple(argv)
    while rest:
        shown.append(rest)
        rest = rest[rest.index("--") + 1:] if "--" in rest else ()
    return shown


REFUSED = 6  # the start's exit code when the directory is gone or closed

# Shell taking the directory's spawn lock on fd 9 (as $DIR); every starter closes fd 9
# for its child, so the lock is dropped when the script ends and never outlives it.
_SPAWN_LOCK = r"""
cd "$DIR" 2>/dev/null && exec 9>>spawn.lock && flock -w {seconds} 9 ||
  {{ echo "refused: $DIR is gone or busy"; exit {refused}; }}
[ -d "$DIR" ] || {{ echo "refused: $DIR was removed"; exit {refused}; }}
"""


def paths(directory: str, name: str) -> tuple[str, str]:
    return f"{directory}/run/{name}.pid", f"{directory}/logs/{name}.log"


def log_tail(remote: Remote, directory: str, name: str, lines: int = 25) -> str:
    """The last ``lines`` of a process's log (what an error about it shows), or why it cannot be read."""
    _, log_file = paths(directory, name)
    try:
        return remote.run(f"tail -n {lines} {shlex.quote(log_file)}", check=False, timeout=10).stdout
    except RemoteError as error:
        return f"(log unavailable: {error.reason})"


def start(remote: Remote, name: str, argv: tuple[str, ...] | list[str], directory: str, *,
          cwd: str | None = None, env: dict[str, str] | None = None, wait: float = 5.0,
          shows: tuple[str, ...] | None = None) -> Detached:
    """Start ``argv`` detached on ``remote``; its files go under ``directory``.

    Refuses when the pid file names a live process of ours, or when ``directory`` does not
    exist or was closed (:func:`close`: its clean-up began). Returns once
    ``/proc/PID/cmdline`` shows ``argv`` (the process exec'd), or raises with the log tail.
    ``shows`` is the command line to expect instead when ``argv`` execs another program in
    the same process (``nsenter ... -- kubelet ...`` shows as ``kubelet ...``).
    """
    argv = tuple(argv)
    shows = tuple(shows) if shows else argv
    if not argv or any("\n" in a or "\0" in a for a in (*argv, *shows)):
        raise ValueError(f"argv must be non-empty and free of newlines and NULs: {argv!r}")
    pid_file, log_file = paths(directory, name)
    q = shlex.quote
    command = " ".join(q(a) for a in argv)
    exports = "".join(f"export {k}={q(v)}; " for k, v in (env or {}).items())
    tenths = max(1, int(wait * 10))
    stage_hashes = " ".join(argv_hash(stage) for stage in stages(argv))
    script = f"""PIDFILE={q(pid_file)}; HASH={argv_hash(shows)}; DIR={q(directory)}
{_FUNCTIONS}
{_SPAWN_LOCK.format(seconds=int(wait) + 30, refused=REFUSED)}
[ -e closed ] && {{ echo "refused: its clean-up began"; exit {REFUSED}; }}
pid=$(cat "$PIDFILE" 2>/dev/null)
if ours; then echo "running $pid"; exit 3; fi
mkdir -p run logs || exit 1
cd {q(cwd or directory)} || exit 1
# The final command line first, then the stages (the forked shell shows as this one).
STAGES=$(printf '%s\n' {stage_hashes} "$(hash_of $$)")
printf '%s\n' $HASH "$STAGES" > "${{PIDFILE%.pid}}.cmdline-sha256"
{exports}nohup setsid {command} >>{q(log_file)} 2>&1 </dev/null 9>&- &
pid=$!
echo $pid > "$PIDFILE.tmp" && mv -f "$PIDFILE.tmp" "$PIDFILE"
i=0
# Started: running as argv, and still so 0.2 s later (a process that fails at once,
# e.g. on a bad flag, is then reported with its log instead of counted as started).
while [ $i -lt {tenths} ]; do ours && {{ sleep 0.2; ours && {{ echo "started $pid"; exit 0; }}; break; }}; [ -d /proc/$pid ] || break; sleep 0.1; i=$((i+1)); done
# Not seen running: what was launched must not go on starting after we report failure
# (a clean-up would miss it). Still ours (our unreaped child, by its command line): killed.
if launched; then kill -KILL -- -$pid 2>/dev/null; kill -KILL $pid 2>/dev/null; wait $pid 2>/dev/null; fi
echo "failed $pid"; tail -n 15 {q(log_file)} 2>/dev/null; exit 4
"""
    result = remote.run(f"sh -c {q(script)}", timeout=wait + remote.options.command_timeout, check=False)
    first = (result.stdout.splitlines() or [""])[0].split()
    if result.exit_code == 3:
        raise RemoteError(remote.host.name, command, f"{name} is already running as PID {first[-1]}")
    if result.exit_code == REFUSED:
        raise RemoteError(remote.host.name, command, f"start of {name} {result.stdout.strip()}")
    if result.exit_code != 0 or not first or first[0] != "started":
        reason = f"{name} exited at once" if first[:1] == ["failed"] else f"start of {name} failed"
        raise RemoteError(remote.host.name, command, reason, "\n".join(result.stdout.splitlines()[1:]) or result.tail())
    return Detached(remote.host.name, name, int(first[1]), shows, pid_file, log_file)


def close(remote: Remote, directory: str, *, timeout: float = 60.0) -> None:
    """No process starts in ``directory`` from now on: wait for a start in progress there
    (it holds the spawn lock until its process runs or is killed), then mark the
    directory closed. The clean-up's first step; nothing to do when it does not exist."""
    script = f"""DIR={shlex.quote(directory)}
[ -d "$DIR" ] || exit 0
{_SPAWN_LOCK.format(seconds=int(timeout), refused=REFUSED)}
touch closed
"""
    result = remote.run(f"sh -c {shlex.quote(script)}", timeout=timeout + remote.options.command_timeout,
                        check=False)
    if not result.ok:
        raise RemoteError(remote.host.name, f"close {directory}", "a start there did not end", result.tail())


def _hash_line(pid_file: str, argv: tuple[str, ...] | list[str] | None) -> str:
    """Shell setting $HASH: from ``argv``, or the hash recorded at start (``down`` from files
    alone); and $STAGES, the launch's stages recorded at start."""
    recorded = shlex.quote(pid_file[: -len(".pid")] + ".cmdline-sha256")
    stages_line = f"STAGES=$(tail -n +2 {recorded} 2>/dev/null)"
    if argv is not None:
        return f"HASH={argv_hash(tuple(argv))}; {stages_line}"
    return f'HASH=$(head -n 1 {recorded} 2>/dev/null); [ -n "$HASH" ] || HASH=none; {stages_line}'


def stop(remote: Remote, name: str, argv: tuple[str, ...] | list[str] | None, directory: str, *,
         timeout: float = 10.0) -> str:
    """Stop ``name`` on ``remote``: SIGTERM to its process group, SIGKILL after ``timeout``.

    Only when ``/proc/PID/cmdline`` is ``argv`` (``None``: the command line recorded
    at start) or one of the launch's stages before it (:func:`stages`: a process
    stopped while it still starts). Returns ``absent`` (no pid file),
    ``stale`` (the PID is gone or is not ours: nothing signalled), ``stopped`` or ``killed``.
    """
    pid_file, _ = paths(directory, name)
    q = shlex.quote
    tenths = max(1, int(timeout * 10))
    script = f"""PIDFILE={q(pid_file)}; {_hash_line(pid_file, argv)}
{_FUNCTIONS}
pid=$(cat "$PIDFILE" 2>/dev/null) || {{ echo absent; exit 0; }}
if ! launched; then rm -f "$PIDFILE"; echo stale; exit 0; fi
kill -TERM -- -$pid 2>/dev/null || kill -TERM $pid
i=0
while [ $i -lt {tenths} ]; do launched || {{ rm -f "$PIDFILE"; echo stopped; exit 0; }}; sleep 0.1; i=$((i+1)); done
kill -KILL -- -$pid 2>/dev/null || kill -KILL $pid
i=0
while [ $i -lt 50 ] && launched; do sleep 0.1; i=$((i+1)); done
launched && {{ echo alive; exit 5; }}
rm -f "$PIDFILE"; echo killed
"""
    result = remote.run(f"sh -c {q(script)}", timeout=timeout + 10 + remote.options.command_timeout, check=False)
    outcome = result.stdout.strip().splitlines()[-1:] or [""]
    if result.exit_code != 0 or outcome[0] not in ("absent", "stale", "stopped", "killed"):
        raise RemoteError(remote.host.name, f"stop {name}", "could not stop it", result.tail())
    return outcome[0]


def status(remote: Remote, name: str, argv: tuple[str, ...] | list[str] | None, directory: str) -> int | None:
    """The PID of ``name`` when it runs with ``argv`` (None: as recorded at start), else None."""
    pid_file, _ = paths(directory, name)
    script = f"""PIDFILE={shlex.quote(pid_file)}; {_hash_line(pid_file, argv)}
{_FUNCTIONS}
pid=$(cat "$PIDFILE" 2>/dev/null) && ours && echo $pid
exit 0
"""
    out = remote.run(f"sh -c {shlex.quote(script)}").stdout.strip()
    return int(out) if out.isdigit() else None


def statuses(remote: Remote, directory: str) -> dict[str, int | None]:
    """Every process with a pid file under ``directory``: its PID when it still runs with
    the command line recorded at start, else None. One round trip for all of them."""
    script = f"""cd {shlex.quote(directory)}/run 2>/dev/null || exit 0
{_FUNCTIONS}
for f in *.pid; do
  [ -f "$f" ] || continue
  name=${{f%.pid}}; pid=$(cat "$f" 2>/dev/null); HASH=$(head -n 1 "$name.cmdline-sha256" 2>/dev/null)
  if [ -n "$HASH" ] && ours; then echo "$name $pid"; else echo "$name -"; fi
done
"""
    found: dict[str, int | None] = {}
    for line in remote.run(f"sh -c {shlex.quote(script)}").stdout.splitlines():
        name, pid = line.split()
        found[name] = int(pid) if pid.isdigit() else None
    return found
