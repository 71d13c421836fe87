"""The trace's result files keep the store's integrity model (issue 19: D4, D5, D6's record).

A sealed run is made from the first lines of the reference log, then cut, edited and
duplicated: every damage is seen by the analysis (a "damaged: why" row, no number), by
resume (the system is redone) and by the book build (refused).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from kdlib import store
from kdlib.errors import ConfigError
from kdlib.experiments.trace import files as trace_files, logs, pages as trace_pages, params as trace_params, report, run as trace_run
from kdlib.experiments import pages
from kdlib.publish import book

REFERENCE = Path(__file__).resolve().parents[3] / "results" / "trace" / "reference"
SYSTEM = "Dr/K8s+"
LINES = 3000


def _sealed_run(root: Path, run_id: str = "sealed") -> Path:
    """A finished Dr/K8s+ run of ``LINES`` invocations, sealed as run_trace seals it."""
    with open(REFERENCE / "trace.dr-k8s+.log", "rb") as handle:
        body = b"".join(handle.readline() for _ in range(LINES))
    success = body.count(b"Status: SUCCESS,")
    text = body + f"Summary: total {LINES} success {success} fail {LINES - success}\n".encode()
    directory = trace_files.run_dir(run_id, root)
    directory.mkdir(parents=True)
    params = trace_params.TraceParams(run_id=run_id, systems=(SYSTEM,))
    meta = json.loads((REFERENCE / "meta.dr-k8s+.json").read_text())
    meta.update(run_id=run_id, parameters=trace_run.parameters(params), invocations=LINES,
                schedule={**meta["schedule"], "invocations": LINES}, sha256={"log": store.sha256(text)})
    trace_files.meta_path(directory, SYSTEM).write_text(json.dumps(meta))
    trace_files.log_path(directory, SYSTEM).write_bytes(text)
    record = json.loads((REFERENCE / "run.json").read_text())
    record.update(run_id=run_id, parameters=trace_run.parameters(params), not_measured={}, failed={})
    (directory / "run.json").write_text(json.dumps(record))
    return directory


def _lines(directory: Path) -> list[bytes]:
    return trace_files.log_path(directory, SYSTEM).read_bytes().splitlines(keepends=True)


def _damages(directory: Path) -> dict[str, bytes]:
    lines = _lines(directory)
    body, summary = lines[:-1], lines[-1]
    half = b"".join(lines)
    delay = body[10].replace(b"Delay: +", b"Delay: +9999999", 1)
    success = [i for i, line in enumerate(body) if b"Status: SUCCESS," in line][0]
    return {
        "cut mid-line": half[: len(half) // 2],
        "cut at a line boundary": b"".join(body[: len(body) // 2]),
        "cut, with a summary appended": b"".join(body[:1000]) + b"Summary: total 175177 success 175177 fail 0\n",
        "one Delay edited": b"".join([*body[:10], delay, *body[11:], summary]),
        "duplicated lines": b"".join([*body, *body[:50], summary]),
        "status BANANA": b"".join([body[0].replace(b"Status: SUCCESS", b"Status: BANANA"), *body[1:], summary]),
        "negative runtime": b"".join([body[0].replace(b"Runtime: ", b"Runtime: -"), *body[1:], summary]),
        "Delay N/A on SUCCESS": b"".join([*body[:success], body[success].split(b"Delay: ")[0] + b"Delay: N/A, Runtime: "
                                          + body[success].split(b"Runtime: ")[1], *body[success + 1:], summary]),
        "one byte appended": b"".join(lines) + b"x",
    }


def test_the_sealed_run_reads_back_clean(tmp_path):
    directory = _sealed_run(tmp_path)
    frame, meta = trace_files.read_system(directory, SYSTEM)
    assert len(frame) == LINES and meta["invocations"] == LINES
    assert trace_run.finished(directory, SYSTEM)
    assert trace_files.damaged_files("sealed", tmp_path) == []
    found = report.trace_report("sealed", tmp_path, save=False)
    assert found.summary.iloc[0]["source"].startswith("measured here")


def test_the_reference_log_is_sealed_and_clean():
    """The shipped reference run passes every check (its metadata records the log's checksum)."""
    assert trace_files.damaged_files("reference", REFERENCE.parents[1]) == []


@pytest.mark.parametrize("damage", ["cut mid-line", "cut at a line boundary", "cut, with a summary appended",
                                    "one Delay edited", "duplicated lines", "status BANANA", "negative runtime",
                                    "Delay N/A on SUCCESS", "one byte appended"])
def test_damage_is_seen_by_analysis_resume_and_book(tmp_path, damage):
    directory = _sealed_run(tmp_path)
    trace_files.log_path(directory, SYSTEM).write_bytes(_damages(directory)[damage])
    with pytest.raises(store.DamagedFile):
        trace_files.read_system(directory, SYSTEM)
    # analysis: a "damaged: why" row, no number, and the figure notes say why
    found = report.trace_report("sealed", tmp_path, save=False)
    row = found.summary.set_index("system").loc[SYSTEM]
    assert row["source"].startswith("damaged: ") and row["slowdown_p50"] != row["slowdown_p50"]  # NaN
    assert "damaged" in found.findings() and SYSTEM in found.not_measured["system"].tolist()
    # resume: the system counts as not finished, so it is redone
    assert not trace_run.finished(directory, SYSTEM)
    # the book refuses to build from it
    assert trace_pages.damaged("sealed", tmp_path / "executed" / "sealed" / "trace.ipynb", tmp_path)


def test_every_line_is_checked_without_a_seal(tmp_path):
    """An original artifact's log (no metadata) is still checked line by line."""
    directory = _sealed_run(tmp_path)
    for damage in ("cut mid-line", "cut, with a summary appended", "duplicated lines", "status BANANA",
                   "negative runtime", "Delay N/A on SUCCESS"):
        path = tmp_path / "original.log"
        path.write_bytes(_damages(directory)[damage])
        with pytest.raises(store.DamagedFile):
            logs.load_checked(path, sealed=False)
    path.write_bytes(trace_files.log_path(directory, SYSTEM).read_bytes())
    assert len(logs.load_checked(path, sealed=False)[0]) == LINES


def test_the_validator_does_not_depend_on_the_id_namespace(tmp_path):
    path = tmp_path / "other-ns.log"
    text = trace_files.log_path(_sealed_run(tmp_path), SYSTEM).read_bytes().replace(b"kdlib-trace/", b"default/")
    path.write_bytes(text)
    assert len(logs.load_checked(path, sealed=False)[0]) == LINES


def test_a_missing_or_unsealed_meta_is_damage(tmp_path):
    directory = _sealed_run(tmp_path)
    meta_file = trace_files.meta_path(directory, SYSTEM)
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps({k: v for k, v in meta.items() if k != "sha256"}))
    with pytest.raises(store.DamagedFile, match="no checksum"):
        trace_files.read_system(directory, SYSTEM)
    meta_file.unlink()
    with pytest.raises(store.DamagedFile, match="metadata is missing"):
        trace_files.read_system(directory, SYSTEM)


