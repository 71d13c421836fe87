"""The per-invocation log: our lines parse back; the original's lines load."""

from __future__ import annotations

import pytest

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

