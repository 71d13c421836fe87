"""A real JupyterLab server for the browser test: 127.0.0.1, a free port, a token, its own dirs.

The server runs from a copy of the notebooks (``root/notebooks/``) so that nothing the
test does in the UI can autosave into the repository; its kernels import this checkout's
``kdlib`` (``PYTHONPATH``) and read results from ``KDLIB_RESULTS_DIR``. Jupyter's config,
data and runtime folders are private too, and JupyterLab's update check and news are off:
the server and the page must reach nothing beyond 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ..helpers import wait_or_kill

REPO = Path(__file__).resolve().parents[2]

# JupyterLab's user settings: every cell stays in the DOM (no windowing), no autosave,
# no update check or news, no first-run questions.
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"checkForUpdates": False,
                                                                         "fetchNews": "false"},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (the server's kernels)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


class JupyterLab:
    """``jupyter lab`` serving ``root`` on 127.0.0.1; a context manager that stops it and its kernels."""

    def __init__(self, root: Path, work: Path, env: dict[str, str]) -> None:
        self.root, self.work, self.env = root, work, env
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.process: subprocess.Popen | None = None
        self.kernel_pids: list[int] = []
        self.log = work / "jupyterlab.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, path: str, method: str = "GET") -> object:
        request = urllib.request.Request(f"{self.url}{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as reply:
            body = reply.read()
        return json.loads(body) if body else None

    def __enter__(self) -> "JupyterLab":
        settings = self.work / "settings"
        for name, value in SETTINGS.items():
            path = settings / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(value))
        env = {**self.env, "JUPYTER_CONFIG_DIR": str(self.work / "config"),
               "JUPYTER_DATA_DIR": str(self.work / "data"), "JUPYTER_RUNTIME_DIR": str(self.work / "runtime"),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), self.env.get("PYTHONPATH")]))}
        argv = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
                f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
                f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
                "--LabApp.expose_app_in_browser=True", f"--LabApp.user_settings_dir={settings}",
                f"--LabApp.workspaces_dir={self.work / 'workspaces'}",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.news_url=",
                "--LabApp.extension_manager=readonly", *(["--allow-root"] if os.geteuid() == 0 else [])]
        self.process = subprocess.Popen(argv, cwd=self.root, env=env, stdin=subprocess.DEVNULL,
                                        stdout=self.log.open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.api("/api/status")
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError(f"jupyter lab did not start:\n{self.log.read_text()[-3000:]}") from None
                time.sleep(0.5)

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            return
        self.kernel_pids = _children(self.process.pid)
        try:
            for kernel in self.api("/api/kernels"):
                self.api(f"/api/kernels/{kernel['id']}", method="DELETE")
            self.api("/api/shutdown", method="POST")
            self.process.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.process.send_signal(signal.SIGTERM)
            wait_or_kill(self.process, 20)
        self.process = None


def copy_notebooks(root: Path) -> Path:
    """The repository's notebooks under ``root/notebooks/`` (what ``jupyter lab`` shows)."""
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    return root / "notebooks"
