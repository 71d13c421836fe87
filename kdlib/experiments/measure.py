"""The e2e measurement of one run: scale Deployments from zero, watch every pod until Ready.

1. Create the Deployments at zero replicas and wait until the controllers are done with them.
2. Start the watch (pods and ReplicaSets), start the clock, scale every Deployment
   through its ``scale`` subresource (concurrently, as a serverless autoscaler would).
3. Wait until every pod is Ready. The result is the time until the 90th-percentile
   pod was observed Ready; the timeline keeps every stage of every object.
"""

from __future__ import annotations

import concurrent.futures
import time
from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd
from kubernetes import client
from kubernetes.client.rest import ApiException

from .. import analysis, workloads
from ..errors import ExperimentError
from ..timeline import Timeline
from .spec import Baseline, Workload

NAMESPACE_PREFIX = "kdlib-"
WORKLOAD_SELECTOR = f"{workloads.WORKLOAD_LABEL}=true"


@dataclass
class Measurement:
    """One run's outcome: the p90 time, the tidy timeline, and whether it finished."""

    total_us: int | None
    timeline: pd.DataFrame
    pods_expected: int
    pods_ready: int
    started_at: float
    finished: bool
    error: str | None = None


def namespace_for(bench: str) -> str:
    return NAMESPACE_PREFIX + bench


def _parallel(fn: Callable[[str], Any], names: list[str]) -> list[Any]:
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(32, max(1, len(names)))) as pool:
        return list(pool.map(fn, names))


def ensure_namespace(api: client.ApiClient, name: str) -> None:
    try:
        client.CoreV1Api(api).create_namespace(workloads.namespace(name))
    except ApiException as error:
        if error.status != 409:
            raise


def deployment_names(workload: Workload) -> list[str]:
    return [f"fn-{i:04d}" for i in range(workload.deployments)]


def prepare(api: client.ApiClient, namespace: str, workload: Workload, baseline: Baseline,
            on_kwok: bool, timeout: float, on_real_nodes: bool = False) -> list[str]:
    """Create the Deployments at zero replicas; return once the controllers are done with them."""
    apps = client.AppsV1Api(api)
    names = deployment_names(workload)
    _parallel(lambda n: apps.create_namespaced_deployment(namespace, workloads.deployment(
        n, namespace, replicas=0, simulated_sandbox=baseline.simulated, kd=baseline.kd, on_kwok=on_kwok,
        on_real_nodes=on_real_nodes)), names)
    wait_reconciled(api, namespace, len(names), timeout)
    return names


def wait_reconciled(api: client.ApiClient, namespace: str, count: int, timeout: float, still_s: float = 1.0) -> None:
    """Wait until the controllers are done with the new objects.

    Done: every Deployment has its ReplicaSet, every object's status has caught up with
    its spec, and nothing changed for ``still_s``. Measured: waiting only for the
    ReplicaSets to exist let 50 Deployments' status updates, still queued behind the
    controller manager's client rate limit, slow the measured scale-up (p90 7.1 s
    against 4.4 s after a 30 s pause; bench/microbench.py).
    """
    apps = client.AppsV1Api(api)
    deadline = time.monotonic() + timeout
    last_change, last_versions = time.monotonic(), None
    while True:
        deployments = apps.list_namespaced_deployment(namespace, label_selector=WORKLOAD_SELECTOR).items
        sets = apps.list_namespaced_replica_set(namespace, label_selector=WORKLOAD_SELECTOR).items
        versions = sorted(o.metadata.resource_version for o in [*deployments, *sets])
        now = time.monotonic()
        if versions != last_versions:
            last_change, last_versions = now, versions
        caught_up = all((o.status.observed_generation or 0) >= o.metadata.generation for o in [*deployments, *sets])
        if len(sets) >= count and caught_up and now - last_change >= still_s:
            return
        if now > deadline:
            raise ExperimentError(f"the {count} Deployments were not reconciled within {timeout:.0f} s "
                                  f"({len(sets)} ReplicaSets, statuses caught up: {caught_up})")
        time.sleep(0.1)


