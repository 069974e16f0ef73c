"""Percentiles for every bench: one definition (nearest rank), so that their figures compare."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank Q quantile of VALUES (0 < Q <= 1): the smallest value with at least
    that share of VALUES at or below it. The 50th is the median (the middle two's mean)."""
    ordered = sorted(values)
    if q == 0.5:
        return statistics.median(ordered)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summary(
    values: Sequence[float],
    quantiles: Sequence[float] = (0.5, 0.95),
    unit: str = "ms",
    scale: float = 1.0,
    digits: int = 2,
) -> dict[str, float | None]:
    """`p50_<unit>`, ... for each of QUANTILES and `max_<unit>` of VALUES times SCALE, rounded
    to DIGITS (None where there are no values), and `n`."""
    scaled = [v * scale for v in values]
    figures: dict[str, float | None] = {
        f"p{round(q * 100)}_{unit}": round(percentile(scaled, q), digits) if scaled else None
        for q in quantiles
    }
    figures[f"max_{unit}"] = round(max(scaled), digits) if scaled else None
    return {**figures, "n": len(scaled)}
