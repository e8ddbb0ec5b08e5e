"""Fleet statistics, pure: quantiles, performance tiers, robust outlier scores.

A fleet report is read by people who act on it, so a flag or a tier boundary must stand for
a difference worth acting on, never for noise between agents that behave the same.

**Tiers** (``fast`` / ``normal`` / ``slow``) come from natural breaks in the agents' p95
latencies. A boundary may only lie in a gap between two neighbouring values (in sorted
order) that is at least :data:`TIER_MIN_GAP` relative (the upper value at least 25% above
the lower) and at least ``min_gap`` absolute; so two agents within 25% of each other are
always in the same tier. Among those gaps, at most one below the fleet's median agent (the
fast boundary) and one above it (the slow boundary) are kept, the pair that leaves the
tightest tiers (Fisher-Jenks: the least sum of squared deviations of log latency within
the tiers). The tier holding the median agent is ``normal``. A fleet without such gaps is
all ``normal``; with fewer than :data:`MIN_AGENTS_FOR_TIERS` agents there is no fleet to
compare with and no tier.

**Anomalies**: an agent is flagged when its value is far above the fleet's on three counts
at once:

1. a robust z-score ``(x - median) / scale`` above :data:`ANOMALY_THRESHOLD` (3.5), with
   ``scale = 1.4826 * MAD`` (the median absolute deviation, robust to the very outliers it
   looks for, scaled to a standard deviation for normal data) but never less than
   :data:`MAD_FLOOR` (5%) of the median nor than the metric's absolute floor: a fleet of
   near-equal values has a MAD near 0, which would turn a gap of one token into a score
   of billions;
2. a gap from the median of at least :data:`MIN_RELATIVE_GAP` (25%) of the median and at
   least the metric's absolute minimum gap (for a median of 0, as error rates often are);
3. at least :data:`MIN_AGENTS_FOR_ANOMALIES` agents to compare with (the caller also
   leaves out agents with too few executions).

Scores are reported rounded to two decimals and capped at :data:`SCORE_CAP`: beyond that
the number says nothing more than "far".
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

__all__ = [
    "ANOMALY_THRESHOLD",
    "MAD_FLOOR",
    "MIN_AGENTS_FOR_ANOMALIES",
    "MIN_AGENTS_FOR_TIERS",
    "MIN_RELATIVE_GAP",
    "SCORE_CAP",
    "TIER_MIN_GAP",
    "Floors",
    "Tier",
    "anomalies",
    "quantile",
    "robust_z_scores",
    "rounded_score",
    "tiers",
]

ANOMALY_THRESHOLD = 3.5
"""Iglewicz and Hoaglin's recommended cut for a robust z-score."""
MIN_RELATIVE_GAP = 0.25
MAD_FLOOR = 0.05
"""The least scale, as a share of the median's magnitude."""
SCORE_CAP = 100.0
TIER_MIN_GAP = 0.25
MIN_AGENTS_FOR_TIERS = 4
MIN_AGENTS_FOR_ANOMALIES = 5
_MAD_TO_SIGMA = 1.4826

Tier = Literal["fast", "normal", "slow"]
K = TypeVar("K")


@dataclass(frozen=True)
class Floors:
    """A metric's absolute floors, in its own unit."""

    scale: float = 0.0
    """The least scale of its z-scores."""
    gap: float = 0.0
    """The least distance from the median for a flag."""


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


def _breaks(ordered: Sequence[float], min_gap: float) -> list[int]:
    """Indices ``i`` where a boundary may lie between ``ordered[i - 1]`` and ``ordered[i]``."""
    out = []
    for i in range(1, len(ordered)):
        low, high = ordered[i - 1], ordered[i]
        if high - low >= min_gap and high >= low * (1 + TIER_MIN_GAP) and high > low:
            out.append(i)
    return out


