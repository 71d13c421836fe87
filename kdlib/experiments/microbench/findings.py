"""What a microbenchmark run's numbers say, in words computed from them: each figure's findings
(rates, the client limit's bound, which limit binds, the stages at the p90 pod), its verdict on
the paper's claim, and what the run cost. :mod:`.report` pastes them into the book."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd

from ...baselines import BASELINES, KD_WITHOUT_BINARIES, display
from ...cluster.settings import SIMULATED_READY_AFTER_MS
from .. import verdict
from . import bottleneck, comparison
from .spec import BENCHES

if TYPE_CHECKING:
    from .report import MicrobenchReport

#: The controller manager's client limit (kube-controller-manager defaults, kept by the artifact).
CONTROLLER_MANAGER_QPS, CONTROLLER_MANAGER_BURST = 20, 30


def _rate(timeline: pd.DataFrame, stage: str, first: int, last: int) -> float:
    """Objects per second reaching ``stage`` between the ``first``-th and the ``last``-th of
    them (1-based), the median over the run's repeats (each repeat's clock starts at 0)."""
    rates = []
    for _, run in timeline[timeline["stage"] == stage].groupby("repeat"):
        times = run["t"].dropna().sort_values().to_numpy()
        if len(times) >= last and last - first >= 5 and times[last - 1] > times[first - 1]:
            rates.append((last - first) / (times[last - 1] - times[first - 1]))
    return float(pd.Series(rates).median()) if rates else float("nan")


def findings(report: MicrobenchReport, bench: str) -> str:
    """What this run's data show for one figure, computed from it (markdown)."""
    spec = BENCHES[bench]
    summary = report.summary[report.summary["bench"] == bench]
    if summary.empty:
        return f"No run of `{bench}` finished in this run, so there is nothing to read off it."
    lines = []
    for baseline in sorted(set(summary["baseline"]), key=list(spec.baselines).index):
        if BASELINES[baseline].unthrottled:  # no client limit to check it against: bottleneck.unthrottled_lines
            continue
        rows = summary[summary["baseline"] == baseline].sort_values("scale")
        largest = rows.iloc[-1]
        scale, p90 = int(largest["scale"]), float(largest["p90_s"])
        pods = spec.workload(scale).pods
        # Every controller of the controller manager has a client of its own (it runs with
        # --use-service-account-credentials), each limited to QPS 20, burst 30. The p90 pod (the
        # original's index (90*N)/100, 0-based) needs (90*N)/100 + 1 creations by the ReplicaSet controller. In Figure 10 each function costs
        # two writes on each of two clients: the Deployment controller's (the ReplicaSet's scale,
        # the Deployment's status) and the ReplicaSet controller's (the pod, the ReplicaSet's status).
        p90_pods = (90 * pods) // 100 + 1
        writes_per_pod, writer = ((2, "each of the Deployment and ReplicaSet controllers")
                                  if bench == "scale-funcs" else (1, "the ReplicaSet controller"))
        writes = p90_pods * writes_per_pod
        bound = max(0.0, (writes - CONTROLLER_MANAGER_BURST) / CONTROLLER_MANAGER_QPS)
        run = report.timelines[(report.timelines["baseline"] == baseline) & (report.timelines["scale"] == scale)]
        rate = _rate(run, "created", CONTROLLER_MANAGER_BURST + 1, p90_pods)
        stage = report.stages[(report.stages["bench"] == bench) & (report.stages["baseline"] == baseline)
                              & (report.stages["scale"] == scale)].set_index("stage")["p90_s"]
        parts = [f"**{baseline}**, {spec.symbol} = {scale} ({pods} pods): p90 Ready after **{p90:.2f} s**"]
        if rate == rate and writes_per_pod == 1:  # not NaN; Figure 10's pods come in bunches (stages below)
            parts.append(f"after the first {CONTROLLER_MANAGER_BURST}, pods were created at **{rate:.1f} pods/s** "
                         f"(the client limit allows {CONTROLLER_MANAGER_QPS}/s)")
        if writes <= CONTROLLER_MANAGER_BURST:
            parts.append(f"the {writes} write(s) of {writer} up to the p90 pod fit in its client's burst "
                         f"({CONTROLLER_MANAGER_BURST}), so the rate limit does not bind at this scale")
        else:
            binds = "so that limit is what binds" if bound >= 0.5 * p90 else "so something else binds as well"
            parts.append(f"the client of {writer} (QPS {CONTROLLER_MANAGER_QPS}, burst {CONTROLLER_MANAGER_BURST}) "
                         f"needs at least **{bound:.1f} s** for the {writes} writes up to the p90 pod "
                         f"({writes_per_pod} per pod), {_share(bound, p90)} of the measured time, {binds}")
        if {"created", "scheduled", "ready"} <= set(stage.index.astype(str)):
            scheduling = float(stage["scheduled"] - stage["created"])
            sandbox = float(stage["ready"] - stage["scheduled"])
            after = (f"the simulated sandbox: {SIMULATED_READY_AFTER_MS} ms" if BASELINES[baseline].simulated
                     else "a real sandbox and container on real nodes sharing this machine's cores")
            if "rs_updated" in set(stage.index.astype(str)) and writes_per_pod == 2:
                parts.append(f"the p90 ReplicaSet was scaled by {float(stage['rs_updated']):.2f} s and the p90 pod "
                             f"created by {float(stage['created']):.2f} s")
            parts.append(f"at the p90, binding came {scheduling * 1000:.0f} ms after creation (the scheduler) and "
                         f"Ready {sandbox * 1000:.0f} ms after binding ({after})")
        repeats = int(rows["repeats"].min())
        if repeats == 1:
            parts.append("each point is a single run (no spread)")
        else:
            parts.append(f"each point is the median of {repeats} runs, the bars show their range")
        lines.append("- " + "; ".join(parts) + ".")
    lines += bottleneck.unthrottled_lines(report, bench)  # the control experiment: what binds without the limit
    lines += bottleneck.real_node_lines(report, bench)  # why the real-node bars are what they are
    busy = _busy_runs(report.machine, bench)
    if busy:
        lines.append("- **Measured on a busy machine:** " + "; ".join(
            f"{baseline} at {scale} ({n} of {total} run(s))" for (baseline, scale), (n, total) in busy.items())
            + ". No quiet machine came within the bound before these runs, so their numbers include other "
              "work's load (every run's load is on the reproducibility page).")
    return "\n".join(lines)  # what the numbers say of the paper's claim is the verdict's (figure_verdict)


