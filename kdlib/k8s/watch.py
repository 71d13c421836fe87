"""A raw-JSON watch of one namespaced resource: list, then one long watch, events as dicts.

Objects stay raw JSON (dicts): the client's model classes cost milliseconds per event,
which would delay what is observed. One long watch request runs at a time; ``stop()``
shuts its connection down, so no periodic reconnect adds latency. A compacted
resourceVersion (410) is answered by listing again.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable

from kubernetes import watch

from ..errors import ExperimentError

WATCH_SECONDS = 300  # one watch request's server-side lifetime

class Watcher(threading.Thread):
    """Lists, then watches, one namespaced resource; calls ``on_event(type, obj, seen_at)``.

    ``seen_at`` is this client's wall clock when the event arrived. ``synced`` is set once
    the first list has been delivered; ``error`` holds what stopped the thread, if anything.
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
        except BaseException as error:  # surfaced by the owner's check()
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
