"""The per-invocation log: our lines parse back; the original's lines load."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from polars.testing import assert_frame_equal

from kdlib.experiments.trace import logs
from kdlib.experiments.trace.gateway import FAIL_DISPATCH, SUCCESS, Invocation

ORIGINAL = (
    "ID: default/trace-7-0/3, Func: default/trace-7, Status: SUCCESS, TS: 612.345s, CSendReq: 612.346s, "
    "GRecvReq: +0.012ms, GSendReq: +0.020ms, GRecvRes: +101.200ms, CRecvRes: +101.300ms, Delay: +0.020ms, "
    "Runtime: 101.180/101ms\n"
    "ID: default/trace-7-0/4, Func: default/trace-7, Status: FAIL_DISPATCH, TS: 700.000s, CSendReq: 700.001s, "
    "GRecvReq: +0.010ms, GSendReq: N/A, GRecvRes: N/A, CRecvRes: +30000.100ms, Delay: N/A, Runtime: 0.000/50ms\n"
    "Summary: total 2 success 1 fail 1\n")


def test_original_lines_parse():
    frame, summary = logs.parse_text(ORIGINAL)
    assert summary == {"total": 2, "success": 1, "fail": 1}
    assert len(frame) == 2 and frame["row"].tolist() == [7, 7]
    ok, failed = frame.iloc[0], frame.iloc[1]
    assert ok["ts_s"] == 612.345 and ok["delay_ms"] == 0.02 and ok["runtime_ms"] == 101.18
    assert ok["requested_ms"] == 101 and not ok["failed"]
    assert failed["failed"] and failed["delay_ms"] != failed["delay_ms"]  # NaN
    assert failed["crecv_res_ms"] == 30000.1


def test_our_lines_round_trip(tmp_path):
    start = 100.0
    ok = Invocation(0, 3, 250, 1.5, client_send=101.5004, gateway_recv=101.5005, gateway_send=101.8,
                    gateway_resp=102.0503, client_recv=102.0503, pod="p", status=SUCCESS)
    bad = Invocation(1, 3, 40, 2.0, client_send=102.0, gateway_recv=102.0, client_recv=132.0, status=FAIL_DISPATCH)
    text = (logs.format_line(ok, "ns", "trace-42", "ns/trace-42-0/0", start)
            + logs.format_line(bad, "ns", "trace-42", "ns/trace-42-0/1", start)
            + logs.summary_line([SUCCESS, FAIL_DISPATCH]))
    path = tmp_path / "trace.log"
    path.write_text(text)
    frame, summary = logs.parse(path)
    assert summary == {"total": 2, "success": 1, "fail": 1}
    first = frame.iloc[0]
    assert first["ts_s"] == 1.5 and first["csend_s"] == 1.5
    assert first["delay_ms"] == pytest.approx(299.6, abs=0.001)
    assert first["runtime_ms"] == pytest.approx(250.3, abs=0.001) and first["requested_ms"] == 250
    assert first["row"] == 42 and str(first["function"]) == "trace-42"
    assert frame.iloc[1]["failed"] and str(frame.iloc[1]["status"]) == FAIL_DISPATCH
    assert "Delay: N/A" in text and "GSendReq: N/A" in text


def test_not_a_log_is_a_readable_error():
    with pytest.raises(logs.LogFormatError, match="original's line format|lacks"):
        logs.parse_text("hello, world\nthis is not a log\n")



# Every kind of line the original's client writes: a success, each failure status (stamps that
# never happened are N/A), a zero runtime, large and tiny numbers; then the Summary line.
EVERY_KIND = "".join(
    f"ID: default/trace-{fn}-{minute}/{n}, Func: default/trace-{fn}, Status: {status}, TS: {ts}s, CSendReq: {cs}s, "
    f"GRecvReq: {grq}, GSendReq: {gsq}, GRecvRes: {grs}, CRecvRes: {crs}, Delay: {delay}, Runtime: {rt}/{req}ms\n"
    for fn, minute, n, status, ts, cs, grq, gsq, grs, crs, delay, rt, req in [
        (7, 0, 3, "SUCCESS", "612.345", "612.346", "+0.012ms", "+0.020ms", "+101.200ms", "+101.300ms", "+0.020ms",
         "101.180", 101),
        (7, 0, 4, "FAIL_DISPATCH", "700.000", "700.001", "+0.010ms", "N/A", "N/A", "+30000.100ms", "N/A", "0.000", 50),
        (12, 3, 0, "FAIL_TIMEOUT", "0.000", "0.001", "+0.011ms", "+5.000ms", "N/A", "+300000.000ms", "N/A", "0.000", 9),
        (12, 3, 1, "FAIL_CONNECT", "180.250", "180.251", "N/A", "N/A", "N/A", "+1.500ms", "N/A", "0.000", 1),
        (3, 29, 17, "FAIL_SEND", "1799.999", "1800.000", "+0.009ms", "N/A", "N/A", "+2.000ms", "N/A", "0.000", 60000),
        (3, 29, 18, "FAIL_RECV", "1799.999", "1800.002", "+0.009ms", "+0.100ms", "N/A", "+9.000ms", "N/A", "0.000", 1),
        (450, 1, 0, "INVALID_TARGET", "61.000", "61.000", "N/A", "N/A", "N/A", "+0.001ms", "N/A", "0.000", 2),
        (450, 1, 1, "SUCCESS", "61.500", "61.501", "+0.010ms", "+12345.678ms", "+12347.678ms", "+12347.700ms",
         "+12345.678ms", "2.000", 2),
        (0, 10, 0, "SUCCESS", "600.000", "600.004", "+0.000ms", "+0.000ms", "+0.000ms", "+0.001ms", "+0.000ms",
         "0.000", 1),
    ]) + "Summary: total 9 success 3 fail 6\n"

_EVERY_FIELD = re.compile(
    r"^ID: ([^,]*), Func: [^/]*/([^,]*), Status: ([A-Z_]+), TS: ([\d.]+)s, CSendReq: ([\d.]+)s, GRecvReq: ([^,]*), "
    r"GSendReq: ([^,]*), GRecvRes: ([^,]*), CRecvRes: ([^,]*), Delay: ([^,]*), Runtime: ([\d.]+)/(\d+)ms$")


def _stamp(value: str) -> float:
    return math.nan if value == "N/A" else float(value.removeprefix("+").removesuffix("ms"))


def read_line_by_line(text: str) -> pd.DataFrame:
    """A reference reader: one regular expression per line, every field, numbers by float()."""
    rows = []
    for line in text.splitlines():
        found = _EVERY_FIELD.match(line)
        if found:
            rows.append({"func": found[2], "status": found[3], "ts_s": float(found[4]), "csend_s": float(found[5]),
                         **{name: _stamp(found[i]) for i, name in enumerate(logs._STAMPS, start=6)},
                         "runtime_ms": float(found[11]), "requested_ms": int(found[12])})
    return pd.DataFrame(rows)


def test_every_kind_of_line_parses_as_a_line_by_line_regex_reads_it(tmp_path):
    """The vectorised parser's frame holds, bit for bit, what a regex reads line by line; the
    original plot script's own regex sees exactly its successful lines."""
    path = tmp_path / "every-kind.log"
    path.write_text(EVERY_KIND)
    frame, summary = logs.parse(path)
    assert summary == {"total": 9, "success": 3, "fail": 6}
    assert logs.damage(EVERY_KIND.encode(), frame, summary) == []
    reference = read_line_by_line(EVERY_KIND)
    assert len(reference) == len(frame) == 9
    for column in ("ts_s", "csend_s", *logs._STAMPS, "runtime_ms", "requested_ms"):
        np.testing.assert_array_equal(frame[column].to_numpy(), reference[column].to_numpy(), err_msg=column)
    assert frame["requested_ms"].dtype == np.int64
    assert frame["func"].astype(str).tolist() == reference["func"].tolist() == frame["function"].astype(str).tolist()
    assert frame["status"].astype(str).tolist() == reference["status"].tolist()
    assert frame["failed"].tolist() == (reference["status"] != SUCCESS).tolist()
    assert frame["row"].tolist() == [int(name.removeprefix("trace-")) for name in reference["func"]]
    assert list(frame["func"].cat.categories) == sorted(set(reference["func"]))
    original = re.compile(r"ID: default/trace-(\d+)-(\d+)/(\d+),.*TS: ([\d.]+)s,.*Delay: \+([\d.]+)ms,"
                          r".*Runtime: ([\d.]+)/(\d+)ms")
    matched = [m for m in map(original.match, EVERY_KIND.splitlines()) if m]
    ok = frame[~frame["failed"]]
    assert [float(m[5]) for m in matched] == ok["delay_ms"].tolist()
    assert [(int(m[1]), float(m[4]), float(m[6]), int(m[7])) for m in matched] == \
        list(zip(ok["row"], ok["ts_s"], ok["runtime_ms"], ok["requested_ms"]))
    same, _ = logs.parse_text(EVERY_KIND)  # bytes in memory and a file read by polars itself: one frame
    pd.testing.assert_frame_equal(same, frame, check_exact=True)


