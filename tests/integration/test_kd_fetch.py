"""`kd fetch` against a real OCI registry on 127.0.0.1 (crane's), holding images built here
from our vanilla binaries under Kubedirect's image names and tag; then kd+ measured with
them beside k8s+. Same binaries on both sides: this checks the plumbing, not Kd."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from kdlib.cluster.binaries import build_crane, check_bin_dir
from kdlib.experiments import microbench, runner
from kdlib.paths import cache_root
from kdlib.cluster import kd_images
from kdlib.errors import (BinaryNotInImageError, ImageNotFoundError, PlatformMissingError,
                          RegistryUnreachableError)

from ..conftest import REPO, run_kdlib

pytestmark = [pytest.mark.integration, pytest.mark.needs_binaries]
TAG = kd_images.DEFAULT_TAG
PLATFORM = kd_images.host_platform()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(*command) -> str:
    result = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{command}: {result.stderr[-2000:]}"
    return result.stdout.strip()


@pytest.fixture(scope="module")
def crane() -> Path:
    return build_crane()


@pytest.fixture(scope="module")
def registry(crane, tmp_path_factory):
    """crane's registry (in memory) on a free loopback port, stopped by its pid at the end."""
    port = _free_port()
    log = open(tmp_path_factory.mktemp("registry") / "registry.log", "w")
    server = subprocess.Popen([str(crane), "registry", "serve", "--address", f"127.0.0.1:{port}"],
                              stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, "the registry did not start"
            time.sleep(0.1)
    yield f"127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=20)
    log.close()


def _layer(path: Path, files: dict[str, Path | bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, content in files.items():
            if isinstance(content, Path):
                tar.add(content, arcname=name)
            else:
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(content), 0o755
                tar.addfile(info, io.BytesIO(content))
    return path


def _push(crane: Path, repository: str, tag: str, layers: list[Path]) -> None:
    """An image of ``layers`` for this platform, tagged as a one-entry index (as multi-arch images are)."""
    flags = [arg for layer in layers for arg in ("-f", layer)]
    _run(crane, "append", *flags, "-t", f"{repository}:{tag}-single")
    pinned = _run(crane, "mutate", "--set-platform", PLATFORM, f"{repository}:{tag}-single")
    _run(crane, "index", "append", "-m", pinned, "-t", f"{repository}:{tag}")


@pytest.fixture(scope="module")
def images(crane, registry, binaries, tmp_path_factory):
    """shengqipku/<component>:<Kd tag>: a base layer with a stale copy, then the real binary
    (so the top layer must win); broken/<component>: the scheduler image lacks its binary."""
    work = tmp_path_factory.mktemp("images")
    for component in kd_images.KD_COMPONENTS:
        base = _layer(work / f"{component}-base.tar", {"etc/os-release": b"ID=test\n",
                                                       f"usr/local/bin/{component}": b"#!/bin/sh\necho stale\n"})
        top = _layer(work / f"{component}.tar", {f"usr/local/bin/{component}": binaries[component]})
        _push(crane, f"{registry}/shengqipku/{component}", TAG, [base, top])
        if component == "kube-scheduler":
            empty = _layer(work / "empty.tar", {"etc/os-release": b"ID=test\n"})
            _push(crane, f"{registry}/broken/{component}", TAG, [empty])
        else:
            _run(crane, "copy", f"{registry}/shengqipku/{component}:{TAG}", f"{registry}/broken/{component}:{TAG}")
    return registry


def _leftovers(dest: Path) -> list[Path]:
    return sorted(dest.parent.glob(f".{dest.name}.*"))


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_extracts_checks_and_records_then_does_nothing_twice(images, crane, binaries, tmp_path):
    dest = tmp_path / "kd"
    result = kd_images.fetch(registry=images, dest=dest, crane=crane)
    assert result.fetched and result.directory == dest.resolve()
    for component in kd_images.KD_COMPONENTS:
        binary, ref = result.binaries[component], f"{images}/shengqipku/{component}:{TAG}"
        assert os.access(dest / component, os.X_OK)
        assert binary.sha256 == _sha256(dest / component) == _sha256(binaries[component])  # not the stale one
        assert binary.version.startswith("Kubernetes v1.32")
        assert binary.index_digest == _run(crane, "digest", ref)
        assert binary.manifest_digest == _run(crane, "digest", "--platform", PLATFORM, ref)
        assert binary.path_in_image == f"/usr/local/bin/{component}" and binary.platform == PLATFORM
    record = json.loads((dest / "binaries.json").read_text())
    assert record["components"]["kube-scheduler"]["manifest_digest"] == result.binaries["kube-scheduler"].manifest_digest
    assert sorted(p.name for p in dest.iterdir()) == ["binaries.json", *kd_images.KD_COMPONENTS]
    assert _leftovers(dest) == []

    # As a Kd directory: the three from the images, etcd and kwok from our build.
    found = check_bin_dir(dest, fallback=binaries)
    assert found.sources["kube-apiserver"].startswith(f"image {images}/shengqipku/kube-apiserver:{TAG}@sha256:")
    assert found.sources["etcd"] == binaries.sources["etcd"] and found["kwok"] == binaries["kwok"]

    mtimes = {p.name: p.stat().st_mtime_ns for p in dest.iterdir()}
    again = kd_images.fetch(registry=images, dest=dest, crane=tmp_path / "no-crane")  # never called
    assert not again.fetched and again.binaries == result.binaries
    assert {p.name: p.stat().st_mtime_ns for p in dest.iterdir()} == mtimes


def test_missing_tag_and_platform_fail_cleanly(images, crane, tmp_path):
    dest = tmp_path / "kd"
    with pytest.raises(ImageNotFoundError, match=f"image {images}/shengqipku/kube-apiserver:v0-missing not found"):
        kd_images.fetch(tag="v0-missing", registry=images, dest=dest, crane=crane)
    with pytest.raises(PlatformMissingError, match=f"has no image for linux/s390x \\(it offers {PLATFORM}\\)"):
        kd_images.fetch(registry=images, dest=dest, crane=crane, platform="linux/s390x")
    assert not dest.exists() and _leftovers(dest) == []

    cli = run_kdlib("kd", "fetch", "--registry", images, "--tag", "v0-missing", "--dest", str(dest))
    assert cli.returncode == 1
    assert cli.stderr.strip().splitlines() == [cli.stderr.strip()]  # one line
    assert cli.stderr.startswith(f"kdlib: error: image {images}/shengqipku/kube-apiserver:v0-missing not found")


def test_unreachable_registry_says_what_to_do_offline(crane, tmp_path):
    dest, port = tmp_path / "kd", _free_port()  # nothing listens there
    with pytest.raises(RegistryUnreachableError) as caught:
        kd_images.fetch(registry=f"127.0.0.1:{port}", dest=dest, crane=crane)
    message = str(caught.value)
    assert message.startswith(f"registry 127.0.0.1:{port} is unreachable") and "\n" not in message
    assert "--bin-dir" in message and "connection refused" in message
    assert not dest.exists() and _leftovers(dest) == []


def test_a_failure_midway_leaves_the_previous_fetch_intact(images, crane, tmp_path):
    dest = tmp_path / "kd"
    first = kd_images.fetch(registry=images, dest=dest, crane=crane)
    with pytest.raises(BinaryNotInImageError, match="no layer of .*broken/kube-scheduler.* holds kube-scheduler"):
        kd_images.fetch(repository="broken", registry=images, dest=dest, crane=crane)
    kept = kd_images.stored(dest=dest)
    assert kept is not None and kept.binaries == first.binaries  # still the first fetch, every file intact
    assert _leftovers(dest) == []


@pytest.mark.destructive
def test_ctrl_c_during_the_download_leaves_nothing(images, tmp_path):
    dest = tmp_path / "kd"
    fetch = subprocess.Popen([sys.executable, "-m", "kdlib", "kd", "fetch", "--registry", images, "--dest", str(dest)],
                             cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".kd.fetch-*/.kube-apiserver.tar")):  # the first image is coming in
        assert fetch.poll() is None and time.monotonic() < deadline, fetch.stderr.read()[-2000:]
        time.sleep(0.01)
    fetch.send_signal(signal.SIGINT)
    assert fetch.wait(timeout=60) == 130
    assert "kdlib: interrupted" in fetch.stderr.read()
    assert not dest.exists() and _leftovers(dest) == []


@pytest.mark.slow
def test_kd_plus_beside_k8s_plus_with_fetched_binaries(images, binaries, tmp_path):
    """`kd fetch` into the default place, then the notebook (no kd_bin_dir) measures kd+ with them."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "bin").symlink_to(cache_root() / "bin")  # our built binaries and crane, not rebuilt
    env = {**os.environ, "KDLIB_CACHE_DIR": str(cache), "KDLIB_RESULTS_DIR": str(tmp_path / "results"),
           "KDLIB_STATE_DIR": str(tmp_path / "state"), "KDLIB_SUITE_LOCK": str(tmp_path / "suite.lock")}
    fetched = run_kdlib("kd", "fetch", "--registry", images, env=env)
    assert fetched.returncode == 0, fetched.stderr[-2000:]
    assert fetched.stdout.strip() == str(cache / "kd" / TAG)

    output = tmp_path / "microbench.ipynb"
    params = "{run_id: kdfetched, benches: [scale-pods], scale_pods: [4], baselines: [k8s+, kd+], nodes: 2, settle_s: 0.3}"
    run = subprocess.run([sys.executable, "-m", "papermill", str(REPO / "notebooks" / "microbench.ipynb"),
                          str(output), "--cwd", str(REPO), "-y", params], env=env, capture_output=True, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    notebook = output.read_text()
    assert "kd_bin_dir not given: using the Kubedirect binaries that `kd fetch` stored in" in notebook

    root = tmp_path / "results"
    suite = runner.load("kdfetched", root)
    assert suite["not_measured"] == {} and {o["status"] for o in suite["attempts"][-1]["outcomes"]} == {"measured"}
    kd_sources = suite["clusters"]["kd"]["sources"]
    digest = json.loads((cache / "kd" / TAG / "binaries.json").read_text())["components"]["kube-apiserver"]
    assert kd_sources["kube-apiserver"].startswith(f"image {images}/shengqipku/kube-apiserver:{TAG}@"
                                                   f"{digest['manifest_digest']}")
    assert kd_sources["etcd"].startswith("built here") and suite["clusters"]["vanilla"]["sources"][
        "kube-apiserver"].startswith("built here")

    report = microbench.report("kdfetched", root, save=False)
    table = report.tables["scale-pods"]
    assert set(table["baseline"]) == {"k8s+", "kd+"} and "not measured" not in set(table["p90 (s)"])
    assert table.set_index("baseline").loc["kd+", "ratio to vanilla"].startswith("k8s+ ÷ kd+ = ")
    assert any(line.startswith("kd+ from images kube-apiserver@sha256:") for line in report.source)
