"""What binds, read off a run: the client limit's share of k8s+'s time, what binds without it,
and what real pods cost this machine.

Every sentence is computed from the run's files: the e2e summary, the per-object timelines
and each run's ``usage`` (:mod:`kdlib.experiments.usage`: CPU seconds per component, the
machine's busy time, the API server's writes), and each is checked against a bound from first
principles, as the k8s+ findings are checked against the client limit:

* without the limit, no pod is Ready before the simulated 200 ms after its binding, and the
  API server and etcd cannot take more writes per second than the cores give them at the CPU
  cost per write measured in the same run;
* real pods cannot all start before their CPU work (containerd, kubelet, shims, the pods
  themselves: the ``real nodes`` CPU seconds) is done on this machine's cores.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ...cluster.settings import SIMULATED_READY_AFTER_MS, client_limits
from ...baselines import UNTHROTTLED, display
from .spec import BENCHES

THROTTLED = "k8s+"
#: The machine counts as saturated above this share of its cores' time (busy, all processes).
SATURATED = 0.85
#: Other processes' share of the cores above which the run's verdict is clouded by them.
SHARED = 0.25
GAPS = (  # (from stage, to stage, who spends the time between them)
    ("scale_returned", "rs_updated", "the Deployment controller updating the ReplicaSet"),
    ("rs_updated", "created", "the ReplicaSet controller creating the pod"),
    ("created", "scheduled", "the scheduler binding the pod"),
    ("scheduled", "ready", f"the path to Ready (kwok's simulated {SIMULATED_READY_AFTER_MS} ms and its status write)"),
)
COMPONENT_NAMES = {"kube-apiserver": "the API server", "etcd": "etcd",
                   "kube-controller-manager": "the controller manager", "kube-scheduler": "the scheduler",
                   "kwok": "kwok", "real nodes": "the real nodes", "harness": "the harness (kdlib's watches)"}
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
REAL_SPANS = (("scheduled", "sandbox", "bound → sandbox started"),
              ("sandbox", "started", "sandbox → container started"),
              ("started", "ready", "container started → Ready"))


def _median_usage(metas: dict[Any, dict[str, Any]], bench: str, baseline: str, scale: int) -> dict[str, Any] | None:
    """The run's usage at (bench, baseline, scale): the repeats' medians, key by key."""
    found = [m["usage"] for k, m in metas.items() if (k.bench, k.baseline, k.scale) == (bench, baseline, scale)
             and isinstance(m.get("usage"), dict)]
    if not found:
        return None
    cpu = pd.DataFrame([u.get("cpu_s") or {} for u in found]).median().to_dict()
    writes = [u["api_writes"] for u in found if u.get("api_writes") is not None]
    busy = [u["machine_busy_s"] for u in found if u.get("machine_busy_s") is not None]
    return {"seconds": float(pd.Series([u["seconds"] for u in found]).median()), "cores": found[0]["cores"],
            "cpu_s": {k: float(v) for k, v in cpu.items()},
            "machine_busy_s": float(pd.Series(busy).median()) if busy else None,
            "load_average": found[-1].get("load_average"),
            "api_writes": pd.DataFrame(writes).fillna(0).median().to_dict() if writes else None,
            "repeats": len(found)}


def _rate(timeline: pd.DataFrame, stage: str, last: int) -> float:
    """Objects per second reaching ``stage`` from the first to the ``last``-th of them, the
    median over repeats."""
    rates = []
    for _, run in timeline[timeline["stage"] == stage].groupby("repeat"):
        times = run["t"].dropna().sort_values().to_numpy()
        if len(times) >= last >= 6 and times[last - 1] > times[0]:
            rates.append((last - 1) / (times[last - 1] - times[0]))
    return float(pd.Series(rates).median()) if rates else float("nan")


def _stage_gaps(stages: pd.Series) -> list[tuple[str, float]]:
    """(who, seconds) between the p90 object's successive stages, for the stages measured."""
    present = set(stages.index.astype(str))
    gaps, previous = [], "scale_returned" if "scale_returned" in present else None
    for start, end, who in GAPS:
        if end not in present:
            continue
        begin = float(stages[previous]) if previous else 0.0
        if start == "rs_updated" and "rs_updated" not in present:
            who = "the controllers creating the pod"
        gaps.append((who, float(stages[end]) - begin))
        previous = end
    return gaps


