"""Latency: warm up until timings settle, then time forward passes until the median is known to the
target precision or the cell's time budget is spent.

Pure logic over two callables (``step`` runs one forward pass, ``sync`` waits for the device) and a
clock, so the stopping rule is tested with a fake clock. Nothing here imports torch.

Statistics:
- the median of the per-pass wall times, and its 95% confidence interval from order statistics
  (distribution-free: the number of samples below the true median is Binomial(n, 1/2)); it exists
  from 6 samples on;
- p90 from 10 samples and p99 from 100 samples on (with fewer, they would only be the largest value
  seen, so they are absent), each with its distribution-free 95% upper bound from 29 and 299 samples
  on (``measure/tails.py``);
- over several rounds (separate worker processes at different times, ``dnnbench run --rounds``):
  the median of all samples, and an interval that also covers how much the rounds' medians differ
  (``rounds_interval``): within one process the samples share one memory layout, one thread
  placement and one minute of the machine's load, so their interval alone is too narrow to predict
  a second sweep.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

from .tails import percentile, tail_figures  # noqa: F401  (percentile: read from here by callers)

Clock = Callable[[], float]

STOP_REASONS = {
    "converged": "the confidence interval of the median reached the target",
    "time_cap": "the cell's time budget was spent first",
    "sample_cap": "the maximum number of samples was reached",
}


@dataclass(frozen=True)
class TimingPolicy:
    """When to stop warming up and when to stop measuring.

    ``target_ci``: stop once both ends of the 95% interval of the median lie within this fraction of
    the median. ``max_seconds``: the budget of timed passes per cell; it is honoured once the
    ``min_samples`` an interval needs are taken (a pass slower than the budget allows is the
    sweep's hard timeout to catch, not this rule's).
    """

    target_ci: float = 0.02
    max_seconds: float = 20.0
    min_samples: int = 6
    min_seconds: float = 1.0
    max_samples: int = 1_000_000
    warmup_min: int = 2
    warmup_min_seconds: float = 0.1
    warmup_tolerance: float = 0.10
    warmup_max_share: float = 0.25

    def __post_init__(self):
        if not 0 < self.target_ci < 1:
            raise ValueError(f"target_ci must be a fraction between 0 and 1, got {self.target_ci}")
        if self.max_seconds <= 0:
            raise ValueError(f"max_seconds must be above zero, got {self.max_seconds}")
        if self.min_samples < 3:
            # below 6 a window has no interval of its own: only a quick round's, whose cell pools its rounds
            raise ValueError("min_samples must be at least 3 (6 for a window's own 95% interval of the median)")
        if self.max_samples < self.min_samples:
            raise ValueError(f"max_samples ({self.max_samples}) must be at least min_samples ({self.min_samples})")


# min_seconds: a window of 0.3 s (6 passes of ResNet-18) met ±5% and then missed a repetition's median by
# up to 13% (benchmarks/drift.py): a shared host's speed wanders over about a second, so the window must span it
QUICK = TimingPolicy(target_ci=0.05, max_seconds=3.0, min_seconds=1.0, warmup_min_seconds=0.05)


@dataclass
class Warmup:
    n: int  # new passes (prior ones not counted); seconds and samples include the prior ones
    seconds: float
    settled: bool
    samples: list[float] = field(repr=False)


@dataclass
class LatencyResult:
    samples: list[float] = field(repr=False)
    median: float
    ci_low: float | None
    ci_high: float | None
    p90: float | None
    p99: float | None
    p90_high: float | None  # the 95% upper bound of p90 (None below 29 samples)
    p99_high: float | None  # of p99 (None below 299 samples)
    stop_reason: str
    window_s: float  # wall time from the start of the first timed pass to the end of the last

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def timed_s(self) -> float:
        return math.fsum(self.samples)

    @property
    def ci_rel(self) -> float | None:
        """The larger distance from the median to an end of its interval, as a fraction of the median."""
        if self.ci_low is None or self.median <= 0:
            return None
        return max(self.median - self.ci_low, self.ci_high - self.median) / self.median


# ------------------------------------------------------------------------------------------------
# statistics


def median(sorted_values: list[float]) -> float:
    n = len(sorted_values)
    if n == 0:
        raise ValueError("median of no values")
    mid = n // 2
    return sorted_values[mid] if n % 2 else (sorted_values[mid - 1] + sorted_values[mid]) / 2


def _median_rank(n: int, confidence: float) -> int:
    """The largest k with P(Binomial(n, 1/2) <= k - 1) <= (1 - confidence) / 2, or 0 if none."""
    alpha2 = (1 - confidence) / 2
    if n > 400:  # normal approximation with continuity correction; exact to within one rank here
        z = _z(confidence)
        return max(0, math.floor(n / 2 - z * math.sqrt(n) / 2 + 0.5))
    total, k, cumulative = 2**n, 0, 0
    while True:
        cumulative += math.comb(n, k)  # now P(X <= k) * 2^n
        if cumulative / total > alpha2:
            return k  # P(X <= k-1) <= alpha2 < P(X <= k)
        k += 1


def _z(confidence: float) -> float:
    # inverse normal CDF by bisection on erf (no scipy needed)
    target = 1 - (1 - confidence) / 2
    lo, hi = 0.0, 10.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if 0.5 * (1 + math.erf(mid / math.sqrt(2))) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def median_ci(sorted_values: list[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """Distribution-free confidence interval of the median: (x_(k), x_(n-k+1)); None below 6 samples."""
    n = len(sorted_values)
    k = _median_rank(n, confidence)
    if k < 1:
        return None
    return sorted_values[k - 1], sorted_values[n - k]


# two-sided 95% quantiles of Student's t for 1..30 degrees of freedom
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t975(df: int) -> float:
    """The 97.5% quantile of Student's t with ``df`` degrees of freedom (beyond 30: Cornish-Fisher)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class Drift:
    """How far a run's cells moved between their rounds: the standard deviation of their rounds' log
    medians about each cell's mean, pooled over ``cells`` cells (``df`` degrees of freedom). The
    machine's drift moves every cell alike, so one estimate from many cells is far sharper than any
    cell's own from two or three rounds."""

    sd: float
    df: int
    cells: int

    def to_dict(self) -> dict:
        return {"sd_log": self.sd, "df": self.df, "cells": self.cells}


