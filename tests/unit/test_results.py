"""The results store: log parsing (ours and the original's), atomic writes, resume, loading."""

import json

import pandas as pd
import pytest

from kdlib import store
from kdlib.experiments.microbench import files
from kdlib.experiments.microbench.files import RunKey

ORIGINAL_E2E = """I1120 10:00:00.000 main.go:80] Watching pods
Targets scaled 100/100 in 1.02s
total: 2345678 us
"""
ORIGINAL_BREAKDOWN = "RPC returned 200/200 in 812ms\ntotal: 812345 us (200/200)\n"


def test_parse_ours_and_the_originals():
    assert files.parse_log(files.format_log(1500000, {"bench": "scale-pods"})) == 1500000
    assert files.parse_log(ORIGINAL_E2E) == 2345678
    assert files.parse_log(ORIGINAL_BREAKDOWN) == 812345


def test_a_log_without_total_is_rejected():
    with pytest.raises(ValueError, match="total"):
        files.parse_log("I1120 error: context deadline exceeded\n")


@pytest.mark.parametrize("name, expected", [
    ("e2e.k8s+.100.log", ("e2e", "k8s+", 100, 0)),
    ("e2e.kd.200.r2.log", ("e2e", "kd", 200, 2)),
    ("_sched.kd.2000.log", ("_sched", "kd", 2000, 0)),
    ("_runtime.custom.5.log", ("_runtime", "custom", 5, 0)),
])
def test_log_names(name, expected):
    kind, key = files.parse_log_name(name)
    assert (kind, key.baseline, key.scale, key.repeat) == expected


@pytest.mark.parametrize("name", ["timeline.k8s.1.csv", "e2e.k8s.x.log", "stderr.log", "e2e.k8s.5.r.log"])
def test_not_log_names(name):
    assert files.parse_log_name(name) is None


def test_load_dir_of_original_logs(tmp_path):
    directory = tmp_path / "scale-pods" / "orig"
    directory.mkdir(parents=True)
    (directory / "e2e.k8s.100.log").write_text(ORIGINAL_E2E)
    (directory / "_rs.kd.200.log").write_text(ORIGINAL_BREAKDOWN)
    (directory / "e2e.kd.100.log").write_text("crashed\n")  # no total: damaged, not a number
    (directory / "notes.txt").write_text("ignored")
    frame = files.load_dir(directory)
    assert list(frame.columns) == files.COLUMNS
    assert set(frame["name"]) == {"e2e", "_rs"}
    damaged = frame[(frame["baseline"] == "kd") & (frame["name"] == "e2e")].iloc[0]
    assert pd.isna(damaged["total_s"]) and damaged["source"].startswith("damaged: no `total")
    row = frame[(frame["name"] == "e2e") & (frame["baseline"] == "k8s")].iloc[0]
    assert (row["bench"], row["run_id"], row["baseline"], row["scale"]) == ("scale-pods", "orig", "k8s", 100)
    assert row["total_s"] == pytest.approx(2.345678)
    assert row["source"] == "log file (original format)"


def test_write_run_then_load(tmp_path):
    key = RunKey("scale-pods", "k8s+", 50, 1)
    directory = files.run_dir("scale-pods", "r1", tmp_path)
    timeline = pd.DataFrame([{"kind": "Pod", "object": "p", "stage": "ready", "t": 0.5, "node": "n"}])
    files.write_run(directory, key, 500000, timeline, {"bench": "scale-pods"}, {"bench": "scale-pods"})
    assert files.finished_total(directory, key) == 500000
    assert sorted(p.name for p in directory.iterdir()) == [
        "e2e.k8s+.50.r1.log", "meta.k8s+.50.r1.json", "timeline.k8s+.50.r1.csv"]
    frame = files.load("scale-pods", "r1", tmp_path)
    assert frame.iloc[0]["repeat"] == 1 and frame.iloc[0]["source"] == "measured (kdlib)"
    timelines = files.load_timelines("scale-pods", "r1", tmp_path)
    assert timelines.iloc[0][["baseline", "scale", "repeat", "t"]].tolist() == ["k8s+", 50, 1, 0.5]
    meta = json.loads(files.meta_path(directory, key).read_text())
    assert meta["bench"] == "scale-pods" and set(meta["sha256"]) == {"log", "timeline"}
    assert oct(files.log_path(directory, key).stat().st_mode)[-3:] == "644"  # one mode for all results


