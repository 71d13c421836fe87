"""No credential is ever written outside the cluster's state directory (issue 19: D7).

The Kubernetes client copied a kubeconfig's embedded CA, admin certificate and admin key
to 0600 files in /tmp, removed only at a normal exit: a SIGKILL left them. Here a child
process builds the API client and is killed with SIGKILL; then /tmp is searched for them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from kdlib.cluster.base import CREDENTIALS_DIR, ClusterInfo
from kdlib.cluster.controlplane import pki

REPO = Path(__file__).resolve().parents[2]


def _kubeconfig(directory: Path) -> tuple[Path, pki.KeyPair, pki.KeyPair]:
    ca = pki.create_ca(directory)
    admin = pki.issue(ca, directory, "admin", "kubernetes-admin", organizations=("system:masters",))
    return pki.write_kubeconfig(directory / "admin.kubeconfig", "https://127.0.0.1:6443", ca, admin, "admin"), ca, admin


def _files_holding(content: bytes, where: Path) -> list[Path]:
    found = []
    for path in where.iterdir():
        try:
            if path.is_file() and not path.is_symlink() and path.stat().st_size == len(content) \
                    and path.read_bytes() == content:
                found.append(path)
        except OSError:
            continue
    return found


def test_the_client_files_live_beside_the_kubeconfig(tmp_path):
    kubeconfig, ca, admin = _kubeconfig(tmp_path)
    api = ClusterInfo("local", kubeconfig, (), False).api_client()
    api.close()
    folder = tmp_path / CREDENTIALS_DIR
    assert folder.stat().st_mode & 0o777 == 0o700
    for pair_file in (ca.cert, admin.cert, admin.key):
        [copy] = _files_holding(pair_file.read_bytes(), folder)
        assert copy.stat().st_mode & 0o777 == 0o600
    assert api.configuration.key_file.startswith(str(folder))


def test_a_sigkilled_owner_leaves_no_credential_in_tmp(tmp_path):
    kubeconfig, ca, admin = _kubeconfig(tmp_path)
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from kdlib.cluster.base import ClusterInfo
        api = ClusterInfo("local", Path({str(kubeconfig)!r}), (), False).api_client()
        print("ready", flush=True)
        time.sleep(60)
        """)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    tmp = Path(tempfile.gettempdir())
    for secret in (admin.key, admin.cert, ca.cert):
        assert _files_holding(secret.read_bytes(), tmp) == [], f"a copy of {secret.name} stayed in {tmp}"
    assert _files_holding(admin.key.read_bytes(), tmp_path / CREDENTIALS_DIR)  # in the state dir instead
