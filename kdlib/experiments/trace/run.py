"""Run the trace replay for every system that can run here: cluster, Deployments, files, resume.

Per system, ``results/trace/<run_id>/`` gets ``meta.<key>.json`` (parameters, trace
subset, lateness, scale writes, provenance) and then ``trace.<key>.log`` (the original's
format), both written atomically, the log last: a log means the system finished, and a
finished system is skipped when the run is repeated (resume). Ctrl-C stops the replay,
deletes the workload, stops the cluster, and leaves no log for the interrupted system.

The store's integrity model holds here as for the microbenchmarks: the metadata seals
the log (its sha256 and invocation count) and records the parameters it was made with;
a damaged log is redone on resume and shown as "damaged: why", and a run id is resumed
only with the parameters it was made with. The cluster is watched during the replay: a
dead component is named within seconds, its logs are saved, and the run stops.

Long because the run's record (run.json's attempts), its resume rules (identity
parameters, sealed logs) and the replay's life on a cluster share the same files and
states; splitting the record from the replay is a candidate (issue 21).
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

from ... import machine, provenance, store
from ...cluster.registry import open_cluster
from ...errors import ComponentError, ConfigError, TraceDataError
from ...k8s import objects
from ...k8s.calls import parallel as _parallel
from ...k8s.lifecycle import clean, ensure_namespace, wait_reconciled
from ..runner import end_state, suite_lock, with_killed
from .files import load_run, log_path, logs_dir, meta_path, read_meta, read_system, run_dir
from . import data, logs, schedule as schedules
from .params import SYSTEMS, TraceParams, plan, with_fetched_kd
from .replay import Replay, lateness_summary

log = logging.getLogger(__name__)
NAMESPACE = "kdlib-trace"
LATENESS_GOAL_P99_MS = 5.0
#: What each system's autoscaler configuration is, in the run's metadata (``System.kpa``).
KPA_CONFIGS = {
    "dirigent": "the original's autoscaler.dirigent.yaml (its kd+ run's), with this run's target_concurrency; "
                "scales from zero at once when an invocation arrives",
    "knative": "the original's autoscaler.knative.yaml as shipped (its k8s+ run's): no target set, so the "
               "code's default 100; async: scales from zero only on the next 2-s tick",
}


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


def deployment_name(row: int) -> str:
    return f"trace-{row}"


def load_trace(params: TraceParams) -> data.Trace:
    """The trace subset of ``params``, checked for a replay (before any schedule is built)."""
    trace = data.load(params.trace or data.SHIPPED)
    trace = data.subset(trace, params.functions, params.minutes, params.seed, rule=params.subset)
    problems = data.replay_problems(trace, params.original_extra)
    if problems:
        raise TraceDataError("invalid trace parameters:\n  " + "\n  ".join(problems))
    return trace


#: Parameters that do not change what a finished system's files hold: resuming with other
#: values is allowed (another selection of systems, another ssh inventory file naming the same
#: hosts, reference CSVs shown beside the measured systems, how long to wait for a quiet machine:
#: each system's metadata records the machine it got; the analysis's filter).
_NOT_IDENTITY = ("systems", "inventory", "dirigent_csv", "kn_k8s_csv", "quiet_idle_pct", "quiet_window_s",
                 "quiet_max_wait_s", "knative_timeout_ms")
#: Parameters that may be given on a resume when the run was made without them (Kd's binaries
#: add Dr/Kd+; the systems measured without them do not depend on them).
_MAY_BE_ADDED = ("kd_bin_dir",)


def parameters(params: TraceParams) -> dict[str, Any]:
    """``params`` as recorded (JSON values); the shipped trace is named, not its path on this machine."""
    recorded = json.loads(json.dumps(params.model_dump(), default=str))
    shipped = params.trace is None or Path(params.trace).resolve() == data.SHIPPED.resolve()
    recorded["trace"] = "azure_500 (shipped)" if shipped else str(params.trace)
    return recorded


def _same_trace(recorded: Any, given: Any) -> bool:
    def name(value: Any) -> str:
        text = str(value)
        return "azure_500 (shipped)" if text.rstrip("/").endswith("data/azure_500") else text
    return name(recorded) == name(given)


def parameter_differences(recorded: dict[str, Any], params: TraceParams) -> list[str]:
    """"name: recorded → given" for every identity parameter ``params`` changes (keys an
    older record lacks are not compared)."""
    given = parameters(params)
    found = []
    for name, value in given.items():
        if name in _NOT_IDENTITY or name not in recorded or (name in _MAY_BE_ADDED and recorded[name] is None):
            continue
        same = _same_trace(recorded[name], value) if name == "trace" else recorded[name] == value
        if not same:
            found.append(f"{name}: {recorded[name]!r} → {value!r}")
    return found


def check_resume(params: TraceParams, root: Path | None = None) -> None:
    """Refuse to resume a run id with other parameters than it was made with (before provisioning):
    its files would be relabelled with parameters they were not made with."""
    directory = run_dir(params.run_id, root)
    records = []
    if (directory / "run.json").is_file():
        try:
            records.append(("run.json", load_run(params.run_id, root).get("parameters") or {}))
        except ValueError:
            pass  # an unreadable record is rewritten; the systems' own metadata still speak
    for system in SYSTEMS:
        meta = read_meta(directory, system)
        if meta is not None and log_path(directory, system).is_file():
            records.append((meta_path(directory, system).name, meta.get("parameters") or {}))
    for where, recorded in records:
        differences = parameter_differences(recorded, params)
        if differences:
            raise ConfigError(f"run {params.run_id!r} was made with other parameters ({where}): "
                              + "; ".join(differences) + ". Resume it with its own parameters, or choose "
                              "a new run_id for these")


def check_schedule(params: TraceParams, summary: dict, root: Path | None = None) -> None:
    """Refuse to resume systems replayed with other invocations than this run would send (a
    schedule drawn by another generator, or with other counts): they would be set beside each
    other as if they had met the same workload."""
    directory = run_dir(params.run_id, root)
    for system in SYSTEMS:
        meta = read_meta(directory, system)
        if meta is None or not log_path(directory, system).is_file():
            continue
        differences = [f"{name}: {meta[name]!r} → {value!r}" for name, value in
                       (("schedule_generator", schedules.GENERATOR), ("schedule", summary))
                       if name in meta and meta[name] != value]
        if differences:
            raise ConfigError(f"run {params.run_id!r}: {system} was replayed with another schedule "
                              f"({'; '.join(differences)}). Choose a new run_id to replay it with this one")


def finished(directory: Path, system: str) -> bool:
    """True when ``system`` has a finished, undamaged log; a damaged one is redone."""
    if not log_path(directory, system).is_file():
        return False
    try:
        read_system(directory, system)
    except store.DamagedFile as error:
        log.warning("trace: redoing %s: %s", system, error)
        return False
    return True


def _run_record(params: TraceParams, outcome: TraceOutcome, attempt: dict[str, Any], trace: data.Trace | None,
                summary: dict, root: Path | None) -> None:
    """Write ``run.json``: this attempt's outcome on top, and every attempt at the run id
    (the first one's wall time and provenance survive a resume)."""
    path = run_dir(params.run_id, root) / "run.json"
    try:
        previous = with_killed(json.loads(path.read_text()))  # a killed attempt stays recorded as killed
        attempts = [a for a in previous.get("attempts", []) if a.get("id") != attempt["id"]]
    except (OSError, ValueError, AttributeError):
        attempts = []
    attempt.update(measured=list(outcome.measured), resumed=list(outcome.resumed), failed=dict(outcome.failed),
                   seconds=round(outcome.seconds, 1))
    record = {"run_id": params.run_id, "state": attempt["state"],
              "parameters": parameters(params),
              "trace": trace.describe() if trace else None, "schedule": summary,
              "measured": outcome.measured, "resumed": outcome.resumed, "failed": outcome.failed,
              "not_measured": outcome.not_measured, "reference": outcome.reference,
              "seconds": round(outcome.seconds, 1), "provenance": provenance.collect(),
              "attempts": [*attempts, attempt]}
    store.write_atomic(path, json.dumps(record, indent=2, default=str) + "\n")


def run_trace(params: TraceParams, *, root: Path | None = None, progress: bool = True) -> TraceOutcome:
    """Replay the trace for every system of ``params`` that runs here and has not finished."""
    named = store.root(root) / "reference.txt"  # the book's reference run, whatever its id
    if params.time_scale != 1 and named.is_file() and named.read_text().strip() == params.run_id:
        raise ConfigError(f"time_scale: {params.time_scale} is refused for {params.run_id!r}, the reference run "
                          f"that {named} names: a reference run replays the trace at the original's pace (1)")
    params, kd_note = with_fetched_kd(params)  # kd fetch's binaries when kd_bin_dir is unset
    if kd_note:
        log.info("trace: %s", kd_note)
    to_run, skipped, reference = plan(params)
    check_resume(params, root)
    trace = load_trace(params)  # reader errors surface here, before any cluster starts
    schedule = schedules.build(trace, seed=params.seed, original_extra=params.original_extra)
    summary = schedules.summary(schedule)
    check_schedule(params, summary, root)
    outcome = TraceOutcome(params.run_id, not_measured=skipped, reference=reference)
    directory = run_dir(params.run_id, root)
    started = time.monotonic()
    attempt: dict[str, Any] = {"id": f"{os.getpid()}@{provenance.now()}", "pid": os.getpid(),
                               "state": "running", "started_at": provenance.now()}
    with suite_lock(params.run_id):
        try:
            if directory.is_dir():
                store.remove_partials(directory)
            _run_record(params, outcome, attempt, trace, summary, root)
            for system in to_run:
                if finished(directory, system):
                    outcome.resumed.append(system)
                    continue
                try:
                    _run_system(params, system, trace, schedule, directory, progress)
                    outcome.measured.append(system)
                except ComponentError as error:  # a broken cluster: no later system could be trusted
                    outcome.failed[system] = f"{type(error).__name__}: {error}".splitlines()[0]
                    log.error("trace: %s failed: %s", system, outcome.failed[system])
                    raise
                except Exception as error:  # one system failing does not stop the others
                    outcome.failed[system] = f"{type(error).__name__}: {error}".splitlines()[0]
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
        "run_id": params.run_id, "system": system, "parameters": parameters(params), "kd": spec.kd,
        "trace": trace.describe(),
        "schedule": schedules.summary(schedule), "schedule_generator": schedules.GENERATOR,
        "original_extra": params.original_extra, "seed": params.seed,
        "kpa": asdict(kpa), "kpa_config": KPA_CONFIGS[spec.kpa], "dispatch_timeout_s": timeout_s,
        "warmup_minutes": params.warmup_minutes, "nodes": params.nodes, "namespace": NAMESPACE,
        "time_scale": params.time_scale,  # trace seconds per second: 1 is the original's pace
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
                _parallel(lambda n: apps.create_namespaced_deployment(NAMESPACE, objects.deployment(
                    n, NAMESPACE, replicas=0, simulated_sandbox=True, kd=bool(spec.kd), on_kwok=True)), names)
                wait_reconciled(api, NAMESPACE, len(names), timeout=300)
                bar.set_description_str(f"{system}: replaying")

                def advance(t: float) -> None:
                    bar.update(max(0, int(t) - bar.n))

                replay = Replay(api, NAMESPACE, names, schedule, kpa, timeout_s, params.drain_s,
                                f"{objects.WORKLOAD_LABEL}=true", advance, health=cluster.check,
                                time_scale=params.time_scale)
                bar.set_description_str(f"{system}: waiting until the machine is quiet")
                before = machine.wait(params.quiet)
                if not before["quiet"]:
                    log.warning("trace: %s: the machine was not quiet after %.0f s (CPU idle %.0f %%, load %.1f); "
                                "replaying anyway, marked busy", system, before["waited_s"],
                                before["cpu_idle_pct"], before["load_1m"])
                bar.set_description_str(f"{system}: replaying")
                meta["start_time"] = provenance.now()
                with machine.Sampler() as during:
                    result = replay.run()
                meta["end_time"] = provenance.now()
                meta["machine"] = machine.record(before, during.summary())
                bar.set_description_str(f"{system}: scaling every Deployment to 0")
                meta["scale_down"] = scale_to_zero(api, names)
            except Exception:
                _name_dead_component(cluster, directory, system)
                raise
            finally:
                bar.set_description_str(f"{system}: cleaning up")
                try:
                    if _healthy(cluster):  # a broken cluster is stopped, not cleaned through its API
                        clean(api, NAMESPACE, timeout=300, settle_s=0)
                except Exception:
                    _name_dead_component(cluster, directory, system)
                    raise
                finally:
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
    text = format_log(result, schedule, names)
    meta["sha256"] = {"log": store.sha256(text)}  # the seal: checked on every read, resume and book build
    store.write_atomic(meta_path(directory, system), json.dumps(meta, indent=2, default=str) + "\n")
    store.write_atomic(log_path(directory, system), text)


def _healthy(cluster: Any) -> bool:
    try:
        cluster.check()
    except ComponentError:
        return False
    return True


def _name_dead_component(cluster: Any, directory: Path, system: str) -> None:
    """After a failure: when a component died, save the components' logs and raise
    :class:`ComponentError` naming it instead of its symptom (an API timeout)."""
    try:
        cluster.check()
    except ComponentError:
        cluster.save_logs(logs_dir(directory, system))
        raise


def scale_to_zero(api: client.ApiClient, names: list[str], timeout: float = 300) -> dict[str, Any]:
    """Scale every Deployment to 0 and wait until none of their pods is left (what the run leaves)."""
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    started = time.monotonic()
    _parallel(lambda n: apps.patch_namespaced_deployment_scale(n, NAMESPACE, {"spec": {"replicas": 0}}), names)
    selector = f"{objects.WORKLOAD_LABEL}=true"
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
