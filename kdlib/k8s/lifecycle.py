"""A workload's life in a namespace: the namespace, waiting for the controllers, clean-up.

Shared by the experiments (microbenchmarks and the trace): the workload's objects carry
:data:`~kdlib.k8s.objects.WORKLOAD_SELECTOR`'s label.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable

from kubernetes import client
from kubernetes.client.rest import ApiException

from ..errors import ExperimentError
from . import objects
from .watch import Watcher

WORKLOAD_SELECTOR = objects.WORKLOAD_SELECTOR


def ensure_namespace(api: client.ApiClient, name: str) -> None:
    try:
        client.CoreV1Api(api).create_namespace(objects.namespace(name))
    except ApiException as error:
        if error.status != 409:
            raise


def wait_reconciled(api: client.ApiClient, namespace: str, count: int, timeout: float, still_s: float = 1.0) -> float:
    """Wait until the controllers are done with the new objects; return when (``time.monotonic()``)
    the last change was seen.

    Done: every Deployment has its ReplicaSet, every object's status has caught up with
    its spec, and nothing changed for ``still_s``. Measured: waiting only for the
    ReplicaSets to exist let 50 Deployments' status updates, still queued behind the
    controller manager's client rate limit, slow the measured scale-up (p90 7.1 s
    against 4.4 s after a 30 s pause; bench/microbench.py).

    The objects are watched (raw JSON), not listed over and over: listing 100 Deployments and
    their ReplicaSets as the client's models every 0.1 s took 14 CPU-s of this process while
    the controllers reconciled (23 s at K = 100 on 2 cores), CPU the control plane shares.
    Every event is a change, so "nothing changed" is exact, not a comparison of two polls.
    """
    apps = client.AppsV1Api(api)
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    changed = threading.Condition()
    last_change = time.monotonic()

    def record(kind: str) -> Callable[[str, dict[str, Any], float], None]:
        def on_event(event: str, obj: dict[str, Any], seen_at: float) -> None:
            nonlocal last_change
            with changed:
                key = (kind, obj["metadata"]["name"])
                if event == "DELETED":
                    objects.pop(key, None)
                else:
                    objects[key] = obj
                last_change = time.monotonic()
                changed.notify_all()
        return on_event

    watchers = [Watcher(apps.list_namespaced_deployment, namespace, WORKLOAD_SELECTOR, record("Deployment")),
                Watcher(apps.list_namespaced_replica_set, namespace, WORKLOAD_SELECTOR, record("ReplicaSet"))]
    deadline = time.monotonic() + timeout
    for watcher in watchers:
        watcher.start()
    try:
        with changed:
            while True:
                for watcher in watchers:
                    if watcher.error is not None:
                        raise watcher.error
                sets = sum(1 for kind, _ in objects if kind == "ReplicaSet")
                caught_up = all(watcher.synced.is_set() for watcher in watchers) and all(
                    (o.get("status", {}).get("observedGeneration") or 0) >= o["metadata"].get("generation", 0)
                    for o in objects.values())
                now = time.monotonic()
                if sets >= count and caught_up and now - last_change >= still_s:
                    return last_change
                if now > deadline:
                    raise ExperimentError(f"the {count} Deployments were not reconciled within {timeout:.0f} s "
                                          f"({sets} ReplicaSets, statuses caught up: {caught_up})")
                pending = still_s - (now - last_change) if sets >= count and caught_up else 0.5
                changed.wait(max(0.01, min(pending, deadline - now)))
    finally:
        for watcher in watchers:
            watcher.stop()
        for watcher in watchers:
            watcher.join(5)


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