def _busy_runs(machine: pd.DataFrame, bench: str) -> dict[tuple[str, int], tuple[int, int]]:
    """(baseline, scale) → (runs measured on a busy machine, runs with a machine record), where any was busy."""
    runs = machine[(machine["experiment"] == bench) & machine["busy"].notna()]
    found = {}
    for (baseline, scale), group in runs.groupby(["system", "scale"], sort=False):
        n = int(group["busy"].astype(bool).sum())
        if n:
            found[(baseline, int(scale))] = (n, len(group))
    return found


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f} %" if whole > 0 else "n/a"


def figure_verdict(report: MicrobenchReport, bench: str) -> verdict.Verdict:
    """The figure's verdict on the paper's claim, from the Kubedirect-vs-vanilla ratios of the run
    (any system the run measured is listed; only a Kubedirect system and its vanilla twin test it)."""
    spec = BENCHES[bench]
    summary = report.summary[report.summary["bench"] == bench]
    parts = []
    for baseline in dict.fromkeys(summary["baseline"]):
        rows = summary[summary["baseline"] == baseline].sort_values("scale")
        repeats = sorted({int(r) for r in rows["repeats"]})
        each = (f"{repeats[0]} run{'s' if repeats[0] != 1 else ''} each" if len(repeats) == 1
                else f"{repeats[0]}–{repeats[-1]} runs each")
        parts.append(f"{display(baseline)} at {spec.symbol} = {', '.join(str(int(s)) for s in rows['scale'])} ({each})")
    missing = [s for s in report.not_measured(bench)["system"] if " at " not in s]
    measured = "; ".join(parts) or "nothing: no run of this figure finished"
    if missing:
        measured += f"; not measured: {', '.join(missing)}"
    ratios = [(f"{r.vanilla} ÷ {r.kd} at {spec.symbol} = {r.scale}", float(r.ratio))
              for r in comparison.ratios(report.summary, bench).itertuples()]
    return verdict.from_ratios(spec.figure, measured + ".", ratios, _why_untested(report, bench))


