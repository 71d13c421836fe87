"""Watch pods and ReplicaSets and record when each reached each stage.

Times are this client's wall clock when the watch event arrived (``time.time()``).
Server timestamps in object metadata have one-second resolution, too coarse for
sub-second stages, so — like clusterloader2's "watch" phases — what is recorded is
when the change was observed.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

from kubernetes import client, watch

from .errors import ExperimentError

STAGES = ("created", "scheduled", "ready")
WATCH_SECONDS = 300  # one watch request's server-side lifetime


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


class _Watcher(threading.Thread):
    """Lists, then watches, one namespaced resource; calls ``on_event`` for each change.

    Objects stay raw JSON (dicts): the client's model classes cost milliseconds per
    event, which would delay what is observed. One long watch request runs at a time;
    ``stop()`` shuts its connection down, so no periodic reconnect adds latency.
    """

    def __init__(self, list_fn: Callable, namespace: str, label_selector: str,
                 on_event: Callable[[str, dict[str, Any], float], None]) -> None:
        super().__init__(daemon=True, name=f"watch-{list_fn.__name__}")
        self.list_fn, self.namespace, self.label_selector = list_fn, namespace, label_selector
        self.on_event = on_event
        self._stopping = threading.Event()
        self._response: Any = None
        self.synced = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as error:  # surfaced by Timeline.check()
            if not self._stopping.is_set():
                self.error = error
            self.synced.set()

    def _run(self) -> None:
        version = self._relist()
        while not self._stopping.is_set():
            self._response = self.list_fn(
                self.namespace, label_selector=self.label_selector, watch=True, resource_version=version,
                allow_watch_bookmarks=True, timeout_seconds=WATCH_SECONDS, _preload_content=False)
            if self._stopping.is_set():
                break
            for line in watch.watch.iter_resp_lines(self._response):
                now = time.time()
                event = json.loads(line)
                obj = event["object"]
                if event["type"] == "ERROR":
                    if obj.get("code") != 410:
                        raise ExperimentError(f"watch failed: {obj.get('message', obj)}")
                    version = self._relist()  # our resourceVersion was compacted away
                    break
                version = obj["metadata"]["resourceVersion"]
                if event["type"] != "BOOKMARK":
                    self.on_event(event["type"], obj, now)

    def _relist(self) -> str:
        response = self.list_fn(self.namespace, label_selector=self.label_selector, _preload_content=False)
        listing = json.loads(response.data)
        now = time.time()
        for obj in listing["items"]:
            self.on_event("ADDED", obj, now)
        self.synced.set()
        return listing["metadata"]["resourceVersion"]

    def stop(self) -> None:
        self._stopping.set()
        response = self._response
        if response is not None:
            try:
                response.shutdown()  # unblocks the read in run()
            except Exception:
                pass


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
