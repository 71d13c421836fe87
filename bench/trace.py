"""Benchmark of the trace replay (issue 9: Figures 12–13).

    python bench/trace.py [--lines 1000000] [--functions 100 --minutes 5 | --run-id ID --root results]

1. Parse speed: writes a trace log of ``--lines`` lines in the original's format (random
   invocations, 5 % failed) and times kdlib's vectorised parser against a line-by-line
   regular-expression parser (the original plot script's method: ``re.match`` per line,
   one dict per line, then a DataFrame), interleaved ``--repeats`` times in one process
   (the best times' ratio, the median of the rounds' ratios and the load average are
   reported: on a shared machine both slow down alike). Goal: ≥ 10× faster.
2. The loop's work at one instant (no cluster): at each minute's start every active
   function sends its first invocation at once, and the functions' KPA ticks (every 2 s
   from their first invocation) and the 1 s bucket collection fall on the same instant.
   Times that work with the replay's own Gateway and Deciders (warmed with a full stable
   window): it is what bounds the lateness of a send that falls behind it.
3. Replay: either reads a finished run's metadata (``--run-id``, ``--root``), or replays
   ``--functions`` functions for ``--minutes`` minutes (Dr/K8s+) on the local cluster into
   ``bench/out/``; reports the clock's lateness p50/p99, the replay process's CPU use
   (gateway, KPA, watch and scalers: one process) and the scale writes per second.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kdlib.experiments.trace import data, files as trace_files, logs, params as trace_params, run as trace_run  # noqa: E402
from kdlib.experiments.trace import schedule as trace_schedule  # noqa: E402
from kdlib.experiments.trace.gateway import FAIL_DISPATCH, SUCCESS, Gateway, Invocation  # noqa: E402
from kdlib.experiments.trace.kpa import Decider, KPAConfig  # noqa: E402

# The original's plot script's pattern (experiments/trace/plot.py), applied line by line.
ORIGINAL_PATTERN = re.compile(r"ID: default/trace-(\d+)-(\d+)/(\d+),.*TS: ([\d.]+)s,.*Delay: \+([\d.]+)ms,"
                              r".*Runtime: ([\d.]+)/(\d+)ms")


def write_log(path: Path, lines: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    with path.open("w") as out:
        for i in range(lines):
            f, t = rng.randrange(500), rng.random() * 1800
            inv = Invocation(i, f, rng.randrange(1, 1000), t, client_send=t + 0.001, gateway_recv=t + 0.00101)
            if rng.random() < 0.05:
                inv.status, inv.client_recv = FAIL_DISPATCH, t + 30
            else:
                inv.gateway_send = t + 0.002 + rng.random()
                inv.gateway_resp = inv.client_recv = inv.gateway_send + inv.runtime_ms / 1000 + 0.0001
                inv.status = SUCCESS
            out.write(logs.format_line(inv, "default", f"trace-{f}", f"default/trace-{f}-{int(t // 60)}/{i}", 0.0))
        out.write(f"Summary: total {lines} success 0 fail 0\n")


def parse_line_by_line(path: Path) -> pd.DataFrame:
    rows = []
    with path.open() as handle:
        for line in handle:
            match = ORIGINAL_PATTERN.match(line.strip())
            if match:
                rows.append({"ID": int(match[1]), "minute": int(match[2]), "invocationID": int(match[3]),
                             "TS": float(match[4]), "Delay": float(match[5]), "ActualRuntime": float(match[6]),
                             "RequestedRuntime": int(match[7])})
    return pd.DataFrame(rows)


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - started)
    return best, value


def _timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def bench_parse(lines: int, repeats: int) -> dict:
    """Both parsers on the same file, interleaved ``repeats`` times in this process, so that a
    busy machine slows both alike; the ratio per round, its best and median."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.log"
        write_log(path, lines)
        load_before = Path("/proc/loadavg").read_text().split()[:3]
        rounds = []
        for _ in range(repeats):
            vec_s, (frame, _) = _timed(lambda: logs.parse(path))
            re_s, baseline = _timed(lambda: parse_line_by_line(path))
            rounds.append((vec_s, re_s))
        load_after = Path("/proc/loadavg").read_text().split()[:3]
    ok = frame[~frame["failed"]]
    assert len(ok) == len(baseline) and (ok["delay_ms"].to_numpy() == baseline["Delay"].to_numpy()).all()
    vec_best, re_best = min(v for v, _ in rounds), min(r for _, r in rounds)
    return {"lines": lines, "rounds": repeats, "vectorised_s": round(vec_best, 3), "line_by_line_regex_s": round(re_best, 3),
            "speed_up": round(re_best / vec_best, 1),
            "speed_up_median": round(statistics.median(r / v for v, r in rounds), 1),
            "per_round_s": [[round(v, 3), round(r, 3)] for v, r in rounds],
            "loadavg_before": load_before, "loadavg_after": load_after, "goal": ">= 10x"}


