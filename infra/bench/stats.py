"""Small pure statistics for the benchmark: percentiles, latency summaries, ratios, a linear fit."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation between ranks (numpy's default); None when empty."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is not allowed; expected a number from 0 to 100")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float | None:
    return percentile(values, 50)


def latency_summary(latencies_s: Sequence[float]) -> dict[str, float | None]:
    """p50, p99 and max in milliseconds of latencies given in seconds."""
    ms = [x * 1000 for x in latencies_s]
    return {"p50_ms": percentile(ms, 50), "p99_ms": percentile(ms, 99), "max_ms": max(ms) if ms else None}


def throughput(requests: int, metrics_per_request: int, elapsed_s: float) -> dict[str, float]:
    """Requests/s and metrics/s over a measured window."""
    if elapsed_s <= 0:
        return {"requests_per_s": 0.0, "metrics_per_s": 0.0}
    return {"requests_per_s": requests / elapsed_s, "metrics_per_s": requests * metrics_per_request / elapsed_s}


def ratio(value: float | None, baseline: float | None) -> float | None:
    """value / baseline, or None when either is missing or the baseline is zero (no made-up infinities)."""
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> dict[str, float]:
    """Least-squares y = fixed + slope * x, with R²; needs at least two distinct x values."""
    if len(xs) != len(ys):
        raise ValueError(f"linear fit needs as many x as y values; got {len(xs)} and {len(ys)}")
    if len(set(xs)) < 2:
        raise ValueError("linear fit needs at least two distinct x values")
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    fixed = my - slope * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - fixed - slope * x) ** 2 for x, y in zip(xs, ys))
    return {"fixed": fixed, "slope": slope, "r2": 1 - ss_res / ss_tot if ss_tot else 1.0}


def split_clients(clients: int, processes: int) -> list[int]:
    """Threads per load process: `clients` spread as evenly as possible over at most `processes` processes."""
    if clients < 1 or processes < 1:
        raise ValueError(f"clients and processes must be at least 1; got {clients} and {processes}")
    used = min(clients, processes)
    return [clients // used + (1 if i < clients % used else 0) for i in range(used)]


def parse_int_list(text: str) -> list[int]:
    """'1,8,32' -> [1, 8, 32]; a list of positive integers, in the order given, without repeats."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{text!r} is not allowed; expected positive integers separated by commas, like 1,8,32") from None
    if not values or any(v < 1 for v in values):
        raise ValueError(f"{text!r} is not allowed; expected positive integers separated by commas, like 1,8,32")
    return list(dict.fromkeys(values))
