"""The per-invocation log in the original's line format.

One line per invocation, as the original's trace client writes it::

    ID: default/trace-7-0/3, Func: default/trace-7, Status: SUCCESS, TS: 12.345s, CSendReq: 12.346s,
    GRecvReq: +0.012ms, GSendReq: +0.020ms, GRecvRes: +101.2ms, CRecvRes: +101.3ms, Delay: +0.020ms,
    Runtime: 101.180/101ms

(one line in the file). Stamps after ``CSendReq`` are ms since the client sent it; a stamp
that never happened is ``N/A`` (a failed dispatch has ``GSendReq``, ``GRecvRes`` and
``Delay`` N/A). The file ends with ``Summary: total N success S fail F``. :func:`parse`
reads logs of the original and of kdlib alike, vectorised: polars' CSV reader splits the
lines into their tokens on all cores and its string kernels cut the units (no per-line Python).
A value written as the client writes it (``+12.345ms,``) has its exact unit cut and is cast
once; a log with any value written otherwise is read again by the lenient cut (any number of
unit characters and plus signs), which gives the same numbers where both read one and also
counts what neither can read (:func:`_numbers_as_written`).

**The namespace token.** The original's client ran in the ``default`` namespace, and its
plot script matches exactly ``ID: default/trace-…``. kdlib's Deployments live in their
own namespace (``kdlib-trace``, recorded as ``namespace`` in the run's metadata), because
kdlib deletes what its namespace holds when a run ends and must never touch objects it did
not create; its logs still write ``ID: default/…`` and ``Func: default/…``
(:data:`ID_NAMESPACE`, the metadata's ``id_namespace``), so the original's own analysis
reads them unchanged. The rest of the ID is ``trace-<row>-<minute>/<index in the
minute>``; the original's client writes its sender's number (almost always 0) and the
request's index within that sender there, numbers its analysis matches but never uses.
Logs written before this change, with ``kdlib-trace/`` IDs, parse the same: :func:`parse`
does not read the namespace token.

:func:`damage` checks every line of a parsed log (known status, finite non-negative
numbers, a delay on every success, unique IDs, one final Summary line that agrees with
the lines); :func:`load_checked` also checks a kdlib log against the checksum and the
invocation count its metadata recorded (:mod:`kdlib.store`'s integrity model) and raises
:class:`~kdlib.store.DamagedFile` naming why.
"""

from __future__ import annotations

import mmap
import os
import re
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import polars as pl

from ... import store
from ...errors import LogFormatError
from .gateway import FAIL_DISPATCH, SUCCESS, Invocation

#: The namespace token of every ID and Func in kdlib's logs: the original client's namespace.
ID_NAMESPACE = "default"

_SUMMARY = re.compile(r"^Summary: total (\d+) success (\d+) fail (\d+)\s*$", re.M)


def _ms(value: float | None, base: float) -> str:
    if value is None or value < base:
        return "N/A"
    return f"+{(value - base) * 1000:.3f}ms"


def format_line(inv: Invocation, namespace: str, name: str, invocation_id: str, start: float) -> str:
    """One invocation as the original's client prints it (``start``: the replay's clock origin)."""
    base = inv.client_send
    actual_ms = (inv.gateway_resp - inv.gateway_send) * 1000 if inv.status == SUCCESS else 0.0
    delay = None if inv.gateway_resp is None else inv.gateway_resp - actual_ms / 1000
    return (f"ID: {invocation_id}, Func: {namespace}/{name}, Status: {inv.status}, TS: {inv.scheduled_s:.3f}s, "
            f"CSendReq: {base - start:.3f}s, GRecvReq: {_ms(inv.gateway_recv, base)}, "
            f"GSendReq: {_ms(inv.gateway_send, base)}, GRecvRes: {_ms(inv.gateway_resp, base)}, "
            f"CRecvRes: {_ms(inv.client_recv, base)}, Delay: {_ms(delay, base)}, "
            f"Runtime: {actual_ms:.3f}/{inv.runtime_ms}ms\n")


def summary_line(statuses: Iterable[str]) -> str:
    statuses = list(statuses)
    ok = sum(1 for s in statuses if s == SUCCESS)
    return f"Summary: total {len(statuses)} success {ok} fail {len(statuses) - ok}\n"


# A line is 22 space-separated tokens, keys and values in turn: "ID:" "default/trace-7-0/3,"
# "Func:" "default/trace-7," "Status:" "SUCCESS," "TS:" "12.345s," … "Runtime:" "101.180/101ms".
# polars' multi-threaded CSV reader splits them (a header line names them, so that a short
# first line cannot fix the width); the values keep their units and commas, cut off below.
_VALUES = ("id", "func", "status", "ts_s", "csend_s", "grecv_req_ms", "gsend_req_ms", "grecv_res_ms",
           "crecv_res_ms", "delay_ms", "runtime")