def _saturation(use: dict[str, Any], ours: float, machine: float | None) -> tuple[bool, float]:
    """Whether the cores were saturated during the run, and other processes' share of them."""
    busy = machine if machine is not None else ours
    return busy >= SATURATED, max(0.0, busy - ours)


def _shared_machine(others: float) -> str | None:
    """The sentence that says other processes took enough of the cores to cloud the verdict."""
    if others < SHARED:
        return None
    return (f"other processes on this shared machine took **{100 * others:.0f} %** of the cores during the run, so "
            "its times are inflated by that load and what binds cannot be told apart from it (run again on a "
            "quiet machine to tell)")


def _cpu_sentence(use: dict[str, Any]) -> tuple[str, float, float | None]:
    """The CPU sentence of a run, the cluster's share of the cores, the machine's."""
    seconds, cores = use["seconds"], use["cores"] or 1
    capacity = seconds * cores
    cpu = {k: v for k, v in use["cpu_s"].items() if v == v}
    ours = sum(cpu.values())
    top = sorted(cpu.items(), key=lambda kv: -kv[1])
    parts = ", ".join(f"{COMPONENT_NAMES.get(k, k)} {v:.1f}" for k, v in top)
    sentence = (f"in the {seconds:.1f} s until the last pod was Ready, on {cores} cores ({capacity:.0f} CPU-s), "
                f"kdlib's processes used {ours:.1f} CPU-s ({parts}), {100 * ours / capacity:.0f} % of the cores")
    machine = None
    if use.get("machine_busy_s") is not None:
        machine = use["machine_busy_s"] / capacity
        others = max(0.0, use["machine_busy_s"] - ours)
        sentence += (f"; the machine as a whole was {100 * machine:.0f} % busy (other processes: "
                     f"{others:.1f} CPU-s)")
    return sentence, ours / capacity, machine


