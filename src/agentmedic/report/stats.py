"""Fleet statistics, pure: quantiles, performance tiers, robust outlier scores.

Tiers (``fast`` / ``normal`` / ``slow``) compare an agent's p95 latency with the fleet's:
below the fleet's 25th percentile of p95s is ``fast``, above its 75th is ``slow``, the rest
``normal``. Quantiles interpolate linearly between ranks (the "inclusive" method, as
``numpy.quantile``'s default). With fewer than :data:`MIN_AGENTS_FOR_TIERS` agents there
is no fleet to compare with and no tier.

Anomalies use the modified z-score of Iglewicz and Hoaglin:
``z = 0.6745 * (x - median) / MAD``, with MAD the median absolute deviation from the
median, robust to the very outliers it looks for (a mean and standard deviation would be
dragged by them). When more than half the fleet shares one value (MAD = 0, common for
error rates of 0) the mean absolute deviation stands in: ``z = (x - median) / (1.2533 *
MeanAD)``. A value is anomalous when ``z`` exceeds :data:`ANOMALY_THRESHOLD` (3.5, the
authors' recommendation). If every value is equal, nothing is anomalous.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Literal, TypeVar

__all__ = [
    "ANOMALY_THRESHOLD",
    "MIN_AGENTS_FOR_ANOMALIES",
    "MIN_AGENTS_FOR_TIERS",
    "Tier",
    "quantile",
    "robust_z_scores",
    "tiers",
]

ANOMALY_THRESHOLD = 3.5
MIN_AGENTS_FOR_TIERS = 4
MIN_AGENTS_FOR_ANOMALIES = 5

Tier = Literal["fast", "normal", "slow"]
K = TypeVar("K")


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) with linear interpolation between ranks."""
    if not values:
        raise ValueError("quantile of no values")
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"q must be within 0..1, got {q}")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def tiers(latencies: Mapping[K, float]) -> tuple[dict[K, Tier], tuple[float, float] | None]:
    """Each key's tier from its p95 latency, and the (p25, p75) fleet bounds used.

    Empty when the fleet has fewer than :data:`MIN_AGENTS_FOR_TIERS` latencies. A value
    equal to a bound is in the outer tier only when the bounds differ (a fleet whose
    agents all take the same time is all ``normal``).
    """
    if len(latencies) < MIN_AGENTS_FOR_TIERS:
        return {}, None
    values = list(latencies.values())
    p25, p75 = quantile(values, 0.25), quantile(values, 0.75)
    spread = p25 < p75
    out: dict[K, Tier] = {}
    for key, value in latencies.items():
        if value < p25 or (spread and value == p25):
            out[key] = "fast"
        elif value > p75 or (spread and value == p75):
            out[key] = "slow"
        else:
            out[key] = "normal"
    return out, (p25, p75)


def robust_z_scores(values: Mapping[K, float]) -> tuple[dict[K, float], float | None]:
    """The modified z-score of every value, and the median they are measured from.

    Empty (and ``None``) with fewer than :data:`MIN_AGENTS_FOR_ANOMALIES` values or when all
    are equal.
    """
    if len(values) < MIN_AGENTS_FOR_ANOMALIES:
        return {}, None
    data = list(values.values())
    median = statistics.median(data)
    deviations = [abs(v - median) for v in data]
    mad = statistics.median(deviations)
    if mad > 0:
        scale = mad / 0.6745
    else:
        mean_ad = statistics.fmean(deviations)
        if mean_ad == 0:
            return {}, median
        scale = 1.253314 * mean_ad
    return {key: (v - median) / scale for key, v in values.items()}, median