_HEADER = " ".join(f"key{i} {name}" for i, name in enumerate(_VALUES)).encode() + b"\n"
_UNITS = {"ts_s": "s,", "csend_s": "s,", **{name: "ms," for name in _VALUES[5:10]}}
_REQUIRED = ("ts_s", "csend_s", "runtime_ms", "requested_ms")
_NOT_A_STAMP = "N/A,"


def _last_summary(data: bytes | mmap.mmap) -> dict | None:
    """The counts of the last ``Summary:`` line (the original writes one, at the end)."""
    first = data[:9] == b"Summary: "
    at = 0 if first else data.rfind(b"\nSummary: ") + 1
    if at <= 0 and not first:
        return None
    end = data.find(b"\n", at)
    match = _SUMMARY.match(data[at:len(data) if end < 0 else end].decode("utf-8", "replace"))
    return {"total": int(match[1]), "success": int(match[2]), "fail": int(match[3])} if match else None


def _tokens(source: bytes | Path, first_line: bytes) -> pl.DataFrame:
    """The value tokens of every line (func … runtime), as strings; a short line's missing ones null."""
    if first_line.count(b" ") >= 2 * len(_VALUES) - 1:  # a whole first line: it fixes the width (no copy)
        raw = pl.read_csv(source, separator=" ", has_header=False, infer_schema=False, quote_char=None,
                          truncate_ragged_lines=True, columns=list(range(3, 2 * len(_VALUES), 2)))
        raw.columns = list(_VALUES[1:])
        return raw
    data = source.read_bytes() if isinstance(source, Path) else source
    return pl.read_csv(_HEADER + data, separator=" ", has_header=True, infer_schema=False, quote_char=None,
                       truncate_ragged_lines=True, columns=list(_VALUES[1:]))


def _lenient(name: str, unit: str) -> pl.Expr:
    """A number with its unit's characters and its plus signs cut off, whatever their count."""
    return pl.col(name).str.strip_chars_end(unit).str.strip_chars_start("+").cast(pl.Float64, strict=False)


def _numbers_as_written(raw: pl.DataFrame) -> pl.DataFrame | None:
    """The numbers of lines as the original's client writes them (``+12.345ms,``: one unit, at
    most one sign), or None if any value is written otherwise (then :func:`_numbers_lenient`).

    Where this succeeds it gives exactly :func:`_numbers_lenient`'s values: a value that casts
    once its exact unit is cut ends in a digit, so the lenient cut removes the same characters,
    and the cast takes one leading ``+`` itself. A value it fails on (null where the token is
    neither missing nor ``N/A,``) sends the whole log to the lenient reader, which also counts it.
    """
    runtime = pl.col("runtime").str.split_exact("/", 1)
    parsed = raw.lazy().select(
        "func", "status",
        *(pl.col(name).str.strip_suffix(unit).cast(pl.Float64, strict=False) for name, unit in _UNITS.items()),
        runtime.struct.field("field_0").cast(pl.Float64, strict=False).alias("runtime_ms"),
        runtime.struct.field("field_1").str.strip_suffix("ms").cast(pl.Int64, strict=False).alias("requested_ms"),
    ).collect()
    absent = raw.select(
        *((pl.col(name).is_null() | (pl.col(name) == _NOT_A_STAMP)).sum() for name in _UNITS),
        pl.col("runtime").is_null().sum().alias("runtime_ms"), pl.col("runtime").is_null().sum().alias("requested_ms"),
    ).row(0, named=True)
    if any(parsed[name].null_count() != count for name, count in absent.items()):
        return None
    return parsed


def _numbers_lenient(raw: pl.DataFrame) -> pl.DataFrame:
    """Every number with :func:`_lenient`'s cut, and per column whether its token was garbled."""
    runtime = pl.col("runtime").str.strip_chars_end("ms").str.split_exact("/", 1)
    return raw.lazy().select(  # lazy: each number is cut and cast once for its value and its check
        "func", "status",
        *(_lenient(name, unit) for name, unit in _UNITS.items()),
        runtime.struct.field("field_0").cast(pl.Float64, strict=False).alias("runtime_ms"),
        runtime.struct.field("field_1").cast(pl.Int64, strict=False).alias("requested_ms"),
        *((pl.col(name).is_not_null() & (pl.col(name) != _NOT_A_STAMP) & _lenient(name, unit).is_null())
          .alias(f"bad_{name}") for name, unit in _UNITS.items()),
    ).collect()


_NAMESPACE = re.compile(r"^[^/]*/")  # Func's namespace token, not part of the function's name


