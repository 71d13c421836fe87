"""Waiting for nodes to be Ready: kwok's fake nodes and real nodes alike, on any backend.

The nodes are listed as raw JSON (2,000 model objects would take seconds to deserialize on
every poll) and selected by label; a backend that can tell why a node will never come
(its kubelet died) says so through ``check``, and names what to raise at the deadline.
"""

from __future__ import annotations

import json
from typing import Callable, Iterable

from kubernetes import client

from ...wait import wait_until


def ready_nodes(api: client.ApiClient, selector: str) -> set[str]:
    """The names of the nodes matching ``selector`` whose Ready condition is True."""
    response = client.CoreV1Api(api).list_node(label_selector=selector, _preload_content=False)
    ready = set()
    for node in json.loads(response.data)["items"]:
        conditions = node.get("status", {}).get("conditions") or []
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions):
            ready.add(node["metadata"]["name"])
    return ready


def wait_ready(api: client.ApiClient, names: Iterable[str], *, selector: str, deadline: float,
               error: Callable[[list[str]], BaseException], exactly: bool = False, interval: float = 0.2,
               check: Callable[[], None] | None = None) -> None:
    """Poll until every node of ``names`` is Ready (with ``exactly``: and no other node
    matches ``selector``). Between two polls ``check`` may raise (a component that died);
    at ``deadline`` (``time.monotonic()``) ``error(missing)`` is raised, ``missing`` being the
    names not Ready, sorted."""
    wanted = set(names)
    missing: list[str] = sorted(wanted)

    def done() -> bool:
        ready = ready_nodes(api, selector)
        missing[:] = sorted(wanted - ready)
        if ready == wanted if exactly else not missing:
            return True
        if check is not None:
            check()
        return False

    wait_until(done, deadline=deadline, interval=interval, error=lambda: error(list(missing)))
