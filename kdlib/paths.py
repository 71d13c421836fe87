"""Where kdlib's files live: the checkout (tools/, book/, results/), the user's cache and state.

Every path outside the package is computed here, so that an installed kdlib (not only a
checkout) finds its files: ``$KDLIB_REPO`` names the checkout when the package is
installed elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

PACKAGE = Path(__file__).resolve().parent


def repo_root() -> Path:
    """The kdlib checkout: ``$KDLIB_REPO``, else the directory holding this package."""
    if os.environ.get("KDLIB_REPO"):
        root = Path(os.environ["KDLIB_REPO"]).expanduser().resolve()
    else:
        root = PACKAGE.parent
    if not (root / "tools").is_dir() or not (root / "notebooks").is_dir():
        raise ConfigError(f"{root} is not a kdlib checkout (no tools/ and notebooks/): "
                          "set KDLIB_REPO to the directory you cloned kdlib into")
    return root


def tools_dir() -> Path:
    """The Go modules that build the binaries."""
    return repo_root() / "tools"


def results_root() -> Path:
    """``$KDLIB_RESULTS_DIR``, else the checkout's ``results/``."""
    if os.environ.get("KDLIB_RESULTS_DIR"):
        return Path(os.environ["KDLIB_RESULTS_DIR"]).expanduser()
    return repo_root() / "results"


def cache_root() -> Path:
    """``$KDLIB_CACHE_DIR``, else ``$XDG_CACHE_HOME/kdlib``, else ``~/.cache/kdlib``."""
    if os.environ.get("KDLIB_CACHE_DIR"):
        return Path(os.environ["KDLIB_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kdlib"


def state_root() -> Path:
    """Where kdlib's clusters keep their files, one directory each (``local/``, ``suite/``):
    ``$KDLIB_STATE_DIR``, else ``$XDG_STATE_HOME/kdlib``, else ``~/.local/state/kdlib``."""
    if os.environ.get("KDLIB_STATE_DIR"):
        return Path(os.environ["KDLIB_STATE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "kdlib"