def test_interrupted_write_leaves_no_finished_looking_file(tmp_path, monkeypatch):
    path = tmp_path / "e2e.k8s+.5.log"

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(store.os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        store.write_atomic(path, "total: 1 us\n")
    assert list(tmp_path.iterdir()) == []


def test_interrupted_run_is_not_finished(tmp_path, monkeypatch):
    """The log is written last: a run interrupted before it is redone on resume."""
    key = RunKey("scale-pods", "k8s+", 5)
    directory = tmp_path / "run"
    real = files.write_atomic

    def fail_on_log(path, text):
        if path.suffix == ".log":
            raise KeyboardInterrupt
        return real(path, text)

    monkeypatch.setattr(files, "write_atomic", fail_on_log)
    with pytest.raises(KeyboardInterrupt):
        files.write_run(directory, key, 1, pd.DataFrame(), {}, {})
    assert files.finished_total(directory, key) is None
    assert files.load_dir(directory).empty


def test_remove_partials(tmp_path):
    (tmp_path / ".e2e.k8s+.5.log.abc.partial").write_text("x")
    (tmp_path / "e2e.k8s+.5.log").write_text("total: 1 us\n")
    store.remove_partials(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["e2e.k8s+.5.log"]


def test_results_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLIB_RESULTS_DIR", str(tmp_path))
    assert files.run_dir("scale-pods", "x") == tmp_path / "scale-pods" / "x"


def _one_run(tmp_path):
    key = RunKey("scale-pods", "k8s+", 50)
    directory = files.run_dir("scale-pods", "r1", tmp_path)
    timeline = pd.DataFrame([{"kind": "Pod", "object": "p", "stage": "ready", "t": 0.5, "node": "n"}])
    files.write_run(directory, key, 500000, timeline, {"bench": "scale-pods"},
                      {"bench": "scale-pods", "metric": "p90"})
    return directory, key


@pytest.mark.parametrize("damage, why", [
    (lambda text: text[: text.index("total:") + 10], "no `total"),  # cut mid-number
    (lambda text: text + "total: 5 us\n", "2 total lines"),  # a second total appended
    (lambda text: text.replace("500000", "400000"), "checksum"),  # edited
])
def test_a_damaged_log_is_reported_by_name_never_as_a_number(tmp_path, damage, why):
    directory, key = _one_run(tmp_path)
    path = files.log_path(directory, key)
    path.write_text(damage(path.read_text()))
    row = files.load("scale-pods", "r1", tmp_path).iloc[0]
    assert pd.isna(row["total_s"]) and row["source"].startswith("damaged") and why in row["source"]
    assert files.finished_total(directory, key) is None  # resume redoes it
    assert files.load_timelines("scale-pods", "r1", tmp_path).empty  # nor does its timeline feed a chart


def test_random_bytes_and_a_missing_meta_are_damage(tmp_path):
    directory, key = _one_run(tmp_path)
    files.meta_path(directory, key).unlink()
    row = files.load("scale-pods", "r1", tmp_path).iloc[0]
    assert row["source"].startswith("damaged") and "metadata" in row["source"]
    files.log_path(directory, key).write_bytes(b"\xff\xfe total: 5 us\n\x00")
    row = files.load("scale-pods", "r1", tmp_path).iloc[0]
    assert row["source"].startswith("damaged") and "not text" in row["source"]


def test_a_garbage_timeline_is_left_out_with_its_name(tmp_path, caplog):
    directory, key = _one_run(tmp_path)
    files.timeline_path(directory, key).write_bytes(b"\xff\x00garbage")
    assert files.load_timelines("scale-pods", "r1", tmp_path).empty
    assert "timeline" in caplog.text or "not text" in caplog.text


def test_scales_load_in_numeric_order(tmp_path):
    directory = tmp_path / "scale-pods" / "orig"
    directory.mkdir(parents=True)
    for scale in (100, 200, 50):
        (directory / f"e2e.k8s.{scale}.log").write_text(f"total: {scale} us\n")
    assert files.load_dir(directory)["scale"].tolist() == [50, 100, 200]
