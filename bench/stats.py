"""The few statistics every benchmark reports, defined once."""

from __future__ import annotations

import statistics
from collections.abc import Iterable


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank on the sorted values; NaN if empty."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def median(values: Iterable[float]) -> float | None:
    """The median, or None for no values."""
    got = [v for v in values if v is not None]
    return statistics.median(got) if got else None


def ratio(numerator: float | None, denominator: float | None, digits: int = 3) -> float | None:
    """``numerator / denominator`` rounded, None when either is missing or the denominator 0."""
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, digits)