def pooled_drift(round_medians: list[list[float]]) -> Drift | None:
    """The drift between rounds pooled over cells (each a list of its rounds' medians; cells of one
    round add nothing); None when no cell has two rounds."""
    squares, df, cells = 0.0, 0, 0
    for medians in round_medians:
        logs = [math.log(m) for m in medians if m and m > 0]
        if len(logs) < 2:
            continue
        mean = math.fsum(logs) / len(logs)
        squares += math.fsum((x - mean) ** 2 for x in logs)
        df += len(logs) - 1
        cells += 1
    return Drift(math.sqrt(squares / df), df, cells) if df else None


def rounds_interval(sorted_values: list[float], round_medians: list[float],
                    drift: Drift | None = None) -> tuple[float, float] | None:
    """95% interval of the median of samples pooled from several rounds.

    The union of the distribution-free interval of the pooled samples, the rounds' medians themselves,
    and a t-interval of the rounds' medians (on a log scale, as ratios: mean of log medians +- t * sd /
    sqrt(R), moved to the pooled median). The sd is the cell's own (t with R-1 degrees of freedom) or,
    given ``drift`` pooled over more degrees of freedom, the run's: with two rounds a cell's own has
    one degree of freedom and t(1) = 12.7 makes it useless, while the run's cells together have many.
    From three rounds on the cell's own still counts where it is wider (a cell can drift more than the
    others). With one round it is the distribution-free interval alone."""
    within = median_ci(sorted_values)
    r = len(round_medians)
    if r < 2:
        return within
    logs = [math.log(m) for m in round_medians]
    mean = math.fsum(logs) / r
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in logs) / (r - 1))
    half = t975(r - 1) * sd / math.sqrt(r)
    if drift is not None and drift.df > r - 1:
        pooled = t975(drift.df) * drift.sd / math.sqrt(r)
        half = max(half, pooled) if r >= 3 else pooled
    centre = median(sorted_values)
    low = min(centre * math.exp(-half), min(round_medians))
    high = max(centre * math.exp(half), max(round_medians))
    if within:
        low, high = min(low, within[0]), max(high, within[1])
    return low, high


def blocks_half_width(samples: list[float]) -> float | None:
    """Half-width, on a log scale, of a 95% t-interval of the medians of consecutive blocks of ``samples``
    (in the order taken): batch means. Successive passes are not independent: on a shared host the
    machine's speed wanders over a second or so, and the distribution-free interval, which assumes
    independent samples, is then too narrow. Blocks of passes see that wandering. None below 4 blocks
    of 3 passes."""
    blocks = min(8, len(samples) // 3)
    if blocks < 4:
        return None
    size = len(samples) // blocks
    logs = [math.log(max(median(sorted(samples[i * size:(i + 1) * size])), 1e-12)) for i in range(blocks)]
    mean = math.fsum(logs) / blocks
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in logs) / (blocks - 1))
    return t975(blocks - 1) * sd / math.sqrt(blocks)


