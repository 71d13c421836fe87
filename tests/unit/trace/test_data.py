"""The trace reader: the shipped sample, bad inputs, subsets."""

from __future__ import annotations

import shutil

import pytest

from kdlib.experiments.trace import data
from kdlib.experiments.trace.data import TraceDataError

HEADER = "HashOwner,HashApp,HashFunction,Trigger"
DUR_HEADER = ("HashOwner,HashApp,HashFunction,Average,Count,Minimum,Maximum,percentile_Average_0,"
              "percentile_Average_1,percentile_Average_25,percentile_Average_50,percentile_Average_75,"
              "percentile_Average_99,percentile_Average_100")


def write(tmp_path, invocations, durations=None):
    (tmp_path / "invocations.csv").write_text(invocations)
    if durations is not None:
        (tmp_path / "durations.csv").write_text(durations)
    return tmp_path


def good_durations(*functions):
    return DUR_HEADER + "\n" + "".join(f"o,a,{f},10,5,1,100,1,2,5,10,20,90,100\n" for f in functions)


def test_shipped_sample_verifies_and_matches_its_readme():
    trace = data.load()
    assert len(trace.functions) == 500 and trace.minutes[0] == 480
    first30 = data.subset(trace, minutes=30)
    assert first30.invocations == 171_558  # the README's count for the first 30 minutes
    assert int((first30.counts.sum(axis=1) > 0).sum()) == 359


def test_changed_file_fails_the_checksum(tmp_path):
    for name in ("README.md", "invocations.csv", "durations.csv"):
        shutil.copy(data.SHIPPED / name, tmp_path / name)
    with open(tmp_path / "durations.csv", "a") as handle:
        handle.write("\n")
    with pytest.raises(TraceDataError, match="sha256"):
        data.load(tmp_path)


def test_minute_columns_need_not_start_at_one(tmp_path):
    write(tmp_path, f"{HEADER},7,8,9\no,a,f1,http,1,0,2\no,a,f2,http,0,0,3\n", good_durations("f1", "f2"))
    trace = data.load(tmp_path)
    assert trace.minutes == (7, 8, 9) and trace.counts.tolist() == [[1, 0, 2], [0, 0, 3]]


@pytest.mark.parametrize("invocations, durations, message", [
    (None, good_durations("f1"), "invocations.csv is missing"),
    (f"{HEADER},1\no,a,f1,http,1\n", None, "durations.csv is missing"),
    ("HashOwner,HashApp,Trigger,1\no,a,http,1\n", good_durations("f1"), "lacks the column.*HashFunction"),
    (f"{HEADER},1,2\no,a,f1,http,1,many\n", good_durations("f1"), "non-numeric count 'many'"),
    (f"{HEADER}\no,a,f1,http\n", good_durations("f1"), "no minute columns"),
    (f"{HEADER},1\no,a,f1,http,1\n", good_durations("other"), "no row for 1 function"),
    (f"{HEADER},1\no,a,f1,http,1\n", DUR_HEADER.replace(",percentile_Average_99", "") + "\n", "lacks the column"),
])
def test_bad_inputs_say_what_is_wrong(tmp_path, invocations, durations, message):
    if invocations is not None:
        (tmp_path / "invocations.csv").write_text(invocations)
    if durations is not None:
        (tmp_path / "durations.csv").write_text(durations)
    with pytest.raises(TraceDataError, match=message):
        data.load(tmp_path)


def test_missing_directory(tmp_path):
    with pytest.raises(TraceDataError, match="does not exist"):
        data.load(tmp_path / "nope")


def test_subset_is_seeded_keeps_order_and_refuses_too_many_minutes():
    trace = data.load()
    a, b = data.subset(trace, 20, 3, seed=1), data.subset(trace, 20, 3, seed=1)
    assert a.rows == b.rows and list(a.rows) == sorted(a.rows) and len(a.rows) == 20
    assert data.subset(trace, 20, 3, seed=2).rows != a.rows
    assert a.counts.shape == (20, 3) and a.describe()["subset"]["seed"] == 1
    with pytest.raises(TraceDataError, match="only 480"):
        data.subset(trace, minutes=481)
    with pytest.raises(TraceDataError, match="only 500"):
        data.subset(trace, functions=501)