def bench_loop(functions: int = 500, repeats: int = 5) -> dict:
    plan = trace_schedule.build(data.subset(data.load(), functions, 30))
    at_minute = plan[plan["t_s"] % 60 == 0].groupby("t_s").size()
    burst = int(at_minute.max())
    config = KPAConfig.dirigent()

    def warmed() -> list[Decider]:
        deciders = [Decider(config) for _ in range(functions)]
        for d in deciders:
            for second in range(60):
                d.concurrency.arrive(second)
                d.collect(second + 1.0)
        return deciders

    deciders = warmed()
    collect_s, _ = best_of(lambda: [d.collect(61.0) for d in deciders], repeats)
    decide_s, _ = best_of(lambda: [d.decide(61.5, 1) for d in deciders[:burst]], repeats)

    def send_burst() -> None:
        gateway = Gateway(functions, 30.0, time.monotonic, lambda delay, fn: None,
                          lambda f, now: deciders[f].concurrency.arrive(now))
        for f in range(burst):
            gateway.submit(Invocation(f, f, 100, 60.0))

    send_s, _ = best_of(send_burst, repeats)
    return {"functions": functions, "largest_minute_burst": burst,
            "collect_all_ms": round(collect_s * 1e3, 2), "decide_burst_ms": round(decide_s * 1e3, 2),
            "send_burst_ms": round(send_s * 1e3, 2),
            "per_decide_us": round(decide_s / burst * 1e6, 1), "per_collect_us": round(collect_s / functions * 1e6, 1),
            "worst_instant_ms": round((collect_s + decide_s + send_s) * 1e3, 2)}


def bench_replay(args: argparse.Namespace) -> dict:
    if args.run_id:
        run_id, root = args.run_id, Path(args.root)
    else:
        run_id, root = f"bench-trace-{time.strftime('%Y%m%d-%H%M%S')}", REPO / "bench" / "out"
        params = trace_params.TraceParams(run_id=run_id, functions=args.functions, minutes=args.minutes,
                                          warmup_minutes=0, systems=("Dr/K8s+",), nodes=args.nodes)
        trace_run.run_trace(params, root=root)
    meta = trace_files.load_meta(run_id, "Dr/K8s+", root)
    return {"run_id": run_id, "functions": meta["trace"]["functions"], "minutes": meta["trace"]["minutes"],
            "invocations": meta["invocations"], "mean_per_s": meta["schedule"]["mean_per_s"],
            "peak_per_s": meta["schedule"]["peak_per_s"], "lateness": meta["lateness"],
            "clock_kept_up": meta["clock_kept_up"], "replay_cpu_percent": meta["replay_cpu_percent"],
            "scale_writes": meta["scale_writes"], "scale_writes_per_s": meta["scale_writes_per_s"],
            "failed": meta["failed"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of the parse benchmark")
    parser.add_argument("--functions", type=int, default=100)
    parser.add_argument("--minutes", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--run-id", help="report a finished run instead of replaying")
    parser.add_argument("--root", default=str(REPO / "results"))
    parser.add_argument("--skip-replay", action="store_true")
    args = parser.parse_args()
    report = {"parse": bench_parse(args.lines, args.repeats), "loop": bench_loop()}
    print(json.dumps(report, indent=2), flush=True)
    if not args.skip_replay:
        report["replay"] = bench_replay(args)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