def timing_interval(samples: list[float], ordered: list[float] | None = None) -> tuple[float, float] | None:
    """95% interval of the median of one window of passes: the distribution-free interval, widened to
    cover the wandering between blocks of passes (``blocks_half_width``); None below 6 samples."""
    ordered = sorted(samples) if ordered is None else ordered
    ci = median_ci(ordered)
    half = blocks_half_width(samples)
    if ci is None or half is None:
        return ci
    mid = median(ordered)
    return min(ci[0], mid * math.exp(-half)), max(ci[1], mid * math.exp(half))


def summarize(samples: list[float], stop_reason: str, window_s: float) -> LatencyResult:
    ordered = sorted(samples)
    ci = timing_interval(samples, ordered)
    tails = tail_figures(ordered)
    return LatencyResult(
        samples=list(samples), median=median(ordered),
        ci_low=ci[0] if ci else None, ci_high=ci[1] if ci else None,
        p90=tails["latency_p90_s"], p99=tails["latency_p99_s"],
        p90_high=tails["latency_p90_high_s"], p99_high=tails["latency_p99_high_s"],
        stop_reason=stop_reason, window_s=window_s)


# ------------------------------------------------------------------------------------------------
# the loops


def warm_up(step: Callable[[], object], policy: TimingPolicy, sync: Callable[[], object] | None = None,
            clock: Clock = time.perf_counter, prior: tuple[float, ...] = (), prior_settles: bool = False) -> Warmup:
    """Run ``step`` until two consecutive passes agree within ``warmup_tolerance`` (and at least
    ``warmup_min`` passes and ``warmup_min_seconds``), or a quarter of the cell's budget is spent.

    ``prior``: durations of passes already run at this batch size (the memory phase's), which count
    towards settling, so a pass of seconds is not run once more than needed. At least one new pass
    runs, unless ``prior_settles``: the prior passes are the whole warm-up (none runs)."""
    if prior and prior_settles:
        return Warmup(0, math.fsum(prior), True, list(prior))
    samples: list[float] = list(prior)
    start = clock() - math.fsum(prior)
    while True:
        t0 = clock()
        step()
        if sync is not None:
            sync()
        t1 = clock()
        samples.append(t1 - t0)
        spent = t1 - start
        if (len(samples) >= policy.warmup_min and spent >= policy.warmup_min_seconds
                and abs(samples[-1] - samples[-2]) <= policy.warmup_tolerance * samples[-2]):
            return Warmup(len(samples) - len(prior), spent, True, samples)
        if spent >= policy.warmup_max_share * policy.max_seconds and len(samples) >= policy.warmup_min:
            return Warmup(len(samples) - len(prior), spent, False, samples)


def time_until_precise(step: Callable[[], object], policy: TimingPolicy, sync: Callable[[], object] | None = None,
                       clock: Clock = time.perf_counter) -> LatencyResult:
    """Time ``step`` pass by pass until the median's 95% interval is within ``target_ci`` of it.

    Each sample is one pass: clock, step, sync (None: nothing to wait for, as on the CPU), clock.
    The rule is checked at growing intervals: after 12% more samples, and never twice within 50 ms of passes; and
    the loop keeps its bookkeeping to one append and two comparisons, so that a pass of tens of microseconds is timed
    as a plain loop would time it (benchmarks/overhead.py).
    """
    samples: list[float] = []
    append = samples.append
    min_samples, max_samples = policy.min_samples, policy.max_samples
    max_seconds, min_seconds, target = policy.max_seconds, policy.min_seconds, policy.target_ci
    next_check = min(min_samples, max_samples)
    n = 0
    begin = clock()
    while True:
        t0 = clock()
        step()
        if sync is not None:
            sync()
        t1 = clock()
        append(t1 - t0)
        n += 1
        if n < next_check and t1 - begin < max_seconds:
            continue
        spent = t1 - begin
        if n >= next_check:
            ordered = sorted(samples)
            # check again after 12% more samples, but not more often than every 50 ms of passes:
            # sorting costs O(n log n), which must stay small beside passes of microseconds
            next_check = min(n + max(1, n // 8, int(0.05 * n / spent) if spent > 0 else 1), max_samples)
            if spent >= min_seconds:
                ci = timing_interval(samples, ordered)
                mid = median(ordered)
                if ci and mid - ci[0] <= target * mid and ci[1] - mid <= target * mid:
                    return summarize(samples, "converged", spent)
        if n >= min_samples and spent >= max_seconds:
            return summarize(samples, "time_cap", spent)
        if n >= max_samples:
            return summarize(samples, "sample_cap", spent)
