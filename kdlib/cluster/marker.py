"""Which directories are kdlib's: a marker file written when it makes one.

kdlib removes only a directory that carries the marker; one without it is refused, never
deleted. Every backend's state directories carry the same marker.
"""

from __future__ import annotations

from pathlib import Path

MARKER = ".kdlib-cluster"  # written at creation: only a directory carrying it is ever removed


def is_ours(directory: Path | str) -> bool:
    """True when kdlib made ``directory`` (it carries :data:`MARKER`)."""
    return (Path(directory) / MARKER).is_file()
