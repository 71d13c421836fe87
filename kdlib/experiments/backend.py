"""The ``backend`` and ``inventory`` parameters every experiment shares, checked before
anything is provisioned (the inventory is read and validated, never connected to)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationInfo

from ..cluster import registry


def backend_problem(name: Any) -> str | None:
    """Why ``name`` is no backend this version offers, or None."""
    if not isinstance(name, str):
        return f"must be a name ({', '.join(registry.names())}), not {name!r}"
    return registry.problem(name)


def inventory_path(inventory: Any, info: ValidationInfo) -> Path | None:
    """The ``inventory`` parameter as a path (``~`` expanded), checked against the ``backend``
    declared before it (:func:`kdlib.cluster.registry.backend_problems`); a pydantic validator."""
    if isinstance(inventory, (str, Path)) and str(inventory):
        inventory = Path(inventory).expanduser()
    elif isinstance(inventory, str) or inventory is None:
        inventory = None
    if "backend" in info.data:  # a refused backend is reported on its own line
        found = [line.removeprefix("inventory: ") for line in registry.backend_problems(info.data["backend"], inventory)
                 if line.startswith("inventory: ")]
        if found:
            raise ValueError("\n".join(found))
    return inventory