def unthrottled_lines(report: Any, bench: str) -> list[str]:
    """The control experiment's findings for one figure: the share of k8s+'s time the limit
    accounts for, and what binds once it is gone (markdown list items)."""
    spec = BENCHES[bench]
    summary = report.summary[report.summary["bench"] == bench]
    p90 = summary.set_index(["baseline", "scale"])["p90_s"]
    own = sorted(int(s) for b, s in p90.index if b == UNTHROTTLED)
    if not own:
        return []
    both = [s for s in own if (THROTTLED, s) in p90.index]
    label = display(UNTHROTTLED)
    limits = "; ".join(f"{c}: {v}" for c, v in client_limits(True).items())
    lines = []
    if both:
        shares = "; ".join(f"{spec.symbol} = {s}: {p90[(THROTTLED, s)]:.2f} s → {p90[(UNTHROTTLED, s)]:.2f} s, "
                           + _limit_share(p90[(THROTTLED, s)], p90[(UNTHROTTLED, s)]) for s in both)
        lines.append(f"- **{label}** is {THROTTLED} with the client limits raised ({limits}). The share of "
                     f"{THROTTLED}'s p90 time that the limit accounts for, ({THROTTLED} − unthrottled) ÷ "
                     f"{THROTTLED}: {shares}.")
    scale = own[-1]
    pods = spec.workload(scale).pods
    p90_pods = (90 * pods) // 100 + 1  # the p90 pod: the original's index (90*N)/100, 0-based
    run = report.timelines[(report.timelines["bench"] == bench) & (report.timelines["baseline"] == UNTHROTTLED)
                           & (report.timelines["scale"] == scale)]
    parts = [f"**{label}**, {spec.symbol} = {scale} ({pods} pods): "
             f"p90 Ready after **{p90[(UNTHROTTLED, scale)]:.2f} s**"]
    created, bound = _rate(run, "created", p90_pods), _rate(run, "scheduled", p90_pods)
    if created == created:
        parts.append(f"from the first pod to the p90 pod, pods were created at **{created:.0f} pods/s** and bound at "
                     f"**{bound:.0f} pods/s** (the client limit of {THROTTLED} allows 20/s)")
    stages = report.stages[(report.stages["bench"] == bench) & (report.stages["baseline"] == UNTHROTTLED)
                           & (report.stages["scale"] == scale)].set_index("stage")["p90_s"]
    gaps = _stage_gaps(stages)
    if gaps:
        who, longest = max(gaps, key=lambda g: g[1])
        parts.append("the p90 object's stages took " + ", ".join(f"{w} {1000 * s:.0f} ms" for w, s in gaps)
                     + f"; the longest is {who} ({_share(longest, p90[(UNTHROTTLED, scale)])} of the time)")
    use = _median_usage(report.metas, bench, UNTHROTTLED, scale)
    if use is None:
        parts.append("this run recorded no CPU accounting, so what binds cannot be told from it")
        return [*lines, "- " + "; ".join(parts) + "."]
    if not any(k in use["cpu_s"] for k in CONTROL_PLANE):
        backend = report.suite["parameters"]["backend"]
        parts.append(f"the control plane ran where this machine cannot read its CPU ({backend} backend), "
                     "so what binds cannot be told from this run")
        return [*lines, "- " + "; ".join(parts) + "."]
    sentence, ours, machine = _cpu_sentence(use)
    parts.append(sentence)
    parts += _write_bound(use, pods)
    saturated, others = _saturation(use, ours, machine)
    cpu = {k: v for k, v in use["cpu_s"].items() if v == v}
    top, top_s = max(cpu.items(), key=lambda kv: kv[1]) if cpu else ("?", 0.0)
    floor = sum(cpu.values()) / (use["cores"] or 1)
    largest = (f"kdlib's largest consumer is {COMPONENT_NAMES.get(top, top)} "
               f"({_share(top_s, sum(cpu.values()))} of its CPU)")
    if saturated and _shared_machine(others):
        parts.append(f"{_shared_machine(others)}; {largest}")
    elif saturated:
        parts.append(f"so **the machine's cores bind** without the limit (no run can beat its own CPU work on "
                     f"{use['cores']} cores, {floor:.1f} s here, against {use['seconds']:.1f} s measured); {largest}")
    else:
        parts.append(f"the cores were not saturated ({100 * (ours + others):.0f} % busy; the CPU work alone needs "
                     f"{floor:.1f} s of the {use['seconds']:.1f} s), so what binds is latency, not throughput: "
                     + (f"mostly {max(gaps, key=lambda g: g[1])[0]}" if gaps else "the stages above"))
    if use["repeats"] == 1:
        parts.append("a single run: a check, not a result")
    return [*lines, "- " + "; ".join(parts) + "."]


def _limit_share(throttled: float, unthrottled: float) -> str:
    """The share of the throttled time the limit accounts for; none when the unthrottled run was slower."""
    if unthrottled > throttled:
        return f"**none** (the unthrottled run was {unthrottled - throttled:.2f} s slower)"
    return f"**{100 * (throttled - unthrottled) / throttled:.0f} %**"


def _write_bound(use: dict[str, Any], pods: int) -> list[str]:
    """The API server's write throughput measured in the run, and the pod rate it bounds."""
    writes = use.get("api_writes")
    if not writes:
        return []
    total = sum(writes.values())
    if total <= 0:
        return []
    per_pod = total / pods
    top = ", ".join(f"{k} {v:.0f}" for k, v in sorted(writes.items(), key=lambda kv: -kv[1])[:4])
    found = [f"the API server took {total:.0f} writes ({per_pod:.1f} per pod; {top}), "
             f"{total / use['seconds']:.0f} writes/s"]
    path = sum(use["cpu_s"].get(k, 0.0) for k in ("kube-apiserver", "etcd"))
    if path > 0:
        per_write = path / total
        bound = (use["cores"] or 1) / per_write / per_pod
        # Like with like: the bound counts every write of a pod, so it is set against the rate at
        # which pods got through all of them (to Ready), not against creation, which runs ahead.
        through = pods / use["seconds"] if use["seconds"] > 0 else float("nan")
        check = (f", measured {through:.0f} pods/s from the scale-up to the last pod Ready "
                 f"({_share(through, bound)} of that bound)" if through == through else "")
        found.append(f"at {1000 * per_write:.1f} ms of API-server and etcd CPU per write, the write path alone "
                     f"could take at most {bound:.0f} pods/s on these cores{check}")
    return found


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f} %" if whole > 0 else "n/a"