def test_a_count_other_than_the_schedules_is_damage(tmp_path):
    directory = _sealed_run(tmp_path)
    meta_file = trace_files.meta_path(directory, SYSTEM)
    meta = json.loads(meta_file.read_text())
    meta["schedule"]["invocations"] = LINES + 1
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(store.DamagedFile, match="its schedule says"):
        trace_files.read_system(directory, SYSTEM)


def test_resume_with_other_parameters_is_refused_naming_them(tmp_path, monkeypatch):
    """D5: functions=5, minutes=2, warmup_minutes=1 over a 30-minute, all-function run."""
    monkeypatch.setenv("KDLIB_SUITE_LOCK", str(tmp_path / "lock"))
    directory = _sealed_run(tmp_path)
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    other = trace_params.TraceParams(run_id="sealed", systems=(SYSTEM,), functions=5, minutes=2, warmup_minutes=1)
    with pytest.raises(ConfigError) as refused:
        trace_run.run_trace(other, root=tmp_path, progress=False)
    message = str(refused.value)
    for name in ("functions", "minutes", "warmup_minutes"):
        assert f"{name}: " in message
    assert "new run_id" in message
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before  # nothing relabelled


def test_resume_of_a_system_replayed_with_another_schedule_is_refused(tmp_path, monkeypatch):
    """The same parameters but another generator (a kdlib whose draws changed): its systems
    did not meet this run's invocations."""
    monkeypatch.setenv("KDLIB_SUITE_LOCK", str(tmp_path / "lock"))
    directory = _sealed_run(tmp_path)
    meta = json.loads(trace_files.meta_path(directory, SYSTEM).read_text())
    same = trace_params.TraceParams(**{k: v for k, v in meta["parameters"].items() if k != "trace"})
    monkeypatch.setattr(trace_run.schedules, "GENERATOR", "another generator")
    with pytest.raises(ConfigError, match=rf"{re.escape(SYSTEM)} was replayed with another schedule "
                                          r"\(schedule_generator: .* → 'another generator'"):
        trace_run.check_schedule(same, meta["schedule"], tmp_path)
    monkeypatch.undo()
    trace_run.check_schedule(same, meta["schedule"], tmp_path)  # the same schedule: resumed
    with pytest.raises(ConfigError, match=r"schedule: \{'invocations'"):
        trace_run.check_schedule(same, {**meta["schedule"], "invocations": 1}, tmp_path)


