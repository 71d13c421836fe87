"""The e2e measurement of one run: scale Deployments from zero, watch every pod until Ready.

1. Create the Deployments at zero replicas and wait until the controllers are done with them.
2. Start the watch (pods and ReplicaSets), start the clock, scale every Deployment
   through its ``scale`` subresource (concurrently, as a serverless autoscaler would).
3. Wait until every pod is Ready. The result is the time until the 90th-percentile
   pod was observed Ready; the timeline keeps every stage of every object.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd
from kubernetes import client
from kubernetes.client.rest import ApiException

from ...errors import ExperimentError
from ...k8s import objects
from ...k8s.calls import parallel
from ...stats import percentile
from ..baselines import Baseline
from .analysis import POD_STAGES
from .spec import Workload
from .timeline import Timeline

NAMESPACE_PREFIX = "kdlib-"
WORKLOAD_SELECTOR = objects.WORKLOAD_SELECTOR


@dataclass
class Measurement:
    """One run's outcome: the p90 time, the tidy timeline, and whether it finished."""

    total_us: int | None
    timeline: pd.DataFrame
    pods_expected: int
    pods_ready: int
    started_at: float  # the clock's start (wall time): real pods' process stages are timed against it
    finished: bool
    error: str | None = None


def namespace_for(bench: str) -> str:
    return NAMESPACE_PREFIX + bench


def ensure_namespace(api: client.ApiClient, name: str) -> None:
    try:
        client.CoreV1Api(api).create_namespace(objects.namespace(name))
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
    parallel(lambda n: apps.create_namespaced_deployment(namespace, objects.deployment(
        n, namespace, replicas=0, simulated_sandbox=baseline.simulated, kd=baseline.kd, on_kwok=on_kwok,
        on_real_nodes=on_real_nodes), _preload_content=False), names, workers=32)
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
            timeout: float, health: Callable[[], None] = lambda: None) -> Measurement:
    """Scale ``names`` to ``workload.replicas`` each and time every pod to Ready.

    ``health`` is called while waiting and raises when the cluster broke (a component died),
    so a dead cluster ends the wait at once instead of after ``timeout``.
    """
    apps = client.AppsV1Api(api)
    expected = workload.pods
    returned: dict[str, float] = {}
    with Timeline(api, namespace, WORKLOAD_SELECTOR) as timeline:
        started = time.time()

        def scale(name: str) -> None:
            apps.patch_namespaced_deployment_scale(name, namespace, {"spec": {"replicas": workload.replicas}},
                                                   _preload_content=False)
            returned[name] = time.time()

        parallel(scale, names, workers=32)  # concurrently, as an autoscaler would
        finished = timeline.wait_ready(expected, timeout, health)
        records = timeline.records()
        replicasets = {k: list(v) for k, v in timeline.replicasets.items()}
    frame = tidy_timeline(started, returned, replicasets, records, workload.replicas)
    ready = frame[frame["stage"] == "ready"]["t"]
    total_us = int(round(percentile(ready, 90) * 1e6)) if finished else None
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
        for stage in POD_STAGES:
            if pod[stage] is not None:
                rows.append({"kind": "Pod", "object": pod["pod"], "stage": stage, "t": pod[stage] - started,
                             "node": pod["node"] if stage != "created" else None})
    return pd.DataFrame(rows, columns=["kind", "object", "stage", "t", "node"])


def clean(api: client.ApiClient, namespace: str, timeout: float, settle_s: float) -> float:
    """Delete the workload, wait until the cluster is quiet, then settle. Returns the seconds waited.

    Quiet: no workload pod, ReplicaSet or Deployment left anywhere (pods pending deletion
    count as left) — instead of the original's fixed sleeps. Each kind is deleted in one
    call rather than left to the garbage collector, whose client rate limit would take
    minutes for thousands of pods. A delete-collection that the apiserver cuts off at its
    60 s request timeout (thousands of pods on a busy machine; seen as 504) is sent again
    until the deadline.
    """
    started = time.monotonic()
    deadline = started + timeout
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    kinds = {
        "Deployments": (apps.delete_collection_namespaced_deployment, apps.list_deployment_for_all_namespaces),
        "ReplicaSets": (apps.delete_collection_namespaced_replica_set, apps.list_replica_set_for_all_namespaces),
        "pods": (core.delete_collection_namespaced_pod, core.list_pod_for_all_namespaces),
    }
    left = dict.fromkeys(kinds, 1)
    last_delete = -float("inf")
    while True:
        if time.monotonic() - last_delete > 10:
            for kind, (delete, _) in kinds.items():
                if left[kind]:
                    _delete_collection(delete, namespace)
            last_delete = time.monotonic()
        left = {kind: _count(listing) for kind, (_, listing) in kinds.items()}
        if not any(left.values()):
            break
        if time.monotonic() > deadline:
            raise ExperimentError(f"the cluster did not become quiet in {timeout:.0f} s: "
                                  + ", ".join(f"{n} {kind}" for kind, n in left.items()) + " left")
        time.sleep(0.2)
    time.sleep(settle_s)
    return time.monotonic() - started


def _delete_collection(delete: Callable, namespace: str) -> None:
    try:
        delete(namespace, label_selector=WORKLOAD_SELECTOR, propagation_policy="Background",
               grace_period_seconds=0, _preload_content=False)
    except ApiException as error:
        if error.status not in (404, 429, 500, 504):  # gone; or cut off / throttled: sent again later
            raise


def _count(listing: Callable) -> int:
    response = listing(label_selector=WORKLOAD_SELECTOR, _preload_content=False)
    return len(json.loads(response.data)["items"])
