"""The e2e measurement of one run: scale Deployments from zero, watch every pod until Ready.

1. Create the Deployments at zero replicas and wait until the controllers are done with them.
2. Start the watch (pods and ReplicaSets), start the clock, scale every Deployment
   through its ``scale`` subresource (concurrently, as a serverless autoscaler would).
3. Wait until every pod is Ready. The result is the time until the 90th-percentile
   pod was observed Ready, by the original's rule: the sorted Ready times at index
   ``(90*n)/100`` (integer division, 0-based); the timeline keeps every stage of every object.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd
from kubernetes import client

from ...k8s import objects
from ...errors import ExperimentError
from ...k8s.calls import create_all, parallel
from ...k8s.lifecycle import clean, ensure_namespace, wait_reconciled  # noqa: F401 (the suite's too)
from ...stats import original_percentile, percentile
from ...baselines import Baseline
from .analysis import POD_STAGES
from .spec import Workload
from .timeline import Timeline

NAMESPACE_PREFIX = "kdlib-"
WORKLOAD_SELECTOR = objects.WORKLOAD_SELECTOR


@dataclass
class Measurement:
    """One run's outcome: the p90 time, the tidy timeline, and whether it finished.

    ``total_us`` is the original's p90 (index ``(90*n)/100``); ``nearest_rank_us`` the
    ⌈0.9·n⌉-th Ready time, kept beside it in the run's metadata.
    """

    total_us: int | None
    timeline: pd.DataFrame
    pods_expected: int
    pods_ready: int
    started_at: float  # the clock's start (wall time): real pods' process stages are timed against it
    finished: bool
    error: str | None = None
    nearest_rank_us: int | None = None


def namespace_for(bench: str) -> str:
    return NAMESPACE_PREFIX + bench


def deployment_names(workload: Workload) -> list[str]:
    return [f"fn-{i:04d}" for i in range(workload.deployments)]


def prepare(api: client.ApiClient, namespace: str, workload: Workload, baseline: Baseline,
            on_kwok: bool, timeout: float, on_real_nodes: bool = False) -> list[str]:
    """Create the Deployments at zero replicas; return once the controllers are done with them.

    Created through the client's pool without its per-call request building (:func:`create_all`);
    what takes the time is the controller manager: at K = 100 its deployment controller writes
    about 430 times (a ReplicaSet and three or four status updates per Deployment) under its
    client limit of 20 per second, ~20 s, against ~2.5 s with the limit raised (k8s+u).
    """
    names = deployment_names(workload)
    made = create_all(api, f"/apis/apps/v1/namespaces/{namespace}/deployments", [objects.deployment(
        n, namespace, replicas=0, simulated_sandbox=baseline.simulated, kd=baseline.kd, on_kwok=on_kwok,
        on_real_nodes=on_real_nodes) for n in names])
    if made != len(names):  # the clean-up before leaves none: one already there is another run's
        raise ExperimentError(f"{len(names) - made} of the {len(names)} Deployments were already in {namespace}")
    wait_reconciled(api, namespace, len(names), timeout)
    return names


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
    total_us = int(round(original_percentile(ready, 90) * 1e6)) if finished else None
    nearest_us = int(round(percentile(ready, 90) * 1e6)) if finished else None
    error = None if finished else f"only {len(ready)} of {expected} pods Ready after {timeout:.0f} s"
    return Measurement(total_us, frame, expected, int(len(ready)), started, finished, error, nearest_us)


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