# Values written otherwise than the client writes them: a doubled or missing sign or unit, a
# unit of the other column, a comma too many, a runtime without its unit or with two slashes.
OTHERWISE = [("GSendReq: +", "GSendReq: ++"), ("GSendReq: +", "GSendReq: "), ("TS: 61.500s", "TS: 61.500ms"),
             ("Delay: +0.020ms,", "Delay: +0.020ms,,"), ("Delay: +0.020ms", "Delay: +0.020"),
             ("CRecvRes: +101.300ms", "CRecvRes: +101.300s"), ("101.180/101ms", "101.180/101"),
             ("101.180/101ms", "101.180/101mss"), ("101.180/101ms", "101.180/10/1ms"), ("TS: 612", "TS: +612"),
             ("Delay: +0.020ms", "Delay: inf"), ("CSendReq: 612.346s", "CSendReq: 612.346"),
             ("Runtime: 101.180", "Runtime: +101.180"), ("GRecvReq: +0.012ms", "GRecvReq: 12,")]


@pytest.mark.parametrize("written, otherwise", OTHERWISE)
def test_values_written_otherwise_read_as_the_lenient_reader_reads_them(written, otherwise):
    """The fast reader takes a log only where it gives the lenient reader's numbers; any value it
    cannot read sends the log to the lenient reader, which counts what it cannot read either."""
    text = EVERY_KIND.replace(written, otherwise, 1)
    assert text != EVERY_KIND
    raw = logs._tokens(text.encode(), text.encode().split(b"\n", 1)[0])
    fast, lenient = logs._numbers_as_written(raw), logs._numbers_lenient(raw)
    if fast is not None:
        assert_frame_equal(fast, lenient.select(fast.columns))
    try:
        frame, summary = logs.parse_text(text)
    except logs.LogFormatError:
        return
    numbers = lenient.filter(lenient["ts_s"].is_not_null() | lenient["requested_ms"].is_not_null())
    for column in ("ts_s", "csend_s", *logs._STAMPS, "runtime_ms"):
        np.testing.assert_array_equal(frame[column].to_numpy(), numbers[column].fill_null(np.nan).to_numpy())
    garbled = {name: int(numbers[f"bad_{name}"].sum()) for name in logs._UNITS if numbers[f"bad_{name}"].any()}
    assert frame.attrs["garbled"] == garbled


def test_the_clients_own_lines_take_the_fast_reader():
    raw = logs._tokens(EVERY_KIND.encode(), EVERY_KIND.encode().split(b"\n", 1)[0])
    assert logs._numbers_as_written(raw) is not None
