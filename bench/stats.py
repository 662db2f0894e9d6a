"""Turning timestamps into rates and percentiles: the steady window, totals, per-second series."""

from __future__ import annotations

from collections.abc import Sequence

NS = 1_000_000_000
# The steady window: between the moments 10% and 90% of the total had arrived.
WINDOW = (0.10, 0.90)


def steady_rate(times_ns: Sequence[int], weights: Sequence[int] | None = None) -> float:
    """Per second over the steady window of sorted ``times_ns`` (weighted by ``weights``)."""
    if len(times_ns) < 10:
        return 0.0
    pairs = sorted(zip(times_ns, weights or [1] * len(times_ns), strict=True))
    total = sum(w for _, w in pairs)
    low, high = total * WINDOW[0], total * WINDOW[1]
    seen = 0
    t_low = t_high = None
    counted = 0
    for t, w in pairs:
        seen += w
        if t_low is None and seen >= low:
            t_low, counted = t, seen
        if seen >= high:
            t_high = t
            counted = seen - counted
            break
    if t_low is None or t_high is None or t_high <= t_low:
        return 0.0
    return counted * NS / (t_high - t_low)


def total_rate(count: int, start_ns: int, end_ns: int) -> float:
    """``count`` per second from ``start_ns`` to ``end_ns``."""
    return count * NS / (end_ns - start_ns) if end_ns > start_ns else 0.0


def per_second(times_ns: Sequence[int], start_ns: int) -> list[int]:
    """How many of ``times_ns`` fell in each whole second after ``start_ns``."""
    if not times_ns:
        return []
    buckets = [0] * (int((max(times_ns) - start_ns) // NS) + 1)
    for t in times_ns:
        buckets[max(0, int((t - start_ns) // NS))] += 1
    return buckets


def percentiles(values_ms: Sequence[float]) -> dict[str, float]:
    """p50, p95, p99 and max (nearest rank) of ``values_ms``."""
    if not values_ms:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "max": float("nan")}
    ordered = sorted(values_ms)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]

    return {"p50": rank(0.50), "p95": rank(0.95), "p99": rank(0.99), "max": ordered[-1]}
