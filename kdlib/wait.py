"""Waiting until something holds, with a deadline: the one polling loop of kdlib (tenacity's).

A start-up waits for a component's health endpoint, for nodes to be Ready, for a socket;
a clean-up waits for processes to be gone. Each names what it waits for and what to raise
when the time is up; an exception raised by the condition itself (a component that died
meanwhile) ends the wait at once.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

import tenacity

T = TypeVar("T")


def wait_until(condition: Callable[[], T], *, timeout: float | None = None, deadline: float | None = None,
               interval: float = 0.2, what: str = "the condition",
               error: Callable[[], BaseException] | None = None) -> T:
    """Call ``condition`` every ``interval`` seconds until it returns something true, and return that.

    The time is given as ``timeout`` (seconds from now) or ``deadline`` (a ``time.monotonic()``
    value); ``condition`` is called at least once, even past the deadline. When the time is up,
    ``error()`` is raised, or :class:`TimeoutError` naming ``what``.
    """
    if (timeout is None) == (deadline is None):
        raise TypeError("wait_until needs either timeout or deadline")
    end = time.monotonic() + timeout if deadline is None else deadline
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_result(lambda result: not result),
        stop=lambda state: time.monotonic() > end,
        wait=tenacity.wait_fixed(interval),
    )
    try:
        return retrying(condition)
    except tenacity.RetryError:
        if error is not None:
            raise error() from None
        waited = f"{timeout:g} s" if timeout is not None else "the deadline"
        raise TimeoutError(f"{what}: not reached within {waited}") from None