def tiers(
    latencies: Mapping[K, float], *, min_gap: float = 0.0
) -> tuple[dict[K, Tier], tuple[float | None, float | None] | None]:
    """Each key's tier from its p95 latency, and the bounds: the slowest ``fast`` value and
    the fastest ``slow`` one (``None`` for a tier nobody is in).

    Empty (and ``None``) when the fleet has fewer than :data:`MIN_AGENTS_FOR_TIERS`
    latencies. ``min_gap`` is the least absolute gap a boundary needs (in the values' unit).
    """
    if len(latencies) < MIN_AGENTS_FOR_TIERS:
        return {}, None
    ordered = sorted(latencies.values())
    n = len(ordered)
    reference = (n - 1) // 2  # the median agent (the lower one for an even count)
    candidates = _breaks(ordered, min_gap)
    lower = [None, *(i for i in candidates if i <= reference)]
    upper = [None, *(i for i in candidates if i > reference)]
    # Prefix sums of log latency and its square: any tier's sum of squared deviations in
    # O(1), so every pair of candidate boundaries is tried (there are few: each multiplies
    # the latency by 1.25 at least).
    logs = [math.log(max(v, 1e-9)) for v in ordered]
    s1 = [0.0]
    s2 = [0.0]
    for x in logs:
        s1.append(s1[-1] + x)
        s2.append(s2[-1] + x * x)

    def sse(lo: int, hi: int) -> float:
        count = hi - lo
        if count <= 0:
            return 0.0
        total = s1[hi] - s1[lo]
        return (s2[hi] - s2[lo]) - total * total / count

    best: tuple[float, int | None, int | None] | None = None
    for a in lower:
        for b in upper:
            cuts = [0, *(c for c in (a, b) if c is not None), n]
            cost = sum(sse(lo, hi) for lo, hi in itertools.pairwise(cuts))
            if best is None or cost < best[0] - 1e-12:
                best = (cost, a, b)
    assert best is not None
    _, fast_end, slow_start = best
    fast_max = ordered[fast_end - 1] if fast_end is not None else None
    slow_min = ordered[slow_start] if slow_start is not None else None
    out: dict[K, Tier] = {}
    for key, value in latencies.items():
        if fast_max is not None and value <= fast_max:
            out[key] = "fast"
        elif slow_min is not None and value >= slow_min:
            out[key] = "slow"
        else:
            out[key] = "normal"
    return out, (fast_max, slow_min)


def robust_z_scores(
    values: Mapping[K, float], floors: Floors = Floors()
) -> tuple[dict[K, float], float | None]:
    """Every value's robust z-score (unrounded, uncapped), and the median it is measured from.

    Empty (and ``None``) with fewer than :data:`MIN_AGENTS_FOR_ANOMALIES` values. The scale
    is ``1.4826 * MAD`` floored as the module says, so every score is finite; if the scale is
    still 0 (a fleet of zeros and no absolute floor) every value equals the median and
    scores 0.
    """
    if len(values) < MIN_AGENTS_FOR_ANOMALIES:
        return {}, None
    data = list(values.values())
    median = statistics.median(data)
    mad = statistics.median(abs(v - median) for v in data)
    scale = max(_MAD_TO_SIGMA * mad, MAD_FLOOR * abs(median), floors.scale)
    if scale <= 0:
        return dict.fromkeys(values, 0.0), median
    return {key: (v - median) / scale for key, v in values.items()}, median


def rounded_score(score: float) -> float:
    """A score as reported: two decimals, within +-:data:`SCORE_CAP`."""
    return round(max(-SCORE_CAP, min(SCORE_CAP, score)), 2)


def anomalies(
    values: Mapping[K, float], floors: Floors = Floors()
) -> tuple[dict[K, float], dict[K, float], float | None]:
    """The flagged keys with their reported score (high side only), every key's reported
    score, and the fleet's median (``None`` with too few values to judge)."""
    raw, median = robust_z_scores(values, floors)
    if median is None:
        return {}, {}, None
    least_gap = max(MIN_RELATIVE_GAP * abs(median), floors.gap)
    scores = {key: rounded_score(z) for key, z in raw.items()}
    flagged = {
        key: scores[key]
        for key, z in raw.items()
        if z > ANOMALY_THRESHOLD and values[key] - median >= least_gap
    }
    return flagged, scores, median