def _categorical(column: pl.Series, cut: re.Pattern | None = None) -> pd.Categorical:
    """``column``'s tokens without their trailing commas (and ``cut``), as a pandas categorical.

    Only the distinct tokens (a few hundred functions, not a million rows) are cut, in Python.
    The categories are the comma-less tokens, sorted, then cut (sorted again where the cut
    makes two of them one).
    """
    tokens = column.unique()
    codes = column.cast(pl.Enum(tokens)).to_physical().to_numpy()
    values = [token.rstrip(",") for token in tokens.to_list()]
    ordered = sorted(set(values))
    name_of = {value: cut.sub("", value, count=1) if cut else value for value in ordered}
    names = [name_of[value] for value in ordered]
    if len(set(names)) < len(names):  # one name in two namespaces: one category
        names = sorted(set(names))
    position = {name: i for i, name in enumerate(names)}
    lookup = np.array([position[name_of[value]] for value in values], dtype=np.int32)
    return pd.Categorical.from_codes(lookup[codes], names)


def _parse(source: bytes | Path, data: bytes | mmap.mmap, source_name: str) -> tuple[pd.DataFrame, dict | None]:
    summary = _last_summary(data)
    newline = data.find(b"\n")
    first_line = data[:newline] if newline >= 0 else data[:]
    try:
        raw = _tokens(source, first_line)
    except pl.exceptions.NoDataError:
        raw = pl.DataFrame(schema={name: pl.String for name in _VALUES[1:]})
    except (pl.exceptions.PolarsError, UnicodeDecodeError) as error:
        raise LogFormatError(f"{source_name}: not a trace log in the original's line format "
                             f"({str(error).splitlines()[0]})") from None
    parsed = _numbers_as_written(raw)
    if parsed is None:
        parsed = _numbers_lenient(raw)
    keep = parsed.select(pl.col("ts_s").is_not_null() | pl.col("requested_ms").is_not_null()).to_series()
    kept = int(keep.sum())
    # usually only the Summary line, the last, is left out: a slice, not a copy
    parsed = parsed.head(kept) if keep.head(kept).all() else parsed.filter(keep)
    if not len(parsed) and summary is None and len(data) and data[:].strip():
        raise LogFormatError(f"{source_name}: not a trace log in the original's line format (no invocation line)")
    if any(parsed[name].null_count() for name in _REQUIRED):
        raise LogFormatError(f"{source_name}: a line lacks or garbles TS, CSendReq or Runtime")
    floats = [*_UNITS, "runtime_ms"]
    # the floats as one new 2-D array (N/A as NaN) that pandas keeps as its block: no second copy
    frame = pd.DataFrame(parsed.select(floats).to_numpy(), columns=floats, copy=False)
    frame.insert(0, "func", _categorical(parsed["func"], _NAMESPACE))
    frame.insert(1, "status", _categorical(parsed["status"]))
    frame["requested_ms"] = parsed["requested_ms"].to_numpy()
    frame["function"] = frame["func"]
    rows = pd.to_numeric(frame["func"].cat.categories.str.extract(r"-(\d+)$")[0], errors="coerce").to_numpy()
    frame["row"] = pd.array(rows[frame["func"].cat.codes.to_numpy()], dtype="Int64")
    frame["failed"] = (frame["status"] != SUCCESS).to_numpy()
    frame.attrs["garbled"] = {name: int(parsed[f"bad_{name}"].sum()) for name in _UNITS
                              if f"bad_{name}" in parsed.columns and parsed[f"bad_{name}"].any()}
    return frame, summary


def parse_bytes(data: bytes, source: str = "log") -> tuple[pd.DataFrame, dict | None]:
    """Parse a trace log: one row per invocation, and the summary line's counts (or None).

    Lines without TS and Runtime (the Summary, a cut line) are left out; :func:`damage`
    counts them. A value that is neither a number nor ``N/A`` is counted per column in
    ``frame.attrs["garbled"]``, also for :func:`damage`.
    """
    return _parse(data, data, source)


def parse_text(text: str, source: str = "log") -> tuple[pd.DataFrame, dict | None]:
    return parse_bytes(text.encode("utf-8"), source)


def parse(path: Path | str) -> tuple[pd.DataFrame, dict | None]:
    """:func:`parse_bytes` of a file, which polars reads itself (memory-mapped, no copy of it here)."""
    path = Path(path)
    with path.open("rb") as handle:
        if not os.fstat(handle.fileno()).st_size:
            return parse_bytes(b"", str(path))
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _parse(path, data, str(path))


