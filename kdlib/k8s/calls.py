"""Many API calls at once, stoppable: Ctrl-C cancels what has not started within a second."""

from __future__ import annotations

import concurrent.futures
from typing import Callable, Iterable, TypeVar

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
