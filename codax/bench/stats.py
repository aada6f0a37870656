"""Summary statistics the benchmarks share."""

from __future__ import annotations

import math


def geomean(xs: list[float]) -> float:
    """Geometric mean of positive ratios (NaN for none): the average that treats x and 1/x alike."""
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")
