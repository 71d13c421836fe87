"""The runtime breakdown of real pods: scheduled → sandbox ready → containers started → Ready.

The original artifact reads it from its kubelet's ``_runtime`` logs; here it comes from
each pod's status as the kubelet reports it, seen by a watch: the first time the pod is
bound (``spec.nodeName``), its ``PodReadyToStartContainers`` condition is True (the
sandbox exists and has its network), every container is running, and it is Ready. The
status timestamps themselves have one-second resolution, hence the watch (the times are
when this client observed each change). The kubelet often reports the middle stages in
the same update as Ready; where the pod's processes can be read (local real nodes), the
sandbox and container start times come from them instead (:meth:`RuntimeWatch.with_process_starts`). Beside it stands the simulated sandbox of the
"+" baselines: Ready a fixed 200 ms after binding.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

log = logging.getLogger(__name__)

SPANS = {  # name: (from stage, to stage)
    "scheduled→sandbox": ("scheduled", "sandbox"),
    "sandbox→started": ("sandbox", "started"),
    "started→ready": ("started", "ready"),
    "scheduled→ready": ("scheduled", "ready"),
}


def _condition(pod: client.V1Pod, kind: str) -> bool:
    return any(c.type == kind and c.status == "True" for c in (pod.status.conditions or []))


def _stages_reached(pod: client.V1Pod) -> set[str]:
    reached = {"created"}
    if pod.spec.node_name:
        reached.add("scheduled")
    if _condition(pod, "PodReadyToStartContainers"):
        reached.add("sandbox")
    statuses = pod.status.container_statuses or []
    if statuses and all(s.state and s.state.running for s in statuses):
        reached.add("started")
    if _condition(pod, "Ready"):
        reached.add("ready")
    return reached


@dataclass
class PodRuntime:
    """When each stage of one pod was first observed, in seconds since the watch began."""

    pod: str
    uid: str = ""
    node: str | None = None
    created: float | None = None
    scheduled: float | None = None
    sandbox: float | None = None
    started: float | None = None
    ready: float | None = None

    def span(self, name: str) -> float | None:
        start, end = (getattr(self, stage) for stage in SPANS[name])
        return None if start is None or end is None else end - start


class RuntimeWatch:
    """Watch the pods of a namespace and record every pod's runtime stages.

    >>> with RuntimeWatch(api, "ns") as pods:      # doctest: +SKIP
    ...     scale(...); wait(...)
    >>> medians(pods.records())
    """

    def __init__(self, api: client.ApiClient, namespace: str, label_selector: str = "") -> None:
        self.core = client.CoreV1Api(api)
        self.namespace, self.label_selector = namespace, label_selector
        self.pods: dict[str, PodRuntime] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kdlib-runtime-watch", daemon=True)
        self._t0 = time.monotonic()
        self._started = threading.Event()
        self.error: BaseException | None = None

    def __enter__(self) -> "RuntimeWatch":
        self._thread.start()
        self._started.wait(timeout=10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _observe(self, pod: client.V1Pod, now: float) -> None:
        with self._lock:
            record = self.pods.setdefault(pod.metadata.name, PodRuntime(pod.metadata.name, pod.metadata.uid))
            record.node = record.node or pod.spec.node_name
            for stage in _stages_reached(pod):
                if getattr(record, stage) is None:
                    setattr(record, stage, now)

    def _run(self) -> None:
        try:
            listed = self.core.list_namespaced_pod(self.namespace, label_selector=self.label_selector)
            now = time.monotonic() - self._t0
            for pod in listed.items:
                self._observe(pod, now)
            version = listed.metadata.resource_version
            self._started.set()
            while not self._stop.is_set():
                stream = watch.Watch().stream(self.core.list_namespaced_pod, self.namespace,
                                              label_selector=self.label_selector, resource_version=version,
                                              timeout_seconds=1, allow_watch_bookmarks=True)
                for event in stream:
                    version = event["object"].metadata.resource_version
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._observe(event["object"], time.monotonic() - self._t0)
        except ApiException as error:  # e.g. 410 Gone: reported, not hidden
            self.error = error
            log.warning("runtime watch stopped: %s", error)
        finally:
            self._started.set()

    def records(self) -> list[PodRuntime]:
        with self._lock:
            return [PodRuntime(**vars(r)) for r in self.pods.values()]

    def with_process_starts(self, starts: dict[str, list[float]]) -> list[PodRuntime]:
        """The records, with ``sandbox`` and ``started`` taken from when the pod's processes
        started (``time.monotonic()`` seconds by pod uid, sandbox first), where known.

        The kubelet reports sandbox, containers started and Ready in one status update for a
        quick pod, so the watch alone sees them at the same instant; the processes tell apart.
        """
        records = self.records()
        for record in records:
            times = starts.get(record.uid) or []
            if len(times) >= 2:
                record.sandbox, record.started = times[0] - self._t0, times[-1] - self._t0
        return records

    def ready_count(self) -> int:
        with self._lock:
            return sum(1 for r in self.pods.values() if r.ready is not None)


def medians(records: list[PodRuntime]) -> dict[str, float | None]:
    """The median of every span over the pods that went through it (seconds)."""
    found: dict[str, Any] = {}
    for name in SPANS:
        values = [v for v in (r.span(name) for r in records) if v is not None]
        found[name] = statistics.median(values) if values else None
    found["pods"] = len(records)
    return found


def process_stage_rows(api: client.ApiClient, namespace: str, label_selector: str, started_at: float,
                       starts: dict[str, list[float]]) -> list[dict[str, Any]]:
    """Timeline rows (``sandbox``, ``started``) for the running pods of a measured run.

    ``started_at`` is the run's wall-clock start (the timeline's zero); ``starts`` gives each
    pod's process start times by uid in ``time.monotonic()`` seconds, sandbox first.
    """
    to_wall = time.time() - time.monotonic()
    rows = []
    for pod in client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=label_selector).items:
        times = starts.get(pod.metadata.uid) or []
        if len(times) < 2:
            continue
        for stage, at in (("sandbox", times[0]), ("started", times[-1])):
            rows.append({"kind": "Pod", "object": pod.metadata.name, "stage": stage,
                         "t": at + to_wall - started_at, "node": pod.spec.node_name})
    return rows