def _pod_spans(run: pd.DataFrame) -> dict[str, float]:
    """The median over pods of each real-pod span, the median over repeats (seconds)."""
    found: dict[str, list[float]] = {}
    for _, one in run[run["kind"] == "Pod"].groupby("repeat"):
        wide = one.pivot_table(index="object", columns="stage", values="t", aggfunc="min")
        for start, end, name in REAL_SPANS:
            if {start, end} <= set(wide.columns):
                spans = (wide[end] - wide[start]).dropna()
                if len(spans):
                    found.setdefault(name, []).append(float(spans.median()))
    return {name: float(pd.Series(v).median()) for name, v in found.items()}


def real_node_lines(report: Any, bench: str) -> list[str]:
    """Why the real-node ``k8s`` bars are what they are, from the run's data (markdown items)."""
    spec = BENCHES[bench]
    summary = report.summary[(report.summary["bench"] == bench) & (report.summary["baseline"] == "k8s")]
    if summary.empty:
        return []
    scale = int(summary["scale"].max())
    p90 = float(summary.set_index("scale").loc[scale, "p90_s"])
    pods = spec.workload(scale).pods
    metas = [m for k, m in report.metas.items() if (k.bench, k.baseline, k.scale) == (bench, "k8s", scale)]
    kubelets = max((int(m.get("real_nodes") or 0) for m in metas), default=0)
    parts = [f"**k8s** (real kubelets and containers), {spec.symbol} = {scale}: p90 Ready after **{p90:.2f} s**"]
    if kubelets:
        parts.append(f"{kubelets} real node(s) on this one machine, so **{pods / kubelets:.0f} pods per kubelet** "
                     f"(the original ran its real pods on 20 machines: {pods / 20:.0f} per kubelet, each kubelet "
                     "with a machine's cores of its own)")
    run = report.timelines[(report.timelines["bench"] == bench) & (report.timelines["baseline"] == "k8s")
                           & (report.timelines["scale"] == scale)]
    spans = _pod_spans(run)
    if spans:
        parts.append("per pod, the medians: " + ", ".join(f"{name} {s:.2f} s" for name, s in spans.items())
                     + f" (the simulated sandbox of k8s+: {SIMULATED_READY_AFTER_MS / 1000:.1f} s in all)")
    use = _median_usage(report.metas, bench, "k8s", scale)
    if use is None or "real nodes" not in use["cpu_s"]:
        parts.append("this run recorded no CPU accounting of the real nodes, so the cost of a pod start "
                     "cannot be told from it")
        return ["- " + "; ".join(parts) + "."]
    sentence, ours, machine = _cpu_sentence(use)
    parts.append(sentence)
    if use.get("load_average"):
        parts.append(f"load average at the end {use['load_average'][0]:.1f} (1 min)")
    per_pod = use["cpu_s"]["real nodes"] / pods
    cores = use["cores"] or 1
    bound = pods * per_pod / cores
    p90_bound = ((90 * pods) // 100 + 1) * per_pod / cores  # the p90 pod: the original's index, as report.findings
    parts.append(f"one pod start cost **{per_pod:.2f} CPU-s** here (containerd, kubelet, shims and the pod: "
                 f"sandbox and container), so {pods} pods need at least {pods} × {per_pod:.2f} ÷ {cores} cores = "
                 f"**{bound:.1f} s** of this machine (for the p90 pod, {p90_bound:.1f} s), against {p90:.2f} s "
                 f"measured ({_share(p90_bound, p90)} of it)")
    saturated, others = _saturation(use, ours, machine)
    if saturated and _shared_machine(others):
        parts.append(_shared_machine(others))
    elif saturated:
        parts.append("the cores were saturated, so **k8s here measures this machine's CPU**, not the control plane; "
                     "on the original's 20 machines the same starts spread over 20 machines' cores")
    else:
        parts.append(f"the cores were {100 * (ours + others):.0f} % busy, so the CPU work accounts for part of the "
                     "time; the rest is the runtime's latency per pod")
    return ["- " + "; ".join(parts) + "."]
