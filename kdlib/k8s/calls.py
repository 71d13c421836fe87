"""Many API calls at once, stoppable: Ctrl-C cancels what has not started within a second;
and many objects created at once (:func:`create_all`)."""

from __future__ import annotations

import concurrent.futures
import json
from typing import Any, Callable, Iterable, TypeVar

from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

T = TypeVar("T")
R = TypeVar("R")


def parallel(fn: Callable[[T], R], items: Iterable[T], workers: int = 16) -> list[R]:
    """``[fn(item) for item in items]`` on ``workers`` threads, results in order.

    The first exception (or a Ctrl-C) cancels every call not yet started, instead of
    waiting for thousands of queued ones; calls already in flight finish (each is one
    short request).
    """
    items = list(items)
    if not items:
        return []
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(workers, len(items))))
    try:
        futures = [pool.submit(fn, item) for item in items]
        return [future.result() for future in futures]
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)


def create_all(api: ApiClient, path: str, objects: Iterable[dict[str, Any]], workers: int = 32) -> int:
    """POST each object (JSON) to ``path``; an object that exists already (409) counts as made.
    Returns how many were created.

    Through the client's own connection pool, TLS and credentials, but without its per-call
    request building: measured creating 1,000 kwok nodes on 2 cores, 0.6 CPU-s of this
    process against 3.4 with ``create_node`` (the cores are shared with the control plane,
    so the client's CPU is the apiserver's lost time: 2.75 s against 5.57 s).
    """
    url = api.configuration.host.rstrip("/") + path
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    token = api.configuration.auth_settings().get("BearerToken")
    if token and token.get("value"):
        headers[token["key"]] = token["value"]
    pool = api.rest_client.pool_manager

    def create(body: bytes) -> bool:
        response = pool.request("POST", url, body=body, headers=headers)
        if response.status == 409:
            return False
        if response.status != 201:
            raise ApiException(http_resp=_Reply(response))
        return True

    return sum(parallel(create, [json.dumps(o).encode() for o in objects], workers=workers))


class _Reply:
    """What :class:`ApiException` reads from a reply: status, reason, body, headers."""

    def __init__(self, response: Any) -> None:
        self.status, self.reason, self.data = response.status, response.reason, response.data

    def getheaders(self) -> Any:
        return {}
