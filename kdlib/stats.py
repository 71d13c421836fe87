"""Order statistics used by every analysis."""

from __future__ import annotations

from typing import Iterable

import numpy as np


def _finite(values: Iterable[float]) -> np.ndarray:
    array = np.asarray([v for v in values if v is not None], dtype=float)
    return array[~np.isnan(array)]


def original_percentile(values: Iterable[float], p: int) -> float:
    """The original artifact's p-th percentile: the sorted values at index ``(p*n)/100``.

    Integer division, 0-based: the (⌊p·n/100⌋ + 1)-th smallest of n values, which is how
    the original's e2e and breakdown clients pick their p90 pod. Where p·n/100 is a whole
    number it is one value past the nearest rank (:func:`percentile`): for 100 pods the
    91st, not the 90th. A time some real object reached. NaN and None are ignored; an
    empty input gives NaN.
    """
    if int(p) != p or not 0 <= p < 100:
        raise ValueError(f"the original's percentile takes a whole p in [0, 100), not {p}")
    array = np.sort(_finite(values))
    if array.size == 0:
        return float("nan")
    return float(array[(int(p) * array.size) // 100])


def percentile(values: Iterable[float], p: float) -> float:
    """The ⌈p/100·n⌉-th smallest value (nearest rank): a time some real object reached.

    NaN and None are ignored; an empty input gives NaN.
    """
    if not 0 < p <= 100:
        raise ValueError(f"percentile must be in (0, 100], not {p}")
    array = _finite(values)
    if array.size == 0:
        return float("nan")
    return float(np.percentile(array, p, method="inverted_cdf"))
