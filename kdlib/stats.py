"""Order statistics used by every analysis."""

from __future__ import annotations

from typing import Iterable

import numpy as np


def percentile(values: Iterable[float], p: float) -> float:
    """The ⌈p/100·n⌉-th smallest value (nearest rank): a time some real object reached.

    NaN and None are ignored; an empty input gives NaN.
    """
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], not {p}")
    array = np.asarray([v for v in values if v is not None], dtype=float)
    array = array[~np.isnan(array)]
    if array.size == 0:
        return float("nan")
    return float(np.percentile(array, p, method="inverted_cdf"))
