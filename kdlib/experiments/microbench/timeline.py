"""Watch pods and ReplicaSets and record when each reached each stage.

Times are this client's wall clock when the watch event arrived (``time.time()``).
Server timestamps in object metadata have one-second resolution, too coarse for
sub-second stages, so — like clusterloader2's "watch" phases — what is recorded is
when the change was observed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from kubernetes import client

from ...errors import ExperimentError
from ...k8s.watch import Watcher

SYNC_TIMEOUT_S = 30.0


@dataclass
class PodRecord:
    """When one pod was first seen created, bound to a node, and Ready."""

    pod: str
    created: float | None = None
    scheduled: float | None = None
    ready: float | None = None
    node: str | None = None
    deleted: float | None = None


def _is_ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


class Timeline:
    """Records every pod's stages and every ReplicaSet's replica changes in a namespace.

    >>> with Timeline(api, "bench") as timeline:       # doctest: +SKIP
    ...     scale(...)
    ...     timeline.wait_ready(100, timeout=120)
    """

    def __init__(self, api: client.ApiClient, namespace: str, label_selector: str = "") -> None:
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        self.pods: dict[str, PodRecord] = {}
        self.replicasets: dict[str, list[tuple[float, int]]] = {}  # name -> [(time, spec.replicas)]
        self._lock = threading.Condition()
        self._watchers = [
            Watcher(core.list_namespaced_pod, namespace, label_selector, self._on_pod),
            Watcher(apps.list_namespaced_replica_set, namespace, label_selector, self._on_replicaset),
        ]

    def __enter__(self) -> "Timeline":
        for watcher in self._watchers:
            watcher.start()
        try:
            # The clock must not start before both watches are listening.
            for watcher in self._watchers:
                if not watcher.synced.wait(SYNC_TIMEOUT_S):
                    raise ExperimentError(f"the {watcher.name} watch did not start within {SYNC_TIMEOUT_S:.0f} s")
            self.check()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for watcher in self._watchers:
            watcher.stop()
        for watcher in self._watchers:
            watcher.join(5)

    def check(self) -> None:
        for watcher in self._watchers:
            if watcher.error is not None:
                raise watcher.error

    def _on_pod(self, kind: str, pod: dict[str, Any], now: float) -> None:
        name, node = pod["metadata"]["name"], pod.get("spec", {}).get("nodeName")
        with self._lock:
            record = self.pods.setdefault(name, PodRecord(name))
            if record.created is None:
                record.created = now
            if node and record.scheduled is None:
                record.scheduled, record.node = now, node
            if record.ready is None and _is_ready(pod):
                record.ready = now
            if kind == "DELETED" and record.deleted is None:
                record.deleted = now
            self._lock.notify_all()

    def _on_replicaset(self, kind: str, rs: dict[str, Any], now: float) -> None:
        with self._lock:
            history = self.replicasets.setdefault(rs["metadata"]["name"], [])
            replicas = rs.get("spec", {}).get("replicas") or 0
            if not history or history[-1][1] != replicas:
                history.append((now, replicas))

    def ready_count(self) -> int:
        with self._lock:
            return sum(1 for r in self.pods.values() if r.ready is not None and r.deleted is None)

    def live_count(self) -> int:
        with self._lock:
            return sum(1 for r in self.pods.values() if r.deleted is None)

    def wait_for(self, predicate: Callable[["Timeline"], bool], timeout: float,
                 health: Callable[[], None] = lambda: None) -> bool:
        """Wait until ``predicate(self)`` holds; False when ``timeout`` passes first.

        ``health()`` runs every half second and may raise (e.g. a component died).
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(self):
                self.check()
                health()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(min(remaining, 0.5))
        return True

    def wait_ready(self, count: int, timeout: float, health: Callable[[], None] = lambda: None) -> bool:
        return self.wait_for(lambda t: t.ready_count() >= count, timeout, health)

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(r) for r in sorted(self.pods.values(), key=lambda r: r.pod)]
