"""Tail latency with honest bounds: a percentile and a distribution-free 95% interval of it.

The number of samples below the true q-quantile is Binomial(n, q) whatever the distribution, so order
statistics bound it (as MLPerf's early stopping bounds its tail): an upper bound of p99 exists from
299 samples on, of p90 from 29. With fewer samples a percentile is still shown where it means
something (p90 from 10, p99 from 100), said to have too few samples for a bound. Pure: no torch.
"""

from __future__ import annotations

import math

CONFIDENCE = 0.95
# a percentile is only the largest value seen below this many samples: none is given
PERCENTILE_FROM = {90: 10, 99: 100}


def _binom_cdf(k: int, n: int, p: float) -> float:
    """P(Binomial(n, p) <= k), summed in log space over the terms that matter (n up to millions)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    mean, sd = n * p, math.sqrt(n * p * (1 - p)) or 1.0
    start = max(0, int(mean - 40 * sd) - 1)
    if k < start:
        return 0.0
    log_p, log_q, head = math.log(p), math.log1p(-p), math.lgamma(n + 1)
    return min(1.0, sum(math.exp(head - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q)
                        for i in range(start, k + 1)))


def upper_rank(n: int, q: float, confidence: float = CONFIDENCE) -> int | None:
    """The 1-based rank k whose order statistic x_(k) is at or above the true ``q``-quantile with
    probability ``confidence``: the smallest k with P(Binomial(n, q) <= k - 1) >= confidence;
    None where even the largest sample is not enough (too few samples)."""
    lo, hi = 1, n
    if n < 1 or _binom_cdf(n - 1, n, q) < confidence:
        return None
    while lo < hi:  # the cdf grows with k: bisect
        mid = (lo + hi) // 2
        if _binom_cdf(mid - 1, n, q) >= confidence:
            hi = mid
        else:
            lo = mid + 1
    return lo


def lower_rank(n: int, q: float, confidence: float = CONFIDENCE) -> int | None:
    """The rank j whose x_(j) is at or below the true ``q``-quantile with probability ``confidence``:
    the largest j with P(Binomial(n, q) >= j) >= confidence; None where none is."""
    if n < 1 or 1 - _binom_cdf(0, n, q) < confidence:
        return None
    lo, hi = 1, n
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if 1 - _binom_cdf(mid - 1, n, q) >= confidence:
            lo = mid
        else:
            hi = mid - 1
    return lo


def quantile_bounds(sorted_values: list[float], q: float,
                    confidence: float = CONFIDENCE) -> tuple[float | None, float | None]:
    """(lower, upper) bounds of the ``q``-quantile (a fraction, 0.99 for p99), each holding with
    probability ``confidence`` whatever the distribution; None where the samples are too few."""
    n = len(sorted_values)
    up, low = upper_rank(n, q, confidence), lower_rank(n, q, confidence)
    return (sorted_values[low - 1] if low else None), (sorted_values[up - 1] if up else None)


def samples_for_a_bound(q: float, confidence: float = CONFIDENCE) -> int:
    """How many samples an upper bound of the ``q``-quantile needs at least (p99: 299, p90: 29)."""
    return math.ceil(math.log(1 - confidence) / math.log(q))


def percentile(sorted_values: list[float], p: float) -> float:
    """The ``p``-th percentile (0-100) of sorted values, linearly interpolated (numpy's default)."""
    if not sorted_values:
        raise ValueError("no values")
    pos = (len(sorted_values) - 1) * p / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def tail_figures(sorted_values: list[float]) -> dict:
    """A cell's p90 and p99 (None below 10 and 100 samples) and each one's 95% upper bound (None below
    29 and 299 samples: too few for a bound), as ``latency_p90_s``, ``latency_p90_high_s``, ..."""
    out = {}
    for p, least in PERCENTILE_FROM.items():
        enough = len(sorted_values) >= least
        out[f"latency_p{p}_s"] = percentile(sorted_values, p) if enough else None
        out[f"latency_p{p}_high_s"] = quantile_bounds(sorted_values, p / 100)[1] if enough else None
    return out
