"""The images of the real nodes, built here: no registry is ever contacted.

One image serves as both the pod sandbox (pause) image and the workload image: a
single layer holding ``tools/sleeper``, a static program that sleeps until SIGTERM.
It is written as a docker-archive tar (layer tar, config JSON, ``manifest.json``),
which ``ctr images import`` accepts, tagged with both names.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import subprocess
import tarfile
from pathlib import Path

from ...errors import ClusterError
from . import identity

log = logging.getLogger(__name__)

SANDBOX_IMAGE, WORKLOAD_IMAGE = identity.SANDBOX_IMAGE, identity.WORKLOAD_IMAGE
TAGS = (SANDBOX_IMAGE, WORKLOAD_IMAGE)
ENTRYPOINT = "/sleeper"


def _layer(program: Path) -> bytes:
    """An uncompressed layer tar holding the program as ``/sleeper`` (fixed metadata: reproducible)."""
    buffer = io.BytesIO()
    data = program.read_bytes()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(ENTRYPOINT.lstrip("/"))
        info.size, info.mode, info.mtime = len(data), 0o755, 0
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def build_archive(program: Path, target: Path) -> Path:
    """Write the docker-archive tar of the sleeper image to ``target``."""
    layer = _layer(program)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": [ENTRYPOINT], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "kdlib: tools/sleeper"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_name = diff_id.split(":")[1] + "/layer.tar"
    manifest = [{"Config": config_name, "RepoTags": list(TAGS), "Layers": [layer_name]}]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(target, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in ((layer_name, layer), (config_name, config_bytes),
                           ("manifest.json", json.dumps(manifest).encode())):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return target


def import_archive(archive: Path, containerd_socket: Path, timeout: float = 60.0) -> None:
    """Import the archive into the ``k8s.io`` namespace of one node's containerd (where the CRI looks)."""
    argv = ["ctr", "--address", str(containerd_socket), "--namespace", "k8s.io",
            "images", "import", str(archive)]  # unpacked on import: the first pod does not pay for it
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise ClusterError(f"`{' '.join(argv)}` failed (exit {result.returncode}): "
                           f"{(result.stderr or result.stdout).strip().splitlines()[-1:]}")
    log.debug("imported %s into %s", archive, containerd_socket)
