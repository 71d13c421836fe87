"""A kdlib trace log, read by a parser built on the original's line regexes, gives kdlib's numbers.

The parser below is written here in our own words; its regular expression is the original
plot script's (a fact of the file format: ``ID: default/trace-…``), and so are its rules:
warm-up cut at TS ≥ 600 s, the 8 s timeout drop for Kn/Kd, slowdown ≥ 1, functions with
more than one invocation, means per function (the ID's function number). The log comes
from kdlib's own writer (``run.format_log``) on a schedule built from the shipped trace;
no cluster is needed.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from kdlib.experiments.trace import analysis, data, logs, run, schedule
from kdlib.experiments.trace.gateway import FAIL_DISPATCH, SUCCESS, Invocation
from kdlib.experiments.trace.replay import ReplayResult

ORIGINAL_LINE = re.compile(
    r"ID: default/trace-(\d+)-(\d+)/(\d+),.*TS: ([\d.]+)s,.*Delay: \+([\d.]+)ms,.*Runtime: ([\d.]+)/(\d+)ms")


def read_as_the_original(text: str, drop_over_8s: bool) -> dict[str, pd.Series]:
    """Per-function mean slowdown and delay, by the original plot script's rules."""
    rows = []
    for line in text.splitlines():
        found = ORIGINAL_LINE.match(line.strip())
        if found:
            rows.append({"fn": int(found[1]), "ts": float(found[4]), "delay": float(found[5]),
                         "actual": float(found[6]), "requested": int(found[7])})
    lines = pd.DataFrame(rows)
    lines = lines[lines["ts"] >= 600]
    if drop_over_8s:
        lines = lines[lines["delay"] <= 8000]

    def repeated(frame: pd.DataFrame) -> pd.DataFrame:
        sizes = frame.groupby("fn").size()
        return frame[frame["fn"].isin(sizes[sizes > 1].index)]

    slow = lines.assign(slowdown=(lines["delay"] + lines["actual"]) / lines["requested"])
    slow = repeated(slow[slow["slowdown"] >= 1])
    return {"slowdown": slow.groupby("fn")["slowdown"].mean(),
            "latency_ms": repeated(lines).groupby("fn")["delay"].mean()}


def kdlib_written_log(seed: int = 7) -> str:
    """A replay's log as kdlib writes it: the shipped trace's schedule, synthetic time stamps."""
    trace = data.subset(data.load(), 30, 14, seed=5)
    planned = schedule.build(trace)
    rng = np.random.default_rng(seed)
    start = 1000.0
    invocations = []
    for seq, row in enumerate(planned.itertuples()):
        send = start + row.t_s + rng.uniform(0, 0.002)
        inv = Invocation(seq, row.function, int(row.runtime_ms), row.t_s, client_send=send, gateway_recv=send + 1e-5)
        if rng.random() < 0.05:  # no pod within the dispatch timeout
            inv.status, inv.client_recv = FAIL_DISPATCH, send + 30.0
        else:
            # delays from microseconds to 20 s (some over the 8 s timeout); runtimes a little
            # short or long of the request (some slowdowns under 1)
            delay = float(rng.choice([rng.uniform(1e-5, 0.05), rng.uniform(0.05, 5.0), rng.uniform(5.0, 20.0)],
                                     p=[0.6, 0.3, 0.1]))
            inv.gateway_send = send + delay
            inv.gateway_resp = inv.gateway_send + row.runtime_ms / 1000 * rng.uniform(0.9, 1.05)
            inv.client_recv, inv.status = inv.gateway_resp + 1e-5, SUCCESS
        invocations.append(inv)
    result = ReplayResult(invocations, start, np.zeros(0), [], [], [], 0.0, 0.0, True)
    return run.format_log(result, planned, [run.deployment_name(r) for r in trace.rows])


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> str:
    text = kdlib_written_log()
    path = tmp_path_factory.mktemp("trace") / "trace.dr-k8s+.log"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("drop_over_8s", [False, True])
def test_the_originals_reader_gives_kdlibs_per_function_numbers(written, drop_over_8s):
    with open(written) as handle:
        text = handle.read()
    original = read_as_the_original(text, drop_over_8s)
    ours = analysis.per_function(logs.parse(written)[0], warmup_minutes=10,
                                 timeout_ms=analysis.KN_KD_TIMEOUT_MS if drop_over_8s else None)
    for metric in ("slowdown", "latency_ms"):
        mine = ours[metric].rename(index=lambda name: int(name.removeprefix("trace-"))).sort_index()
        theirs = original[metric].sort_index()
        assert len(theirs) >= 10  # enough functions for the comparison to mean something
        assert mine.index.tolist() == theirs.index.tolist()
        np.testing.assert_array_equal(mine.to_numpy(), theirs.to_numpy())  # the same numbers, bit for bit
    # every line the original's regex sees is one of kdlib's successful invocations
    frame = logs.parse(written)[0]
    assert sum(1 for line in text.splitlines() if ORIGINAL_LINE.match(line)) == int((~frame["failed"]).sum())
    if drop_over_8s:
        assert ours["dropped_as_timeout"] > 0


def test_ids_name_the_originals_namespace_and_the_real_one_is_in_the_metadata():
    text = kdlib_written_log()
    first = text.splitlines()[0]
    assert first.startswith("ID: default/trace-") and ", Func: default/trace-" in first
    assert logs.ID_NAMESPACE == "default" and run.NAMESPACE == "kdlib-trace"


def test_logs_with_the_old_kdlib_trace_ids_still_parse():
    old = kdlib_written_log().replace("ID: default/", "ID: kdlib-trace/").replace("Func: default/", "Func: kdlib-trace/")
    new_frame, new_summary = logs.parse_text(kdlib_written_log())
    old_frame, old_summary = logs.parse_text(old)
    assert old_summary == new_summary
    pd.testing.assert_frame_equal(old_frame, new_frame)
    assert not any(ORIGINAL_LINE.match(line) for line in old.splitlines())  # why the IDs changed
