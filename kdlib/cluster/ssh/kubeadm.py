"""kubeadm run on a host, for the SSH backend's ``kubeadm`` mode (its configuration: :mod:`.kubeadm_config`).

kubeadm itself is ours (``tools/kube/kubeadm``, the control plane's pins), shipped to
each host content-addressed; it runs with a per-host ``bin`` directory first on PATH
that holds it and the kubelet (its preflight asks ``kubelet --version``).
``kubeadm config validate`` and ``kubeadm init --dry-run`` check a configuration on a
host; the dry run writes into a per-host directory (``KUBEADM_INIT_DRYRUN_DIR``), not
``/etc/kubernetes/tmp``. A failure is a :class:`RemoteError` naming the host, the
command and the tail of kubeadm's output.

On this machine's SSH test hosts (network namespaces) the dry run needs one preflight
check ignored by name (:data:`.kubeadm_config.TEST_HOST_PREFLIGHT_IGNORED`); a full init and join run
once the hosts are made ready as a package installation would (``tests/kubeadmhosts.py``
lists what that took and each error met on the way).
"""

from __future__ import annotations

import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ...errors import RemoteError
from .kubeadm_config import CONTAINERD_SOCKET, render, reset_configuration
from .remote import Remote, sha256_file


@dataclass(frozen=True)
class HostTools:
    """Where kubeadm runs on one host: its bin directory (first on PATH) and its work directory."""

    remote: Remote
    bin_dir: str
    work_dir: str

    @property
    def host(self) -> str:
        return self.remote.host.name

    def command(self, args: str, env: dict[str, str] | None = None) -> str:
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
        return f"env PATH={shlex.quote(self.bin_dir)}:\"$PATH\" {exports} kubeadm {args}".replace("  ", " ")

    def kubeadm(self, args: str, *, failed: str, env: dict[str, str] | None = None,
                timeout: float | None = None) -> str:
        """Run ``kubeadm ARGS``; a failure is a RemoteError whose reason is ``failed`` and
        the exit code, with kubeadm's output tail. Its PID is recorded in ``run/kubeadm.pid``
        (an interrupted owner leaves a remote kubeadm running: :func:`stop_kubeadm`)."""
        command = self.command(args, env)
        pid_file = shlex.quote(f"{self.work_dir}/run/kubeadm.pid")
        recorded = f"mkdir -p {shlex.quote(self.work_dir)}/run && echo $$ > {pid_file} && exec {command}"
        result = self.remote.run(f"sh -c {shlex.quote(recorded)}", timeout=timeout, check=False)
        if not result.ok:
            raise RemoteError(self.host, command, f"{failed} (exit {result.exit_code})", result.tail(20))
        return result.stdout + result.stderr


def install(remote: Remote, binaries: dict[str, Path], remote_dir: str, work_dir: str) -> HostTools:
    """Ship ``binaries`` (``kubeadm``, ``kubelet``, ...) content-addressed to
    ``<remote_dir>/bin/<sha256[:16]>/NAME`` (skipped when there) and link each into
    ``<work_dir>/bin``, the directory put first on PATH for kubeadm."""
    bin_dir = f"{work_dir}/bin"
    links = []
    for name, local in binaries.items():
        target = f"{remote_dir}/bin/{sha256_file(Path(local))[:16]}/{name}"
        remote.put(local, target)
        links.append(f"ln -sfn {shlex.quote(target)} {shlex.quote(bin_dir + '/' + name)}")
    remote.run(f"mkdir -p {shlex.quote(bin_dir)} && " + " && ".join(links))
    return HostTools(remote, bin_dir, work_dir)


def stop_kubeadm(remote: Remote, work_dir: str, timeout: float = 10.0) -> str:
    """Stop a kubeadm still running from ``work_dir`` (its owner was interrupted), by the
    recorded PID and only while that PID's command line is our kubeadm. Returns
    ``absent``, ``stale`` or ``stopped``."""
    q = shlex.quote
    tenths = max(1, int(timeout * 10))
    script = f"""pid=$(cat {q(work_dir)}/run/kubeadm.pid 2>/dev/null) || {{ echo absent; exit 0; }}
ours() {{ tr '\\0' ' ' < /proc/$pid/cmdline 2>/dev/null | grep -q '^kubeadm \\|/kubeadm '; }}
rm -f {q(work_dir)}/run/kubeadm.pid
ours || {{ echo stale; exit 0; }}
kill -TERM $pid; i=0
while [ $i -lt {tenths} ] && ours; do sleep 0.1; i=$((i+1)); done
ours && kill -KILL $pid
echo stopped
"""
    return remote.run(f"sh -c {q(script)}", timeout=timeout + 30).stdout.strip()


def put_text(remote: Remote, text: str, path: str, mode: int = 0o600) -> None:
    """Write ``text`` to ``path`` on the host (atomically, through :meth:`Remote.put`)."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        file.write(text)
        file.flush()
        remote.put(file.name, path, mode=mode)


def validate(tools: HostTools, config: str) -> None:
    """``kubeadm config validate`` on the host: the configuration's schema and values."""
    tools.kubeadm(f"config validate --config {shlex.quote(config)}",
                  failed="kubeadm config validate refused the configuration")


def dry_run(tools: HostTools, config: str, ignored: tuple[str, ...] = ()) -> str:
    """``kubeadm init --dry-run`` on the host: preflight (minus the checks ``ignored`` by
    name), certificates, kubeconfigs, manifests, written to ``<work_dir>/dryrun``, not to
    /etc/kubernetes. Returns kubeadm's output; the manifests stay in that directory."""
    out = f"{tools.work_dir}/dryrun"
    tools.remote.run(f"rm -rf {shlex.quote(out)} && mkdir -p {shlex.quote(out)}")
    return tools.kubeadm(f"init --dry-run --config {shlex.quote(config)}{_ignoring(ignored)}",
                         failed="kubeadm init --dry-run failed", env={"KUBEADM_INIT_DRYRUN_DIR": out})


def _ignoring(ignored: tuple[str, ...]) -> str:
    return f" --ignore-preflight-errors={','.join(ignored)}" if ignored else ""


def init(tools: HostTools, config: str, timeout: float = 600.0, ignored: tuple[str, ...] = ()) -> str:
    """``kubeadm init``: the kubelet must be running (or restarting) already; kubeadm waits for it."""
    return tools.kubeadm(f"init --config {shlex.quote(config)} --skip-token-print{_ignoring(ignored)}",
                         failed="kubeadm init failed", timeout=timeout)


def join(tools: HostTools, config: str, timeout: float = 600.0, ignored: tuple[str, ...] = ()) -> str:
    return tools.kubeadm(f"join --config {shlex.quote(config)}{_ignoring(ignored)}", failed="kubeadm join failed",
                         timeout=timeout)


def reset(tools: HostTools, cri_socket: str = CONTAINERD_SOCKET, *, dry_run: bool = False) -> str:
    """``kubeadm reset``, without questions: removes what init/join made on the host
    (manifests, /var/lib/kubelet, /var/lib/etcd, the containers). Not CNI configuration or
    iptables rules: kubeadm leaves those to the caller."""
    config = f"{tools.work_dir}/kubeadm-reset.yaml"
    put_text(tools.remote, render(reset_configuration(cri_socket, dry_run=dry_run)), config)
    return tools.kubeadm(f"reset --config {shlex.quote(config)}", failed="kubeadm reset failed")
