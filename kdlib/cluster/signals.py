"""Ctrl-C and SIGTERM held back while a step that must not be cut in half runs.

Starting a process and recording its pid, or stopping a cluster on every host: an
interrupt in the middle would leave something nobody records or cleans. Both backends
use it (the local one around ``Popen``, the SSH one around its clean-up).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block is done, then deliver them.

    Python-level handlers rather than a signal mask: a mask would be inherited by the
    child, which might then ignore our SIGTERM. Outside the main thread (where handlers
    cannot be set) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: pending.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in pending:
            signal.raise_signal(sig)
