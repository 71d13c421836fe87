"""Run the trace replay for every system that can run here: cluster, Deployments, files, resume.

Per system, ``results/trace/<run_id>/`` gets ``meta.<key>.json`` (parameters, trace
subset, lateness, scale writes, provenance) and then ``trace.<key>.log`` (the original's
format), both written atomically, the log last: a log means the system finished, and a
finished system is skipped when the run is repeated (resume). Ctrl-C stops the replay,
deletes the workload, stops the cluster, and leaves no log for the interrupted system.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from kubernetes import client
from tqdm import tqdm

from ... import provenance, store
from ...cluster.registry import open_cluster
from ...k8s import objects as workloads
from ...k8s.calls import parallel as _parallel
from ...k8s.lifecycle import clean, ensure_namespace, wait_reconciled
from ..runner import end_state, suite_lock
from . import data, logs, schedule as schedules
from .params import FILE_KEYS, SYSTEMS, TraceParams, plan, with_fetched_kd
from .replay import Replay, lateness_summary

log = logging.getLogger("kdlib.trace.run")
BENCH = "trace"
NAMESPACE = "kdlib-trace"
LATENESS_GOAL_P99_MS = 5.0


@dataclass
class TraceOutcome:
    run_id: str
    measured: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    not_measured: dict[str, str] = field(default_factory=dict)
    reference: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def __repr__(self) -> str:
        return (f"<TraceOutcome {self.run_id}: measured {self.measured}, resumed {self.resumed}, "
                f"failed {list(self.failed)}, reference {self.reference}, not measured {list(self.not_measured)}, "
                f"{self.seconds:.0f} s>")


def run_dir(run_id: str, root: Path | None = None) -> Path:
    return store.run_dir(BENCH, run_id, root)


def log_path(directory: Path, system: str) -> Path:
    return directory / f"trace.{FILE_KEYS[system]}.log"


def meta_path(directory: Path, system: str) -> Path:
    return directory / f"meta.{FILE_KEYS[system]}.json"


def deployment_name(row: int) -> str:
    return f"trace-{row}"


def load_trace(params: TraceParams) -> data.Trace:
    trace = data.load(params.trace or data.SHIPPED)
    return data.subset(trace, params.functions, params.minutes, params.seed, rule=params.subset)


def _run_record(params: TraceParams, outcome: TraceOutcome, attempt: dict[str, Any], trace: data.Trace | None,
                summary: dict, root: Path | None) -> None:
    """Write ``run.json``: this attempt's outcome on top, and every attempt at the run id
    (the first one's wall time and provenance survive a resume)."""
    path = run_dir(params.run_id, root) / "run.json"
    try:
        attempts = [a for a in json.loads(path.read_text()).get("attempts", []) if a.get("id") != attempt["id"]]
    except (OSError, ValueError):
        attempts = []
    attempt.update(measured=list(outcome.measured), resumed=list(outcome.resumed), failed=dict(outcome.failed),
                   seconds=round(outcome.seconds, 1))
    record = {"run_id": params.run_id, "state": attempt["state"],
              "parameters": {**asdict(params), "trace": str(params.trace or data.SHIPPED)},
              "trace": trace.describe() if trace else None, "schedule": summary,
              "measured": outcome.measured, "resumed": outcome.resumed, "failed": outcome.failed,
              "not_measured": outcome.not_measured, "reference": outcome.reference,
              "seconds": round(outcome.seconds, 1), "provenance": provenance.collect(),
              "attempts": [*attempts, attempt]}
    store.write_atomic(path, json.dumps(record, indent=2, default=str) + "\n")


def run_trace(params: TraceParams, *, root: Path | None = None, progress: bool = True) -> TraceOutcome:
    """Replay the trace for every system of ``params`` that runs here and has not finished."""
    params.validate()
    params, kd_note = with_fetched_kd(params)  # kd fetch's binaries when kd_bin_dir is unset
    if kd_note:
        log.info("trace: %s", kd_note)
    to_run, skipped, reference = plan(params)
    trace = load_trace(params)  # reader errors surface here, before any cluster starts
    schedule = schedules.build(trace, seed=params.seed, original_extra=params.original_extra)
    summary = schedules.summary(schedule)
    outcome = TraceOutcome(params.run_id, not_measured=skipped, reference=reference)
    directory = run_dir(params.run_id, root)
    started = time.monotonic()
    attempt: dict[str, Any] = {"id": f"{os.getpid()}@{provenance.now()}", "state": "running",
                               "started_at": provenance.now()}
    with suite_lock(params.run_id):
        try:
            if directory.is_dir():
                store.remove_partials(directory)
            _run_record(params, outcome, attempt, trace, summary, root)
            for system in to_run:
                if log_path(directory, system).is_file():
                    outcome.resumed.append(system)
                    continue
                try:
                    _run_system(params, system, trace, schedule, directory, progress)
                    outcome.measured.append(system)
                except Exception as error:  # one system failing does not stop the others
                    outcome.failed[system] = f"{type(error).__name__}: {error}"
                    log.error("trace: %s failed: %s", system, error)
        finally:
            outcome.seconds = time.monotonic() - started
            state, reason = end_state(sys.exc_info()[1])  # finished, failed (why) or interrupted (signal)
            attempt.update(state=state, reason=reason, ended_at=provenance.now())
            _run_record(params, outcome, attempt, trace, summary, root)
    return outcome


def _run_system(params: TraceParams, system: str, trace: data.Trace, schedule, directory: Path,
                progress: bool) -> None:
    spec = SYSTEMS[system]
    kpa = params.kpa_for(system).validate()
    timeout_s = params.timeout_for(system)
    names = [deployment_name(r) for r in trace.rows]
    meta: dict[str, Any] = {
        "run_id": params.run_id, "system": system, "kd": spec.kd, "trace": trace.describe(),
        "schedule": schedules.summary(schedule), "schedule_generator": schedules.GENERATOR,
        "original_extra": params.original_extra, "seed": params.seed,
        "kpa": asdict(kpa), "kpa_mode": params.kpa_mode, "dispatch_timeout_s": timeout_s,
        "warmup_minutes": params.warmup_minutes, "nodes": params.nodes, "namespace": NAMESPACE,
        "id_namespace": logs.ID_NAMESPACE,
        "backend": f"{params.backend} (kwok nodes, simulated sandbox: Ready 200 ms after binding; fake backend: "
                   "an invocation holds its pod for its requested runtime)",
    }
    bar = tqdm(total=int(np.ceil(schedule["t_s"].max())) if len(schedule) else 0, disable=not progress,
               file=sys.stderr, unit="s", desc=f"{system}: starting the cluster", dynamic_ncols=True)
    try:
        with open_cluster(params.backend, nodes=params.nodes, kd=bool(spec.kd), bin_dir=params.kd_bin_dir,
                          inventory=params.inventory) as cluster:
            info = cluster.info
            meta["versions"] = info.versions
            api = info.api_client()
            try:
                bar.set_description_str(f"{system}: creating {len(names)} Deployments at 0 replicas")
                ensure_namespace(api, NAMESPACE)
                apps = client.AppsV1Api(api)
                _parallel(lambda n: apps.create_namespaced_deployment(NAMESPACE, workloads.deployment(
                    n, NAMESPACE, replicas=0, simulated_sandbox=True, kd=bool(spec.kd), on_kwok=True)), names)
                wait_reconciled(api, NAMESPACE, len(names), timeout=300)
                bar.set_description_str(f"{system}: replaying")

                def advance(t: float) -> None:
                    bar.update(max(0, int(t) - bar.n))

                replay = Replay(api, NAMESPACE, names, schedule, kpa, timeout_s, params.drain_s,
                                f"{workloads.WORKLOAD_LABEL}=true", advance)
                meta["start_time"] = provenance.now()
                result = replay.run()
                meta["end_time"] = provenance.now()
                bar.set_description_str(f"{system}: scaling every Deployment to 0")
                meta["scale_down"] = scale_to_zero(api, names)
            finally:
                bar.set_description_str(f"{system}: cleaning up")
                clean(api, NAMESPACE, timeout=300, settle_s=0)
                api.close()
    finally:
        bar.close()
    late = lateness_summary(result.lateness_s)
    writes = np.array([w[0] for w in result.scale_writes])
    statuses = [inv.status for inv in result.invocations]
    meta.update({
        "invocations": len(result.invocations),
        "success": sum(1 for s in statuses if s == logs.SUCCESS),
        "failed": sum(1 for s in statuses if s != logs.SUCCESS),
        "lateness": late,
        "clock_kept_up": bool(late["p99_ms"] <= LATENESS_GOAL_P99_MS),
        "scale_writes": len(writes), "scale_errors": result.scale_errors[:20],
        "scale_writes_per_s": round(len(writes) / max(1e-9, result.wall_s), 2),
        "functions_scaled_up": int(sum(1 for m in result.max_ready if m > 0)),
        "peak_ready_pods": int(sum(result.max_ready)),
        "replay_wall_s": round(result.wall_s, 1), "replay_cpu_s": round(result.cpu_s, 1),
        "replay_cpu_percent": round(100 * result.cpu_s / max(1e-9, result.wall_s), 1),
        "provenance": provenance.collect(),
    })
    if not meta["clock_kept_up"]:
        log.warning("trace: %s: the replay did not keep up with the schedule: lateness p99 %.1f ms > %.0f ms",
                    system, late["p99_ms"], LATENESS_GOAL_P99_MS)
    store.write_atomic(meta_path(directory, system), json.dumps(meta, indent=2, default=str) + "\n")
    store.write_atomic(log_path(directory, system), format_log(result, schedule, names))


def scale_to_zero(api: client.ApiClient, names: list[str], timeout: float = 300) -> dict[str, Any]:
    """Scale every Deployment to 0 and wait until none of their pods is left (what the run leaves)."""
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    started = time.monotonic()
    _parallel(lambda n: apps.patch_namespaced_deployment_scale(n, NAMESPACE, {"spec": {"replicas": 0}}), names)
    selector = f"{workloads.WORKLOAD_LABEL}=true"
    while True:
        left = len(core.list_namespaced_pod(NAMESPACE, label_selector=selector).items)
        if not left or time.monotonic() - started > timeout:
            return {"pods_left": left, "seconds": round(time.monotonic() - started, 1)}
        time.sleep(0.5)


def format_log(result, schedule, names: list[str]) -> str:
    """The replay's log; IDs and Func name the original's namespace (see :mod:`.logs`)."""
    ids = schedules.invocation_ids(schedule, logs.ID_NAMESPACE).to_numpy()
    lines = [logs.format_line(inv, logs.ID_NAMESPACE, names[inv.function], ids[inv.seq], result.start)
             for inv in result.invocations]
    lines.append(logs.summary_line(inv.status for inv in result.invocations))
    return "".join(lines)


def load_meta(run_id: str, system: str, root: Path | None = None) -> dict[str, Any]:
    return json.loads(meta_path(run_dir(run_id, root), system).read_text())


def load_run(run_id: str, root: Path | None = None) -> dict[str, Any]:
    return json.loads((run_dir(run_id, root) / "run.json").read_text())