def measure(api: client.ApiClient, namespace: str, names: list[str], workload: Workload,
            timeout: float) -> Measurement:
    """Scale ``names`` to ``workload.replicas`` each and time every pod to Ready."""
    apps = client.AppsV1Api(api)
    expected = workload.pods
    returned: dict[str, float] = {}
    with Timeline(api, namespace, WORKLOAD_SELECTOR) as timeline:
        started = time.time()

        def scale(name: str) -> None:
            apps.patch_namespaced_deployment_scale(name, namespace, {"spec": {"replicas": workload.replicas}})
            returned[name] = time.time()

        _parallel(scale, names)
        finished = timeline.wait_ready(expected, timeout)
        records = timeline.records()
        replicasets = {k: list(v) for k, v in timeline.replicasets.items()}
    frame = tidy_timeline(started, returned, replicasets, records, workload.replicas)
    ready = frame[frame["stage"] == "ready"]["t"]
    total_us = int(round(analysis.percentile(ready, 90) * 1e6)) if finished else None
    error = None if finished else f"only {len(ready)} of {expected} pods Ready after {timeout:.0f} s"
    return Measurement(total_us, frame, expected, int(len(ready)), started, finished, error)


def tidy_timeline(started: float, returned: dict[str, float], replicasets: dict[str, list[tuple[float, int]]],
                  pods: list[dict[str, Any]], target: int) -> pd.DataFrame:
    """One row per (object, stage), ``t`` in seconds since the clock started."""
    rows = [{"kind": "Deployment", "object": n, "stage": "scale_returned", "t": t - started, "node": None}
            for n, t in sorted(returned.items())]
    for name, history in sorted(replicasets.items()):
        reached = next((t for t, replicas in history if replicas >= target and t >= started), None)
        if reached is not None:
            rows.append({"kind": "ReplicaSet", "object": name, "stage": "rs_updated", "t": reached - started,
                         "node": None})
    for pod in pods:
        for stage in ("created", "scheduled", "ready"):
            if pod[stage] is not None:
                rows.append({"kind": "Pod", "object": pod["pod"], "stage": stage, "t": pod[stage] - started,
                             "node": pod["node"] if stage != "created" else None})
    return pd.DataFrame(rows, columns=["kind", "object", "stage", "t", "node"])


def clean(api: client.ApiClient, namespace: str, timeout: float, settle_s: float) -> float:
    """Delete the workload, wait until the cluster is quiet, then settle. Returns the seconds waited.

    Quiet: no workload pod or ReplicaSet left anywhere (pods pending deletion count
    as left) — instead of the original's fixed sleeps.
    """
    started = time.monotonic()
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    # Delete each kind in one call rather than leaving the pods to the garbage
    # collector, whose client rate limit would take minutes for thousands of pods.
    for delete in (apps.delete_collection_namespaced_deployment, apps.delete_collection_namespaced_replica_set,
                   core.delete_collection_namespaced_pod):
        try:
            delete(namespace, label_selector=WORKLOAD_SELECTOR, propagation_policy="Background",
                   grace_period_seconds=0)
        except ApiException as error:
            if error.status != 404:
                raise
    deadline = started + timeout
    while True:
        pods = core.list_pod_for_all_namespaces(label_selector=WORKLOAD_SELECTOR).items
        sets = apps.list_replica_set_for_all_namespaces(label_selector=WORKLOAD_SELECTOR).items
        deployments = apps.list_deployment_for_all_namespaces(label_selector=WORKLOAD_SELECTOR).items
        if not pods and not sets and not deployments:
            break
        if time.monotonic() > deadline:
            raise ExperimentError(f"the cluster did not become quiet in {timeout:.0f} s: {len(pods)} pods, "
                                  f"{len(sets)} ReplicaSets, {len(deployments)} Deployments left")
        time.sleep(0.2)
    time.sleep(settle_s)
    return time.monotonic() - started
