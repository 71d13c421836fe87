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


def test_subset_takes_the_first_functions_by_default_or_seeded_random_ones():
    trace = data.load()
    first = data.subset(trace, 20, 3)
    assert first.rows == tuple(range(20)) and first.functions == trace.functions[:20]
    assert first.describe()["subset"] == {"functions": 20, "of_functions": 500, "rule": "first", "minutes": 3,
                                          "of_minutes": 480, "seed": None}
    assert first.memory.equals(trace.memory.iloc[:20]) and first.durations.equals(trace.durations.iloc[:20])
    a, b = data.subset(trace, 20, 3, seed=1, rule="random"), data.subset(trace, 20, 3, seed=1, rule="random")
    assert a.rows == b.rows and list(a.rows) == sorted(a.rows) and len(a.rows) == 20 and a.rows != first.rows
    assert data.subset(trace, 20, 3, seed=2, rule="random").rows != a.rows
    assert a.counts.shape == (20, 3) and a.describe()["subset"]["seed"] == 1
    assert a.describe()["subset"]["rule"] == "random"
    assert data.subset(trace, minutes=3).describe()["subset"]["rule"] == "all"
    with pytest.raises(TraceDataError, match="only 480"):
        data.subset(trace, minutes=481)
    with pytest.raises(TraceDataError, match="only 500"):
        data.subset(trace, functions=501)
    with pytest.raises(TraceDataError, match="subset rule"):
        data.subset(trace, 20, rule="last")


MEM_HEADER = ("HashFunction,HashOwner,HashApp,SampleCount,AverageAllocatedMb,AverageAllocatedMb_pct1,"
              "AverageAllocatedMb_pct5,AverageAllocatedMb_pct25,AverageAllocatedMb_pct50,AverageAllocatedMb_pct75,"
              "AverageAllocatedMb_pct95,AverageAllocatedMb_pct99,AverageAllocatedMb_pct100")


def test_memory_is_read_per_function_when_there_is_a_memory_file(tmp_path):
    write(tmp_path, f"{HEADER},1\no,a,f1,http,1\no,a,f2,http,2\n", good_durations("f1", "f2"))
    assert data.load(tmp_path).memory is None
    (tmp_path / "memory.csv").write_text(f"{MEM_HEADER}\nf2,o,a,9,50,1,2,3,4,5,6,7,8\nf1,o,a,9,50,8,7,6,5,4,3,2,1\n")
    assert data.load(tmp_path).memory.iloc[:, 0].tolist() == [8, 1]  # in invocations.csv's order
    (tmp_path / "memory.csv").write_text(f"{MEM_HEADER}\nf2,o,a,9,50,1,2,3,4,5,6,7,8\n")
    with pytest.raises(TraceDataError, match="memory.csv has no row for 1 function"):
        data.load(tmp_path)
    (tmp_path / "memory.csv").write_text(f"{MEM_HEADER}\nf2,o,a,9,50,1,2,3,4,5,6,7,8\nf1,o,a,9,50,x,7,6,5,4,3,2,1\n")
    with pytest.raises(TraceDataError, match="non-numeric memory percentile"):
        data.load(tmp_path)