#: Every status the original's client prints (its workload.ResponseStatus).
STATUSES = ("SUCCESS", "FAIL_DISPATCH", "FAIL_TIMEOUT", "FAIL_CONNECT", "FAIL_SEND", "FAIL_RECV", "INVALID_TARGET")
# The ID is whatever stands between "ID: " and the first comma: no assumption about its namespace.
_ID = re.compile(rb"ID: ([^,\n]*),")
_STAMPS = ("grecv_req_ms", "gsend_req_ms", "grecv_res_ms", "crecv_res_ms", "delay_ms")
_SUCCESS_NEEDS = ("gsend_req_ms", "grecv_res_ms", "crecv_res_ms", "delay_ms")


def damage(data: bytes, frame: pd.DataFrame, summary: dict | None) -> list[str]:
    """What makes a parsed trace log untrustworthy (empty: every line checks out)."""
    found = []
    if data and not data.endswith(b"\n"):
        found.append("it ends in the middle of a line (cut)")
    lines = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    summaries = data.count(b"\nSummary:") + data.startswith(b"Summary:")
    if summaries != 1:
        found.append(f"{summaries} Summary lines; a log ends with exactly one")
    elif summary is None:
        found.append("its Summary line is garbled")
    elif not data[-4096:].rstrip(b"\n").rsplit(b"\n", 1)[-1].startswith(b"Summary:"):
        found.append("its Summary line is not the last line")
    body_lines = lines - summaries
    if len(frame) != body_lines:
        found.append(f"{body_lines - len(frame)} of {body_lines} lines are not invocation lines")
    if summary is not None:
        success = int((frame["status"] == SUCCESS).sum()) if len(frame) else 0
        if summary["total"] != len(frame) or summary["success"] != success or \
                summary["fail"] != len(frame) - success:
            found.append(f"its Summary line says total {summary['total']} success {summary['success']} fail "
                         f"{summary['fail']}, its lines hold {len(frame)} with {success} successes")
    if not len(frame):
        return found
    statuses = frame["status"].cat.categories if frame["status"].dtype == "category" else frame["status"].unique()
    unknown = sorted(set(map(str, statuses)) - set(STATUSES))
    if unknown:
        found.append(f"unknown status {', '.join(unknown[:3])} (known: {', '.join(STATUSES)})")
    garbled = frame.attrs.get("garbled", {})
    for column in ("ts_s", "csend_s", "runtime_ms", "requested_ms", *_STAMPS):
        if garbled.get(column):
            found.append(f"{garbled[column]} line(s) have a non-number in {column}")
        values = frame[column]
        bad = values.notna() & ~(np.isfinite(values) & (values >= 0))
        if bad.any():
            found.append(f"{int(bad.sum())} line(s) have a negative or infinite {column}")
    ok = (frame["status"] == SUCCESS).to_numpy()
    for column in _SUCCESS_NEEDS:
        missing = ok & frame[column].isna().to_numpy()
        if missing.any():
            found.append(f"{int(missing.sum())} SUCCESS line(s) have {column} N/A")
    ids = _ID.findall(data)
    if len(ids) != len(frame):
        found.append(f"{len(frame) - len(ids)} invocation line(s) have no ID")
    duplicated = len(ids) - len(set(ids))
    if duplicated:
        found.append(f"{duplicated} invocation ID(s) appear more than once (duplicated lines)")
    return found


def load_checked(path: Path | str, meta: dict | None = None, sealed: bool = True) -> tuple[pd.DataFrame, dict]:
    """A trace log's invocations, after every check; raises :class:`~kdlib.store.DamagedFile` naming why.

    ``sealed`` (a log kdlib wrote): its content must match the checksum in ``meta`` and its
    lines the invocation count ``meta`` recorded, which is the schedule's. An original
    artifact's log (``sealed=False``) has no metadata: its lines are checked alone.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise store.DamagedFile(f"{path}: unreadable ({error.strerror})") from None
    if sealed:
        store.check_seal(str(path), data, meta)
    try:
        frame, summary = parse_bytes(data, str(path))
    except LogFormatError as error:
        raise store.DamagedFile(str(error)) from None
    found = damage(data, frame, summary)
    if sealed and meta is not None:
        expected = {"its metadata": meta.get("invocations"),
                    "its schedule": (meta.get("schedule") or {}).get("invocations")}
        for where, count in expected.items():
            if count is not None and count != len(frame):
                found.append(f"{len(frame)} invocation lines, {where} says {count}")
    if found:
        raise store.DamagedFile(f"{path}: " + "; ".join(found[:4]))
    return frame, summary


__all__ = ["format_line", "summary_line", "parse", "parse_text", "LogFormatError", "ID_NAMESPACE", "damage",
           "load_checked", "STATUSES",
           "SUCCESS", "FAIL_DISPATCH"]
