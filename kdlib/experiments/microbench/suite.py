"""Run a matrix of microbenchmarks: one cluster per control plane, resume, progress, clean-up.

Only one suite runs per machine at a time (an exclusive lock, refused at once).
Between runs the workload is deleted and the suite waits until the cluster is quiet and
the real nodes have removed the previous run's containers; before each run it waits, up
to a bound, until the machine's CPUs are idle (:mod:`kdlib.machine`) and records the
machine's state before and during the run (``machine`` in the run's metadata).
A run that cannot be prepared or measured is recorded as failed and the matrix goes on;
a cluster that cannot be cleaned up, or whose component died, ends the suite (no further
run would be trustworthy), with the component logs saved beside the results.
Ctrl-C stops the run in progress, leaves no finished-looking file for it, and the
cluster's context manager stops every process.

Long because one run's life (quiet wait, prepare, measure, record, clean, settle) and the
matrix around it (clusters per control plane, resume, failures that end the suite) are one
sequence whose order is the point; the pieces that stand alone are elsewhere (measure,
timeline, files, runner).
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ... import cpu_history, machine, provenance, store
from ...cluster import registry
from ...cluster.base import Cluster
from ...cluster.binaries import ensure_binaries
from ...errors import ConfigError, ExperimentError, KdlibError, api_errors
from ...log import get as get_logger
from .. import usage
from ...baselines import BASELINES, CONTROL_PLANES, KD_WITHOUT_BINARIES
from ..runner import SuiteRecord, suite_lock
from . import files, measure
from .spec import BENCHES, RunItem, SuiteParams

log = get_logger(__name__)
#: How long the real nodes may take to remove a run's containers once its pods are deleted.
REAL_TEARDOWN_TIMEOUT_S = 120.0
#: How the log's total picks its pod, in words (the log's metric line and every run's metadata).
P90_RULE = "the n sorted Ready times at index (90*n)/100, integer division, 0-based, as the original"


@dataclass
class RunOutcome:
    item: RunItem
    status: str  # measured | resumed | failed
    total_s: float | None = None
    detail: str = ""
    phases: dict[str, float] = field(default_factory=dict)  # seconds spent: prepare, settle, measure, clean


@dataclass
class SuiteOutcome:
    run_id: str
    outcomes: list[RunOutcome] = field(default_factory=list)
    not_measured: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    quiet_wait_s: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    def __repr__(self) -> str:
        return (f"<SuiteOutcome {self.run_id}: {self.count('measured')} measured, {self.count('resumed')} resumed, "
                f"{self.count('failed')} failed, {len(self.not_measured)} baselines not measured, "
                f"{self.seconds:.0f} s>")


def _clusters(params: SuiteParams) -> dict[str, Cluster]:
    """The (not yet started) clusters of the suite, one per control plane its systems need
    (:attr:`Baseline.control_plane`): vanilla, vanilla with the client limits raised, and Kd
    when its binaries are given. Each gets real nodes only when one of its systems runs real
    containers (the unthrottled one when vanilla's does)."""
    found = {}
    for plane in CONTROL_PLANES:
        systems = [BASELINES[b] for b in params.baselines if BASELINES[b].control_plane == plane]
        kd = plane == "kd"
        if not systems or (kd and params.kd_bin_dir is None):
            continue
        real = any(not b.simulated for b in systems)
        if plane == "vanilla-unthrottled":  # beside the same idle kubelets as k8s+, so that only the limit differs
            real = any(not BASELINES[b].simulated and BASELINES[b].control_plane == "vanilla" for b in params.baselines)
        found[plane] = registry.open_cluster(params.backend, nodes=params.nodes, kd=kd,
                                             bin_dir=params.kd_bin_dir if kd else None,
                                             real_nodes=params.real_nodes if real else 0, inventory=params.inventory,
                                             unthrottled=plane == "vanilla-unthrottled")
    return found


def plan(params: SuiteParams, clusters: dict[str, Cluster] | None = None) -> tuple[list[RunItem], dict[str, str]]:
    """The runs to do, in order (scale-nodes last: it resizes the cluster), and the
    baselines that cannot run with the reason. A figure's runs cover only the systems
    that figure compares (:attr:`Bench.baselines`)."""
    clusters = clusters if clusters is not None else _clusters(params)
    skipped = {}
    items = []
    benches = sorted(params.benches, key=lambda b: (b == "scale-nodes", list(BENCHES).index(b)))
    for name in params.baselines:
        baseline = BASELINES[name]
        cluster = clusters.get(baseline.control_plane)
        reason = KD_WITHOUT_BINARIES if cluster is None else cluster.why_not(baseline)
        if reason:
            skipped[name] = reason
            continue
        for bench in benches:
            if name not in BENCHES[bench].baselines:
                continue
            for scale in params.scales_for(bench):
                for repeat in range(params.repeats):
                    items.append(RunItem(bench, name, scale, repeat))
    return items, skipped


def _key(item: RunItem) -> files.RunKey:
    return files.RunKey(item.bench, item.baseline, item.scale, item.repeat)


def _parameters(params: SuiteParams) -> dict[str, Any]:
    return {**params.model_dump(), "kd_bin_dir": str(params.kd_bin_dir) if params.kd_bin_dir else None,
            "inventory": str(params.inventory) if params.inventory else None,
            "scales": {b: list(params.scales_for(b)) for b in params.benches}}


def run_suite(params: SuiteParams, *, root: Path | None = None, progress: bool = True,
              clusters: dict[str, Cluster] | None = None) -> SuiteOutcome:
    """Run every (bench, baseline, scale, repeat) of ``params`` not already finished.
    ``clusters`` (by control plane: ``vanilla``, ``vanilla-unthrottled``, ``kd``) replaces the
    suite's own clusters; one already running is used as it is and left running."""
    if params.kd_bin_dir is not None and any(BASELINES[b].kd for b in params.baselines):
        ensure_binaries(params.kd_bin_dir)  # before the first vanilla run, not after them
    clusters = clusters if clusters is not None else _clusters(params)
    items, not_measured = plan(params, clusters)
    check_resume(params, items, root)
    outcome = SuiteOutcome(params.run_id, not_measured=not_measured)
    started = time.monotonic()
    with suite_lock(params.run_id):
        record = SuiteRecord(params.run_id, "microbench", root)
        record.begin(_parameters(params), not_measured)
        bar = tqdm(total=len(items), disable=not progress, unit="run", dynamic_ncols=True, mininterval=5)
        error: BaseException | None = None
        try:
            pending = _resume(params, items, outcome, root, bar)
            for plane in CONTROL_PLANES:
                group = [i for i in pending if BASELINES[i.baseline].control_plane == plane]
                if group:
                    _run_on_cluster(clusters[plane], plane, params, group, outcome, root, bar, record)
        except BaseException as caught:
            error = caught
            raise
        finally:
            bar.close()
            outcome.seconds = time.monotonic() - started
            record.attempt["outcomes"] = _outcome_rows(outcome)
            record.end(error, seconds=round(outcome.seconds, 1), quiet_wait_s=round(outcome.quiet_wait_s, 1),
                       finished_runs=_finished_on_disk(params, root))
    return outcome


def _identity(params: SuiteParams, item: RunItem) -> dict[str, Any]:
    """What a finished run's metadata must say for the run to be resumed under ``params``."""
    workload = BENCHES[item.bench].workload(item.scale)
    nodes = registry.kwok_nodes(params.backend, nodes=workload.nodes or params.nodes, inventory=params.inventory)
    return {"backend": params.backend, "nodes": nodes, "settle_s": params.settle_s,
            "timeout_s": params.timeout_for(workload)}


def check_resume(params: SuiteParams, items: list[RunItem], root: Path | None = None) -> None:
    """Refuse, before anything is provisioned, to resume finished runs made with other parameters:
    they would be shown under parameters they were not made with."""
    for item in items:
        directory, key = store.run_dir(item.bench, params.run_id, root), _key(item)
        if not files.log_path(directory, key).is_file():
            continue
        try:
            meta = json.loads(files.meta_path(directory, key).read_text())
        except (OSError, ValueError):
            continue  # damaged: redone anyway
        differences = [f"{name}: {meta[name]!r} → {value!r}" for name, value in _identity(params, item).items()
                       if name in meta and meta[name] != value]
        if differences:
            raise ConfigError(f"run {params.run_id!r}: {item.label} was made with other parameters: "
                              + "; ".join(differences) + ". Resume it with its own parameters, or choose a new "
                              "run_id for these")


def _resume(params: SuiteParams, items: list[RunItem], outcome: SuiteOutcome, root: Path | None,
            bar: tqdm) -> list[RunItem]:
    """The items still to run; finished ones (a log on disk) are recorded as resumed."""
    for directory in {store.run_dir(i.bench, params.run_id, root) for i in items}:
        store.remove_partials(directory)
    pending = []
    for item in items:
        directory = store.run_dir(item.bench, params.run_id, root)
        total_us = files.finished_total(directory, _key(item))
        if total_us is not None:
            outcome.outcomes.append(RunOutcome(item, "resumed", total_us / 1e6, "finished in an earlier run"))
            bar.update(1)
        else:
            pending.append(item)
    return pending


def _outcome_rows(outcome: SuiteOutcome) -> list[dict[str, Any]]:
    return [{**asdict(o.item), "status": o.status, "total_s": o.total_s, "detail": o.detail, "phases_s": o.phases}
            for o in outcome.outcomes]


def _finished_on_disk(params: SuiteParams, root: Path | None) -> dict[str, int]:
    """How many finished runs each bench has on disk: the record agrees with the files."""
    return {b: len(list(store.run_dir(b, params.run_id, root).glob("e2e.*.log"))) for b in params.benches}


def _run_on_cluster(cluster: Cluster, plane: str, params: SuiteParams, items: list[RunItem], outcome: SuiteOutcome,
                    root: Path | None, bar: tqdm, record: SuiteRecord) -> None:
    kind = {"kd": "Kd", "vanilla": "vanilla", "vanilla-unthrottled": "vanilla (unthrottled)"}[plane]
    given = cluster.running  # the caller's: it stays running, and is cleaned after each run
    if not given:
        _progress(bar, f"starting the {kind} {params.backend} cluster")
    with contextlib.nullcontext(cluster) if given else cluster:
        info = cluster.info
        clusters = record.data.setdefault("clusters", {})
        clusters[plane] = {"backend": info.backend, "kd": info.kd, "versions": info.versions,
                           "sources": info.sources, "client_limits": info.client_limits}
        record.write()
        try:
            with api_errors("talking to the cluster"):
                api = info.api_client()
            try:
                for index, item in enumerate(items):
                    wanted = BENCHES[item.bench].workload(item.scale).nodes or params.nodes
                    if wanted != len(cluster.info.node_names):
                        _progress(bar, f"{item.label}: resizing to {wanted} kwok nodes")
                        cluster.resize_kwok_nodes(wanted)
                    result = _run_one(cluster, api, params, item, outcome, root, bar,
                                      cluster_stops_next=not given and index == len(items) - 1)
                    outcome.outcomes.append(result)
                    record.attempt["outcomes"] = _outcome_rows(outcome)
                    record.write()
                    bar.update(1)
            finally:
                api.close()
        except BaseException:
            # Save the evidence before the cluster (and its logs) goes away.
            cluster.save_logs(store.root(root) / "suites" / f"{params.run_id}.logs" / plane)
            raise


def _progress(bar: tqdm, message: str) -> None:
    """Say what the suite does: on the bar, and as a log line (papermill's --log-output streams it)."""
    bar.set_description_str(message, refresh=False)
    log.info(message)


def _run_one(cluster: Cluster, api: Any, params: SuiteParams, item: RunItem, outcome: SuiteOutcome,
             root: Path | None, bar: tqdm, cluster_stops_next: bool = False) -> RunOutcome:
    """One run. A run that fails is recorded and the suite goes on; a cluster that cannot
    be cleaned up afterwards (or whose component died) ends the suite.

    The last run on a cluster is not cleaned up: the cluster stops next, which removes its
    objects, processes and containers with it (the clean-up of Figure 11's 2,500 pods took
    12-17 s per control plane, for nothing).
    """
    namespace = measure.namespace_for(item.bench)
    timeout = params.timeout_for(BENCHES[item.bench].workload(item.scale))
    real = bool(cluster.info.real_node_names)
    resident = frozenset(cluster.pod_process_starts()) if real else frozenset()  # e.g. kubeadm's kube-proxy
    try:
        result = _measure_one(cluster, api, params, item, root, bar)
    except KeyboardInterrupt:
        _progress(bar, f"{item.label}: interrupted; cleaning up")
        try:
            measure.clean(api, namespace, min(timeout, 30.0), 0.0)
        except Exception as clean_error:  # the interrupt matters more; say what was left
            log.warning("clean-up after the interrupt failed: %s", clean_error)
        raise
    except Exception as error:
        result = RunOutcome(item, "failed", None, _one_line(error))
        _fail_if_broken(cluster, result, outcome)  # a dead component is named, not hidden behind its symptom
        log.warning("%s failed: %s", item.label, result.detail)
    if cluster_stops_next:
        result.phases["clean"] = 0.0  # the cluster's stop removes the workload
        return result
    _progress(bar, f"{item.label}: cleaning up")
    cleaning = time.monotonic()
    try:
        # No settle here: the next run settles once its own objects are reconciled.
        outcome.quiet_wait_s += measure.clean(api, namespace, timeout, 0.0)
    except Exception as error:
        _fail_if_broken(cluster, result, outcome)
        outcome.outcomes.append(result)
        raise ExperimentError(f"{item.label}: the cluster could not be cleaned up, so no later run could be "
                              f"trusted ({_one_line(error)})") from error
    result.phases["clean"] = round(time.monotonic() - cleaning, 3)
    if real:
        _progress(bar, f"{item.label}: waiting for the real nodes to remove its containers")
        mark = time.monotonic()
        try:
            left = wait_real_nodes_clear(cluster, REAL_TEARDOWN_TIMEOUT_S, resident)
        except KdlibError:  # a component died: the run stands as measured, and the suite ends here
            outcome.outcomes.append(result)
            raise
        result.phases["teardown"] = round(time.monotonic() - mark, 3)
        if left:
            log.warning("%s: %d pod(s) still had processes on the real nodes after %.0f s; the next run's "
                        "quiet wait and machine record show their load", item.label, left, REAL_TEARDOWN_TIMEOUT_S)
    return result


def wait_real_nodes_clear(cluster: Cluster, timeout: float, resident: frozenset[str] = frozenset(),
                          poll_s: float = 0.5, check_every_s: float = 5.0) -> int:
    """Wait until no pod but the ``resident`` ones (there before the run) has a process left on
    the real nodes (its kubelet's pod cgroups are empty: every sandbox and container torn
    down), for at most ``timeout`` seconds.

    The API forgets a pod as soon as it is deleted (grace period 0), while its kubelet and
    containerd go on stopping and removing its containers for seconds: a run started then
    would share the cores with that teardown. Returns the pods still left (0: clear). Every
    ``check_every_s`` the cluster's components are checked (:meth:`Cluster.check` raises naming
    a dead one): a dead kubelet never removes its containers, and the wait would run out.
    """
    deadline = time.monotonic() + timeout
    checked = time.monotonic()
    while True:
        left = len(set(cluster.pod_process_starts()) - resident)
        if not left or time.monotonic() >= deadline:
            return left
        if time.monotonic() - checked >= check_every_s:
            cluster.check()
            checked = time.monotonic()
        time.sleep(poll_s)


def _with_runtime_stages(cluster: Cluster, api: Any, namespace: str, result: measure.Measurement) -> Any:
    """The timeline with each real pod's sandbox and container start (from its processes)."""
    import pandas as pd

    from ..runtime import process_stage_rows

    rows = process_stage_rows(api, namespace, measure.WORKLOAD_SELECTOR, result.started_at,
                              cluster.pod_process_starts())
    return pd.concat([result.timeline, pd.DataFrame(rows, columns=result.timeline.columns)], ignore_index=True)


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".splitlines()[0]


def _fail_if_broken(cluster: Cluster, result: RunOutcome, outcome: SuiteOutcome) -> None:
    """When a component died, record the run as failed for that reason and end the suite:
    no later run may start on a broken cluster."""
    try:
        cluster.check()
    except KdlibError as dead:
        result.status, result.total_s, result.detail = "failed", None, _one_line(dead)
        outcome.outcomes.append(result)
        raise


def _measure_one(cluster: Cluster, api: Any, params: SuiteParams, item: RunItem, root: Path | None,
                 bar: tqdm) -> RunOutcome:
    baseline = BASELINES[item.baseline]
    bench = BENCHES[item.bench]
    workload = bench.workload(item.scale)
    info = cluster.info
    nodes = len(info.node_names)
    namespace = measure.namespace_for(item.bench)
    directory = store.run_dir(item.bench, params.run_id, root)
    key = _key(item)
    timeout = params.timeout_for(workload)
    meta = {
        "run_id": params.run_id, "bench": item.bench, "baseline": item.baseline, "scale": item.scale,
        "repeat": item.repeat, "deployments": workload.deployments, "replicas_each": workload.replicas,
        "pods": workload.pods, "nodes": nodes, "backend": info.backend, "kd": info.kd,
        "real_nodes": 0 if baseline.simulated else len(info.real_node_names),
        "versions": info.versions, "sources": info.sources, "client_limits": info.client_limits,
        "settle_s": params.settle_s, "timeout_s": timeout,
        "provenance": provenance.collect(),
    }
    _progress(bar, f"{item.label}: creating {workload.deployments} Deployment(s) at 0 replicas")
    phases, mark = {}, time.monotonic()
    with cpu_history.CpuHistory() as history:  # the quiet window may cover the preparation and the settle
        with api_errors(f"{item.label}: preparing"):
            measure.ensure_namespace(api, namespace)
            names = measure.prepare(api, namespace, workload, baseline, on_kwok=baseline.simulated,
                                    timeout=timeout, on_real_nodes=not baseline.simulated)
        phases["prepare"] = time.monotonic() - mark
        time.sleep(params.settle_s)
        phases["settle"], mark = params.settle_s, time.monotonic()
        _progress(bar, f"{item.label}: waiting until the machine is quiet")
        calm = cpu_history.wait(params.quiet, history)
    phases["quiet_wait"], mark = time.monotonic() - mark, time.monotonic()
    if not calm["quiet"]:
        log.warning("%s: the machine was not quiet after %.0f s (CPU idle %.0f %%, load %.1f); measuring anyway, "
                    "marked busy", item.label, calm["waited_s"], calm["cpu_idle_pct"], calm["load_1m"])
    _progress(bar, f"{item.label}: scaling to {workload.pods} pods")
    meta["start_time"] = provenance.now()
    with api_errors(f"{item.label}: measuring"), machine.Sampler() as during:
        before = usage.snapshot(cluster, api)
        result = measure.measure(api, namespace, names, workload, timeout, health=cluster.check)
        meta["usage"] = usage.between(before, usage.snapshot(cluster, api))  # what binds: the findings read it
        if not baseline.simulated and info.real_node_names:  # the runtime breakdown, from the pods' processes
            result.timeline = _with_runtime_stages(cluster, api, namespace, result)
    phases["measure"] = time.monotonic() - mark
    phases = {k: round(v, 3) for k, v in phases.items()}
    meta["machine"] = machine.record(calm, during.summary())
    meta.update(end_time=provenance.now(), pods_ready=result.pods_ready, finished=result.finished, phases_s=phases,
                p90_rule=P90_RULE, p90_nearest_rank_us=result.nearest_rank_us)
    if not result.finished:
        # Save first: the partial timeline and why, but no log, so the run is redone next time.
        meta["error"] = result.error
        files.write_failed(directory, key, result.timeline, meta)
        return RunOutcome(item, "failed", None, result.error or "", phases)
    files.write_run(directory, key, result.total_us, result.timeline, meta, {
        "bench": item.bench, "baseline": item.baseline, "scale": item.scale, "repeat": item.repeat,
        "pods": result.pods_expected, "nodes": nodes, "backend": info.backend,
        "metric": f"time until the 90th-percentile pod is Ready ({P90_RULE})"})
    return RunOutcome(item, "measured", result.total_us / 1e6, "", phases)


__all__ = ["run_suite", "plan", "SuiteOutcome", "RunOutcome", "ExperimentError", "KdlibError"]
