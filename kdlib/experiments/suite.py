"""Run a matrix of microbenchmarks: one cluster per control plane, resume, progress, clean-up.

Only one suite runs per machine at a time (an exclusive lock, refused at once).
Between runs the workload is deleted and the suite waits until the cluster is quiet.
Ctrl-C stops the run in progress, leaves no finished-looking file for it, and the
cluster's context manager stops every process.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from kubernetes.client import ApiClient
from tqdm import tqdm

from .. import kwok, provenance, results
from ..binaries import cache_root
from ..cluster.base import ClusterInfo
from ..cluster.factory import open_cluster
from ..errors import ExperimentError, SuiteBusyError
from . import measure
from .spec import BASELINES, BENCHES, RunItem, SuiteParams, Workload, plan


@dataclass
class RunOutcome:
    item: RunItem
    status: str  # measured | resumed | failed
    total_s: float | None = None
    detail: str = ""


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


def lock_path() -> Path:
    """The machine-wide lock file (``$KDLIB_SUITE_LOCK`` moves it, e.g. for tests)."""
    return Path(os.environ.get("KDLIB_SUITE_LOCK") or cache_root() / "suite.lock")


@contextmanager
def suite_lock(run_id: str) -> Iterator[None]:
    """Hold the machine-wide suite lock, or fail at once naming the holder."""
    path = lock_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise SuiteBusyError(f"another experiment suite is running on this machine ({holder}); "
                             "wait for it to finish or stop it, then run again") from None
    handle.truncate(0)
    handle.write(f"pid {os.getpid()}, run_id {run_id}, since {provenance.now()}")
    handle.flush()
    try:
        yield
    finally:
        handle.truncate(0)
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _write_suite_record(params: SuiteParams, outcome: SuiteOutcome, root: Path | None, state: str,
                        cluster_info: dict[str, Any]) -> None:
    record = {
        "run_id": params.run_id,
        "state": state,
        "parameters": {**asdict(params), "kd_bin_dir": str(params.kd_bin_dir) if params.kd_bin_dir else None,
                       "scales": {b: list(params.scales_for(b)) for b in params.benches}},
        "not_measured": outcome.not_measured,
        "outcomes": [{**asdict(o.item), "status": o.status, "total_s": o.total_s, "detail": o.detail}
                     for o in outcome.outcomes],
        "clusters": cluster_info,
        "provenance": provenance.collect(),
        "seconds": round(outcome.seconds, 1),
        "quiet_wait_s": round(outcome.quiet_wait_s, 1),
    }
    results.write_atomic(results.suite_path(params.run_id, root), json.dumps(record, indent=2, default=str) + "\n")


def run_suite(params: SuiteParams, *, root: Path | None = None, progress: bool = True) -> SuiteOutcome:
    """Run every (bench, baseline, scale, repeat) of ``params`` not already finished."""
    params.validate()
    items, not_measured = plan(params)
    outcome = SuiteOutcome(params.run_id, not_measured=not_measured)
    started = time.monotonic()
    clusters: dict[str, Any] = {}
    with suite_lock(params.run_id):
        bar = tqdm(total=len(items), disable=not progress, file=sys.stderr, unit="run", dynamic_ncols=True)
        try:
            for directory in {results.run_dir(i.bench, params.run_id, root) for i in items}:
                if directory.is_dir():
                    results.remove_partials(directory)
            pending = []
            for item in items:
                directory = results.run_dir(item.bench, params.run_id, root)
                if results.is_finished(directory, _key(item)):
                    total = results.parse_log(results.log_path(directory, _key(item)).read_text()) / 1e6
                    outcome.outcomes.append(RunOutcome(item, "resumed", total, "finished in an earlier run"))
                    bar.update(1)
                else:
                    pending.append(item)
            _write_suite_record(params, outcome, root, "running", clusters)
            for kd in (False, True):
                group = [i for i in pending if BASELINES[i.baseline].kd == kd]
                if group:
                    _run_on_cluster(params, group, kd, outcome, root, bar, clusters)
        finally:
            bar.close()
            outcome.seconds = time.monotonic() - started
            interrupted = sys.exc_info()[0] is not None
            _write_suite_record(params, outcome, root, "interrupted" if interrupted else "finished", clusters)
    return outcome


def _with_runtime_stages(api: ApiClient, namespace: str, result: measure.Measurement) -> Any:
    import pandas as pd

    from ..cluster.factory import suite_state_dir
    from ..cluster.local.realnodes import pod_process_starts
    from .runtime import process_stage_rows

    rows = process_stage_rows(api, namespace, measure.WORKLOAD_SELECTOR, result.started_at,
                              pod_process_starts(suite_state_dir()))
    return pd.concat([result.timeline, pd.DataFrame(rows, columns=result.timeline.columns)], ignore_index=True)


def _key(item: RunItem) -> results.RunKey:
    return results.RunKey(item.bench, item.baseline, item.scale, item.repeat)


def _run_on_cluster(params: SuiteParams, items: list[RunItem], kd: bool, outcome: SuiteOutcome,
                    root: Path | None, bar: tqdm, clusters: dict[str, Any]) -> None:
    bar.set_description_str(f"starting the {'Kd' if kd else 'vanilla'} {params.backend} cluster")
    real = params.real_nodes if any(not BASELINES[i.baseline].simulated for i in items) else 0
    with open_cluster(params.backend, nodes=params.nodes, kd=kd, bin_dir=params.kd_bin_dir,
                      real_nodes=real) as cluster:
        info = cluster.info
        clusters["kd" if kd else "vanilla"] = {"backend": info.backend, "kd": info.kd, "versions": info.versions}
        api = info.api_client()
        nodes = len(info.node_names)
        try:
            for item in items:
                workload = BENCHES[item.bench].workload(item.scale)
                wanted = workload.nodes or params.nodes
                if wanted != nodes:
                    bar.set_description_str(f"{item.label}: resizing to {wanted} kwok nodes")
                    names = kwok.ensure_nodes(api, wanted)
                    kwok.wait_nodes_ready(api, names, timeout=max(120.0, wanted * 0.5))
                    nodes = wanted
                result = _run_one(api, params, item, workload, nodes, info, outcome, root, bar)
                outcome.outcomes.append(result)
                bar.update(1)
        finally:
            api.close()


def _run_one(api: ApiClient, params: SuiteParams, item: RunItem, workload: Workload, nodes: int,
             info: ClusterInfo, outcome: SuiteOutcome, root: Path | None, bar: tqdm) -> RunOutcome:
    baseline = BASELINES[item.baseline]
    namespace = measure.namespace_for(item.bench)
    directory = results.run_dir(item.bench, params.run_id, root)
    key = _key(item)
    meta = {
        "run_id": params.run_id, "bench": item.bench, "baseline": item.baseline, "scale": item.scale,
        "repeat": item.repeat, "deployments": workload.deployments, "replicas_each": workload.replicas,
        "pods": workload.pods, "nodes": nodes, "backend": info.backend, "kd": info.kd,
        "real_nodes": 0 if baseline.simulated else len(info.real_node_names),
        "versions": info.versions, "settle_s": params.settle_s, "provenance": provenance.collect(),
    }
    try:
        bar.set_description_str(f"{item.label}: creating {workload.deployments} Deployment(s) at 0 replicas")
        measure.ensure_namespace(api, namespace)
        names = measure.prepare(api, namespace, workload, baseline, on_kwok=baseline.simulated,
                                timeout=params.run_timeout_s, on_real_nodes=not baseline.simulated)
        time.sleep(params.settle_s)
        bar.set_description_str(f"{item.label}: scaling to {workload.pods} pods")
        meta["start_time"] = provenance.now()
        result = measure.measure(api, namespace, names, workload, params.run_timeout_s)
        if not baseline.simulated and info.real_node_names:  # the runtime breakdown, from the pods' processes
            result.timeline = _with_runtime_stages(api, namespace, result)
        meta.update(end_time=provenance.now(), pods_ready=result.pods_ready, finished=result.finished)
        if result.finished:
            results.write_run(directory, key, result.total_us, result.timeline, meta, {
                "bench": item.bench, "baseline": item.baseline, "scale": item.scale, "repeat": item.repeat,
                "pods": result.pods_expected, "nodes": nodes, "backend": info.backend,
                "metric": "time until the 90th-percentile pod is Ready"})
            status, total, detail = "measured", result.total_us / 1e6, ""
        else:
            # Save first: the partial timeline and why, but no log, so the run is redone next time.
            meta["error"] = result.error
            results.write_atomic(results.timeline_path(directory, key), result.timeline.to_csv(index=False))
            results.write_atomic(results.meta_path(directory, key), json.dumps(meta, indent=2, default=str))
            status, total, detail = "failed", None, result.error or ""
    finally:
        bar.set_description_str(f"{item.label}: cleaning up")
        outcome.quiet_wait_s += measure.clean(api, namespace, params.run_timeout_s, params.settle_s)
    if status == "failed":
        bar.write(f"kdlib: {item.label} failed: {detail}")
    return RunOutcome(item, status, total, detail)


__all__ = ["run_suite", "SuiteOutcome", "RunOutcome", "ExperimentError"]
