"""kd fetch's parts that need no registry: reading a flattened image, partial binary
directories and their sources, classifying crane's failures, finding stored binaries."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from kdlib.cluster.binaries import COMPONENTS, SOURCES_FILE, BinarySet, check_bin_dir
from kdlib.cluster import kd_images, oci
from kdlib.errors import BinaryError, ImageError, ImageNotFoundError, RegistryUnreachableError
from kdlib.experiments.microbench import SuiteParams, with_fetched_kd


def _tar(path: Path, entries: list[tuple[str, str, str]]) -> Path:
    """entries: (name, kind, content-or-link-target) with kind file/dir/sym/hard."""
    with tarfile.open(path, "w") as tar:
        for name, kind, value in entries:
            info = tarfile.TarInfo(name)
            if kind == "file":
                data = value.encode()
                info.size, info.mode = len(data), 0o755
                tar.addfile(info, io.BytesIO(data))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE}[kind]
            info.linkname = value
            tar.addfile(info)
    return path


def test_the_usual_place_comes_first(tmp_path):
    archive = _tar(tmp_path / "a.tar", [("opt/kube-apiserver", "file", "other"),
                                        ("usr/local/bin/kube-apiserver", "file", "usual")])
    assert oci.find_in_tar(archive, ["usr/local/bin/kube-apiserver"], "kube-apiserver") == "usr/local/bin/kube-apiserver"
    target = tmp_path / "out"
    digest = oci.extract_member(archive, "usr/local/bin/kube-apiserver", target)
    assert target.read_text() == "usual" and digest == "sha256:" + hashlib.sha256(b"usual").hexdigest()
    assert target.stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize("link", [("sym", "/go/bin/kube-scheduler"), ("sym", "../../../go/bin/kube-scheduler"),
                                  ("hard", "go/bin/kube-scheduler")])
def test_links_are_followed_inside_the_image(tmp_path, link):
    archive = _tar(tmp_path / "a.tar", [("./go/bin/kube-scheduler", "file", "real"),
                                        ("usr/local/bin/kube-scheduler", *link)])
    assert oci.find_in_tar(archive, ["usr/local/bin/kube-scheduler"], "kube-scheduler") == "go/bin/kube-scheduler"


def test_elsewhere_by_name_and_absent(tmp_path):
    archive = _tar(tmp_path / "a.tar", [("app/kube-apiserver", "file", "x"), ("etc/dangling", "sym", "/nowhere")])
    assert oci.find_in_tar(archive, ["usr/local/bin/kube-apiserver"], "kube-apiserver") == "app/kube-apiserver"
    assert oci.find_in_tar(archive, ["usr/local/bin/kube-scheduler"], "kube-scheduler") is None


def _executables(directory: Path, names) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        (directory / name).write_text(f"#!/bin/sh\necho {name}\n")
        (directory / name).chmod(0o755)
    return directory


def test_a_partial_directory_is_completed_and_says_where_each_came_from(tmp_path):
    ours = _executables(tmp_path / "ours", COMPONENTS)
    fallback = BinarySet(ours, {c: ours / c for c in COMPONENTS}, {c: f"built here {c}" for c in COMPONENTS})
    kd = _executables(tmp_path / "kd", kd_images.KD_COMPONENTS)
    (kd / SOURCES_FILE).write_text(json.dumps({"components": {"kube-apiserver": {"source": "image X@sha256:1"}}}))
    found = check_bin_dir(kd, fallback=fallback)
    assert found["kube-apiserver"] == kd / "kube-apiserver" and found["etcd"] == ours / "etcd"
    assert found.sources == {"etcd": "built here etcd", "kwok": "built here kwok",
                             "kube-apiserver": "image X@sha256:1",
                             "kube-controller-manager": f"given in {kd.resolve()}",
                             "kube-scheduler": f"given in {kd.resolve()}"}
    with pytest.raises(BinaryError, match="etcd is missing.*python -m kdlib build"):
        check_bin_dir(kd)  # nothing to complete it from


def test_a_directory_with_none_of_the_names_is_refused(tmp_path):
    with pytest.raises(BinaryError, match="holds none of etcd"):
        check_bin_dir(_executables(tmp_path / "x", ["kubectl"]))


def _crane_double(tmp_path: Path, stderr: str, code: int = 1, sleep: float = 0) -> oci.Crane:
    script = tmp_path / "crane"
    body = f"exec sleep {sleep}" if sleep else f"echo '{stderr}' >&2\nexit {code}"  # exec: killed on timeout
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return oci.Crane(script, timeout=1)


@pytest.mark.parametrize("stderr, error, words", [
    ("Error: fetching manifest r/x:t: GET http://r/v2/x/manifests/t: MANIFEST_UNKNOWN: Unknown manifest",
     ImageNotFoundError, "not found"),
    ("Error: GET https://index.docker.io/v2/x/y/manifests/t: UNAUTHORIZED: authentication required",
     ImageNotFoundError, "not found"),
    ('Error: Get "https://r:5000/v2/": dial tcp: lookup r on 127.0.0.53:53: no such host',
     RegistryUnreachableError, "--bin-dir"),
    ("Error: GET https://index.docker.io/v2/x/manifests/t: TOOMANYREQUESTS: You have reached your pull rate limit",
     ImageError, "refuses more pulls for now"),
    ("Error: something else entirely", ImageError, "failed"),
])
def test_crane_failures_become_one_line_errors(tmp_path, stderr, error, words):
    with pytest.raises(error, match=words) as caught:
        _crane_double(tmp_path, stderr).resolve("r:5000/shengqipku/kube-apiserver:t", "linux/amd64")
    assert "\n" not in str(caught.value)


def test_a_silent_registry_is_unreachable(tmp_path):
    with pytest.raises(RegistryUnreachableError, match="no answer within 1 s.*--bin-dir"):
        _crane_double(tmp_path, "", sleep=5).resolve("r/x:t", "linux/amd64")


def _stored(dest: Path, tag: str = kd_images.DEFAULT_TAG) -> Path:
    _executables(dest, kd_images.KD_COMPONENTS)
    components = {}
    for name in kd_images.KD_COMPONENTS:
        digest = "sha256:" + hashlib.sha256((dest / name).read_bytes()).hexdigest()
        components[name] = {"component": name, "image": f"docker.io/shengqipku/{name}:{tag}", "index_digest": None,
                            "manifest_digest": "sha256:" + "0" * 64, "platform": "linux/amd64",
                            "path_in_image": f"/usr/local/bin/{name}", "sha256": digest, "version": "v", "source": "s"}
    (dest / SOURCES_FILE).write_text(json.dumps({"components": components}))
    return dest


def test_the_notebook_finds_what_kd_fetch_stored(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLIB_CACHE_DIR", str(tmp_path / "cache"))
    params = SuiteParams(run_id="r", baselines=("k8s+", "kd+"))
    assert with_fetched_kd(params) == (params, None)  # nothing stored
    dest = _stored(kd_images.default_dest())
    found, note = with_fetched_kd(params)
    assert found.kd_bin_dir == dest.resolve() and "kd fetch" in note and "sha256:000000" in note
    assert with_fetched_kd(SuiteParams(run_id="r", baselines=("k8s+",)))[1] is None  # kd+ not wanted
    given = SuiteParams(run_id="r", kd_bin_dir=tmp_path)
    assert with_fetched_kd(given) == (given, None)  # an explicit directory wins
    (dest / "kube-scheduler").write_text("#!/bin/sh\necho changed\n")  # no longer what was fetched
    assert kd_images.stored() is None and with_fetched_kd(params) == (params, None)


def test_fetch_refuses_a_destination_it_did_not_write(tmp_path):
    dest = tmp_path / "mine"
    dest.mkdir()
    (dest / "notes.txt").write_text("keep me")
    with pytest.raises(BinaryError, match="holds files that kd fetch did not write"):
        kd_images.fetch(dest=dest, crane=tmp_path / "no-crane")
    assert (dest / "notes.txt").read_text() == "keep me"


def test_the_trace_finds_what_kd_fetch_stored_as_the_microbenchmarks_do(tmp_path, monkeypatch):
    from kdlib.experiments.trace.params import TraceParams, plan
    from kdlib.experiments.trace.params import with_fetched_kd as trace_with_fetched_kd

    monkeypatch.setenv("KDLIB_CACHE_DIR", str(tmp_path / "cache"))
    params = TraceParams(run_id="r")
    assert trace_with_fetched_kd(params) == (params, None)  # nothing stored
    assert "kd fetch" in plan(params)[1]["Dr/Kd+"]  # the reason names both ways to get the binaries
    dest = _stored(kd_images.default_dest())
    found, note = trace_with_fetched_kd(params)
    assert found.kd_bin_dir == dest.resolve() and "kd fetch" in note and "sha256:000000" in note
    assert "Dr/Kd+" in plan(found)[0]
    assert trace_with_fetched_kd(TraceParams(run_id="r", systems=("Dr/K8s+",)))[1] is None  # Kd not wanted