def test_the_reference_run_resumes_with_its_own_parameters(tmp_path):
    """The recorded trace path of another checkout is the same shipped trace; other systems are allowed."""
    from .test_reference import write_csv

    recorded = trace_run.load_run("reference", REFERENCE.parents[1])["parameters"]
    same = trace_params.TraceParams(run_id="reference", systems=("Dr/K8s+", "Dr/Kd+"))
    assert trace_run.parameter_differences(recorded, same) == []
    other = trace_params.TraceParams(run_id="reference", seed=7)
    assert trace_run.parameter_differences(recorded, other) == ["seed: 42 → 7"]
    added = trace_params.TraceParams(run_id="reference", kd_bin_dir=REFERENCE,
                                     dirigent_csv=write_csv(tmp_path / "dirigent.csv"))
    assert trace_run.parameter_differences(recorded, added) == []  # Kd's binaries and reference data may come later
    recorded = {**recorded, "kd_bin_dir": "/kd/one"}
    assert trace_run.parameter_differences(recorded, added) == [f"kd_bin_dir: '/kd/one' → {str(REFERENCE)!r}"]


def test_a_running_attempt_whose_process_is_gone_reads_as_killed(tmp_path):
    """D6: run.json said `running` forever after a kill -9, even after a resume."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(gone.stdout)
    directory = _sealed_run(tmp_path)
    record = json.loads((directory / "run.json").read_text())
    record["attempts"] = [{"id": f"{pid}@x", "pid": pid, "state": "running"}]
    record["state"] = "running"
    (directory / "run.json").write_text(json.dumps(record))
    loaded = trace_run.load_run("sealed", tmp_path)
    assert loaded["state"] == "killed" and loaded["attempts"][0]["state"] == "killed"
    # a later attempt keeps the killed one as killed, not running
    params = trace_params.TraceParams(run_id="sealed", systems=(SYSTEM,))
    later = {"id": "later", "pid": 1, "state": "finished"}
    trace_run._run_record(params, trace_run.TraceOutcome("sealed"), later, None, {}, tmp_path)
    written = json.loads((directory / "run.json").read_text())
    assert [a["state"] for a in written["attempts"]] == ["killed", "finished"]


def test_the_book_refuses_a_damaged_reference_trace_log(tmp_path):
    """D4: the book built and showed 175,177 invocations from a cut trace log."""
    import shutil

    results = REFERENCE.parents[1]
    for part in ("executed/reference", "scale-pods/reference", "scale-funcs/reference", "scale-nodes/reference",
                 "trace/reference"):
        if (results / part).is_dir():
            shutil.copytree(results / part, tmp_path / part)
    assert book.find_source(pages.contents(), "reference", tmp_path).run_id == "reference"
    log = trace_files.log_path(tmp_path / "trace" / "reference", SYSTEM)
    data = log.read_bytes()
    log.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="trace.dr-k8s\\+.log: .*run the trace notebook again"):
        book.find_source(pages.contents(), "reference", tmp_path)
