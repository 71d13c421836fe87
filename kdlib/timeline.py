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

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

STAGES = ("created", "scheduled", "ready")


@dataclass
class PodRecord:
    """When one pod was first seen created, bound to a node, and Ready."""

    pod: str
    created: float | None = None
    scheduled: float | None = None
    ready: float | None = None
    node: str | None = None
    deleted: float | None = None


def _is_ready(pod: Any) -> bool:
    conditions = (pod.status.conditions or []) if pod.status else []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


class _Watcher(threading.Thread):
    """Lists, then watches, one namespaced resource; calls ``on_event`` for each change."""

    def __init__(self, list_fn: Callable, namespace: str, label_selector: str,
                 on_event: Callable[[str, Any, float], None]) -> None:
        super().__init__(daemon=True, name=f"watch-{list_fn.__name__}")
        self.list_fn, self.namespace, self.label_selector = list_fn, namespace, label_selector
        self.on_event = on_event
        self._stopping = threading.Event()
        self.synced = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as error:  # surfaced by Timeline.check()
            self.error = error
            self.synced.set()

    def _run(self) -> None:
        version = self._relist()
        while not self._stopping.is_set():
            stream = watch.Watch()
            try:
                # Short server-side timeouts keep stop() responsive; resuming from the
                # last resourceVersion loses no event.
                for event in stream.stream(self.list_fn, self.namespace, label_selector=self.label_selector,
                                           resource_version=version, timeout_seconds=1,
                                           allow_watch_bookmarks=True):
                    now = time.time()
                    obj = event["object"]
                    version = obj.metadata.resource_version
                    if event["type"] != "BOOKMARK":
                        self.on_event(event["type"], obj, now)
                    if self._stopping.is_set():
                        break
            except ApiException as error:
                if error.status != 410:
                    raise
                version = self._relist()  # our resourceVersion was compacted away

    def _relist(self) -> str:
        listing = self.list_fn(self.namespace, label_selector=self.label_selector)
        now = time.time()
        for obj in listing.items:
            self.on_event("ADDED", obj, now)
        self.synced.set()
        return listing.metadata.resource_version

    def stop(self) -> None:
        self._stopping.set()


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
            _Watcher(core.list_namespaced_pod, namespace, label_selector, self._on_pod),
            _Watcher(apps.list_namespaced_replica_set, namespace, label_selector, self._on_replicaset),
        ]

    def __enter__(self) -> "Timeline":
        for watcher in self._watchers:
            watcher.start()
        for watcher in self._watchers:
            watcher.synced.wait(30)
        self.check()
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

    def _on_pod(self, kind: str, pod: Any, now: float) -> None:
        with self._lock:
            record = self.pods.setdefault(pod.metadata.name, PodRecord(pod.metadata.name))
            if record.created is None:
                record.created = now
            if pod.spec.node_name and record.scheduled is None:
                record.scheduled, record.node = now, pod.spec.node_name
            if record.ready is None and _is_ready(pod):
                record.ready = now
            if kind == "DELETED" and record.deleted is None:
                record.deleted = now
            self._lock.notify_all()

    def _on_replicaset(self, kind: str, rs: Any, now: float) -> None:
        with self._lock:
            history = self.replicasets.setdefault(rs.metadata.name, [])
            replicas = rs.spec.replicas or 0
            if not history or history[-1][1] != replicas:
                history.append((now, replicas))

    def ready_count(self) -> int:
        with self._lock:
            return sum(1 for r in self.pods.values() if r.ready is not None and r.deleted is None)

    def live_count(self) -> int:
        with self._lock:
            return sum(1 for r in self.pods.values() if r.deleted is None)

    def wait_for(self, predicate: Callable[["Timeline"], bool], timeout: float) -> bool:
        """Wait until ``predicate(self)`` holds; False when ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate(self):
                self.check()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(min(remaining, 0.5))
        return True

    def wait_ready(self, count: int, timeout: float) -> bool:
        return self.wait_for(lambda t: t.ready_count() >= count, timeout)

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            return [asdict(r) for r in sorted(self.pods.values(), key=lambda r: r.pod)]
