"""The kubelet of a kubeadm node, run the way kubeadm expects on the host.

kubeadm does not start the kubelet: it writes ``/var/lib/kubelet/config.yaml`` and
``kubeadm-flags.env`` and waits for a kubelet that its packages' systemd unit keeps
restarting (``Restart=always``, the flags of ``10-kubeadm.conf``) until those files exist.
kdlib does the same without the packages, in one of two ways, chosen per host:

* **systemd is PID 1** (a user's node, ``/run/systemd/system`` exists, as ``sd_booted()``
  tells): a transient unit ``kdlib-<cluster>-kubelet.service`` (``systemd-run``:
  ``Restart=always``, no start limit, ``--collect`` so it leaves nothing loaded), its
  command a script in the host's directory, its output appended to the host's kubelet log.
  Pods, containers and the kubelet itself then sit in systemd's tree as on a packaged node;
  ``systemctl stop`` stops the kubelet with its whole control group.
* **no systemd** (this machine's namespace test hosts): kdlib's detached process
  (:mod:`.detached`), a one-line restart loop, stopped by PID.

Either way the unit or the loop is named after the cluster and found again from the
host's files alone, so ``down`` after a killed owner stops it.
"""

from __future__ import annotations

import shlex

from . import detached
from .remote import Remote

NAME = "kubelet"
# kubeadm's drop-in's command (10-kubeadm.conf): the kubelet waits, exiting, until kubeadm wrote its files.
_COMMAND = ("{kubelet} --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf "
            "--kubeconfig=/etc/kubernetes/kubelet.conf --config=/var/lib/kubelet/config.yaml $KUBELET_KUBEADM_ARGS")
_READY = "[ -f /var/lib/kubelet/config.yaml ] && [ -f /var/lib/kubelet/kubeadm-flags.env ]"
# Without systemd: one line (detached processes are). On SIGTERM the loop kills its kubelet and
# waits for it: a kubelet that outlived its stop (measured: SIGTERM alone left it running)
# would restart the static pods kubeadm reset is removing.
LOOP = ("trap 'kill -KILL $k 2>/dev/null; wait $k 2>/dev/null; exit 0' TERM INT; "
        f"while :; do if {_READY}; then . /var/lib/kubelet/kubeadm-flags.env; {_COMMAND} & "
        "k=$!; wait $k; fi; sleep 1; done")
# With systemd: the unit restarts it (every second, as kubeadm's packages' unit: RestartSec=10 there).
SCRIPT = f"""{_READY} || exit 1
. /var/lib/kubelet/kubeadm-flags.env
exec {_COMMAND}
"""


def unit(cluster: str) -> str:
    return f"kdlib-{cluster}-kubelet.service"


def has_systemd(remote: Remote) -> bool:
    return remote.run("test -d /run/systemd/system", check=False).ok


def start(remote: Remote, cluster: str, kubelet: str, directory: str) -> None:
    """Start the kubelet of ``cluster`` on ``remote`` (a unit where systemd runs, else a
    detached loop); ``kubelet``: its path on the host; ``directory``: the host's."""
    q = shlex.quote
    if not has_systemd(remote):
        detached.start(remote, NAME, ("sh", "-c", LOOP.format(kubelet=q(kubelet))), directory)
        return
    script = f"{directory}/run/kubelet.sh"
    _, log_file = detached.paths(directory, NAME)
    remote.run(f"mkdir -p {q(directory)}/run {q(directory)}/logs && cat > {q(script)} <<'EOF'\n"
               f"{SCRIPT.format(kubelet=q(kubelet))}EOF\n")
    properties = ("Restart=always", "RestartSec=1", "StartLimitIntervalSec=0", "KillMode=control-group",
                  f"StandardOutput=append:{log_file}", f"StandardError=append:{log_file}")
    remote.run(f"systemd-run --quiet --collect --unit={unit(cluster)} "
               f"--description={q(f'kdlib: the kubelet of kubeadm, cluster {cluster}')} "
               + " ".join(f"--property={q(p)}" for p in properties) + f" /bin/sh {q(script)}", timeout=60)


def stop(remote: Remote, cluster: str, directory: str) -> str:
    """Stop the kubelet of ``cluster`` however it runs: ``stopped``, ``stale`` or ``absent``
    (the detached loop's answers; a unit counts as ``stopped`` when it was loaded)."""
    name = unit(cluster)
    found = remote.run(f"[ -d /run/systemd/system ] && systemctl is-active --quiet {name} && echo active; "
                       f"[ -d /run/systemd/system ] && systemctl stop {name} 2>/dev/null; "
                       f"[ -d /run/systemd/system ] && systemctl reset-failed {name} 2>/dev/null; exit 0",
                       timeout=120).stdout.strip()
    loop = detached.stop(remote, NAME, None, directory)
    return "stopped" if found == "active" else loop


def status(remote: Remote, cluster: str, directory: str) -> int | None:
    """The kubelet's PID (the unit's main process, or the loop's), None when not running."""
    pid = remote.run(f"[ -d /run/systemd/system ] && systemctl is-active --quiet {unit(cluster)} && "
                     f"systemctl show -p MainPID --value {unit(cluster)}", check=False).stdout.strip()
    if pid.isdigit() and int(pid) > 0:
        return int(pid)
    return detached.status(remote, NAME, None, directory)