def _why_untested(report: MicrobenchReport, bench: str) -> str:
    """Why the run has no Kubedirect-vs-vanilla pair for this figure."""
    kd_systems = [b for b in BENCHES[bench].baselines if BASELINES[b].kd]
    measured = set(report.summary.loc[report.summary["bench"] == bench, "baseline"])
    reasons = report.suite.get("not_measured", {})
    if not measured & set(kd_systems):
        asked = [b for b in kd_systems if b in report.suite["parameters"]["baselines"]]
        if not asked:
            return f"this run did not include a Kubedirect system ({', '.join(kd_systems)})"
        if all(reasons.get(b) == KD_WITHOUT_BINARIES for b in asked):
            return (f"Kubedirect's binaries were not available to this run, so no Kubedirect system "
                    f"({', '.join(asked)}) was measured to compare with vanilla Kubernetes")
        return "no Kubedirect run of this figure finished (" + "; ".join(
            f"{b}: {reasons.get(b, 'see the runs not measured below')}" for b in asked) + ")"
    return ("the run measured Kubedirect but not its vanilla twin at the same scales "
            f"({', '.join(sorted(measured))})")


def run_cost(report: MicrobenchReport) -> str:
    """How many runs the run made and how long they took, from its own record (markdown)."""
    attempts = report.suite.get("attempts", [])
    measured = [o for a in attempts for o in a.get("outcomes", []) if o.get("status") == "measured"]
    if not measured:
        return f"Run {report.run_id} has no measured run in its record."
    busy = [a for a in attempts if any(o.get("status") == "measured" for o in a.get("outcomes", []))]
    wall = sum((pd.Timestamp(a["ended_at"]) - pd.Timestamp(a["started_at"])).total_seconds()
               for a in busy if a.get("ended_at") and a.get("started_at"))
    points = {(o["bench"], o["baseline"], o["scale"]) for o in measured}
    first = [o for o in measured if o.get("repeat", 0) == 0]
    own = sum(sum(o.get("phases_s", {}).values()) for o in first)
    repeats = report.suite["parameters"].get("repeats", 1)
    text = (f"Run {report.run_id} (the run this book shows) made **{len(measured)} runs** "
            f"({len(points)} points of the figures × {repeats} repeat{'s' if repeats != 1 else ''}) in "
            f"**{wall / 60:.1f} min** of wall time ({len(busy)} attempt{'s' if len(busy) != 1 else ''} that "
            f"measured). Its first repeat alone, the {len(first)} runs that `repeats 1` (the default) makes "
            f"with the same systems and scales, took **{own / 60:.1f} min** of the runs' own time (set-up, "
            f"settle, measurement and clean-up of each run), plus starting and stopping the clusters.")
    nodes = report.summary[(report.summary["bench"] == "scale-nodes") & (report.summary["baseline"] == "k8s+")]
    if len(nodes):
        largest = nodes.sort_values("scale").iloc[-1]
        pods = BENCHES["scale-nodes"].workload(int(largest["scale"])).pods
        rate = math.ceil(0.9 * pods) / float(largest["p90_s"])
        artifact = BENCHES["scale-nodes"].workload(2000).pods
        text += (f" At the rate of its largest Figure 11 run of k8s+ ({pods} pods, {rate:.1f} pods/s up to the "
                 f"p90 pod), the original artifact's M = 2000 ({artifact:,} pods) would take about "
                 f"**{math.ceil(0.9 * artifact) / rate / 60:.0f} min** for that one run.")
    return text
