"""Serving under load: requests that arrive on their own schedule, batched by a policy, and the
highest rate a model sustains with its tail latency under a limit (MLPerf's Server scenario).

Pure logic over numbers and a clock, so each part is tested on its own (nothing here imports torch):

- ``arrivals``: a Poisson schedule (independent exponential gaps at a rate, seeded), as LoadGen's
  Server scenario issues queries;
- the tail's bounds come from ``measure/tails.py`` (order statistics, as MLPerf's early stopping);
- ``Policy`` and ``serve``: the batching policy (an instance takes the oldest waiting requests when
  ``max_batch`` of them wait or the oldest has waited ``max_wait_s``) on a fake clock with given
  service times, the reference the real server in ``worker/serving.py`` follows;
- ``capacity``: the highest rate the measured batch latencies can sustain, where the peak search starts;
- ``verdict``: whether a point's tail is shown under the limit, shown over it, or not decided yet.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from .tails import CONFIDENCE, quantile_bounds, samples_for_a_bound  # noqa: F401  (the server's tail)


def arrivals(qps: float, n: int, seed: int) -> list[float]:
    """``n`` arrival times (seconds from the start) of a Poisson process of rate ``qps``."""
    if not qps > 0:
        raise ValueError(f"a rate of arrivals must be above zero, got {qps}")
    rng = random.Random(seed)
    t, out = 0.0, []
    for _ in range(n):
        t += rng.expovariate(qps)
        out.append(t)
    return out


# ---- the batching policy -------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """How a server batches: an instance that is free takes the oldest waiting requests, up to
    ``max_batch``, once ``max_batch`` of them wait or the oldest has waited ``max_wait_s``;
    ``instances`` copies of the model serve the one queue."""

    max_batch: int = 1
    max_wait_s: float = 0.0
    instances: int = 1

    def __post_init__(self):
        if not (isinstance(self.max_batch, int) and self.max_batch >= 1):
            raise ValueError(f"max_batch must be a whole number of at least 1, got {self.max_batch!r}")
        if not self.max_wait_s >= 0:
            raise ValueError(f"max_wait_s must be zero or more seconds, got {self.max_wait_s!r}")
        if not (isinstance(self.instances, int) and self.instances >= 1):
            raise ValueError(f"instances must be a whole number of at least 1, got {self.instances!r}")

    def words(self) -> str:
        batching = ("no batching" if self.max_batch == 1 else
                    f"batches of up to {self.max_batch}, waiting at most {self.max_wait_s * 1e3:.3g} ms")
        return f"{batching}, {self.instances} instance{'s' if self.instances > 1 else ''}"


def dispatch_time(arrived: list[float], head: int, free_at: float, policy: Policy) -> float:
    """When an instance free from ``free_at`` starts the batch whose oldest request is ``arrived[head]``:
    once the batch is full or the oldest has waited ``max_wait_s``, not before the instance is free."""
    oldest = arrived[head]
    full = head + policy.max_batch - 1
    full_at = arrived[full] if full < len(arrived) else math.inf
    return max(free_at, oldest, min(oldest + policy.max_wait_s, full_at))


def serve(arrived: list[float], service_s, policy: Policy) -> list[float]:
    """Each request's latency (completion minus arrival, seconds) under ``policy``, for requests
    arriving at ``arrived`` (sorted) and a batch of b taking ``service_s(b)`` seconds."""
    import heapq

    free = [0.0] * policy.instances
    latency = [0.0] * len(arrived)
    head = 0
    while head < len(arrived):
        free_at = heapq.heappop(free)
        start = dispatch_time(arrived, head, free_at, policy)
        end = head
        while end < len(arrived) and end - head < policy.max_batch and arrived[end] <= start:
            end += 1
        done = start + service_s(end - head)
        for i in range(head, end):
            latency[i] = done - arrived[i]
        heapq.heappush(free, done)
        head = end
    return latency


STALL = 3.0  # a pass over this many times its batch size's median is a stall of the machine


def capacity(batch_latency: dict[int, float], policy: Policy) -> float | None:
    """The highest rate (requests per second) the batch latencies measured one batch at a time
    (``{batch size: seconds}``) can sustain under ``policy``: the best images per second of a batch
    it may take, times the instances (an upper estimate: instances share the cores). None without
    a usable batch size."""
    rates = [b / t for b, t in batch_latency.items() if b <= policy.max_batch and t and t > 0]
    return max(rates) * policy.instances if rates else None


def predicted_peak(service: dict[int, list[float]], policy: Policy, q: float, limit_s: float,
                   requests: int = 10000, seed: int = 0) -> float | None:
    """The highest rate whose simulated ``q``-percentile stays under ``limit_s``: ``serve`` on a fake
    clock, each batch taking a service time drawn from those measured for the batch size it is
    padded to (``service``: {batch size: seconds of passes}). Where the real search starts; None
    where no batch size was measured.

    Passes over ``STALL`` times their batch size's median are left out of the draw: they are the
    machine's stalls, and one in 40 passes would otherwise stand for 2.5% of all requests and sink
    every rate (the real points meet the stalls as they come)."""
    sizes = sorted(b for b, times in service.items() if times)
    medians = {b: sorted(service[b])[len(service[b]) // 2] for b in sizes}
    top = capacity(medians, policy)
    if not top:
        return None
    service = {b: [t for t in service[b] if t <= STALL * medians[b]] for b in sizes}
    rng = random.Random(seed)

    def service_s(n: int) -> float:
        padded = next((b for b in sizes if b >= n), sizes[-1])
        return rng.choice(service[padded])

    def meets(rate: float) -> bool:
        latency = sorted(serve(arrivals(rate, requests, seed), service_s, policy))
        return latency[min(len(latency) - 1, int(q * len(latency)))] <= limit_s

    low, high = 0.0, top
    if meets(high):
        return high
    for _ in range(14):
        mid = (low + high) / 2
        low, high = (mid, high) if meets(mid) else (low, mid)
    return low or None


# ---- a point's verdict ---------------------------------------------------------------------------


def verdict(latencies: list[float], q: float, limit_s: float, confidence: float = CONFIDENCE,
            arrived: list[float] | None = None) -> str:
    """``pass`` when the ``q``-quantile's upper bound is under ``limit_s``, ``fail`` when its lower
    bound is over it, else ``open`` (more requests would decide).

    ``arrived`` (each request's arrival, seconds, in the order of ``latencies``): a verdict must also
    be shown over time, the share of requests over the limit bounded by batch means (`late_share`):
    under ``1 - q`` for a pass, over it for a fail. A queue's latencies come in runs: one stall of the
    machine makes a handful of requests late together, which the order statistics alone, counting
    requests as independent, would call a fail of the whole rate; and a pass on a few seconds that
    held one such run is a pass of those seconds only (squeezenet1_1: 74 requests/s passed on 490
    requests, then failed when served for 25 s)."""
    ordered = sorted(latencies)
    low, high = quantile_bounds(ordered, q, confidence)
    shown_under = high is not None and high <= limit_s
    shown_over = low is not None and low > limit_s
    if arrived is None or not (shown_under or shown_over):
        return "pass" if shown_under else "fail" if shown_over else "open"
    share = late_share(arrived, latencies, limit_s)
    if share is None:  # too few seconds of arrivals to tell runs apart: the order statistics decide
        return "pass" if shown_under else "open"
    if shown_under and share[1] <= 1.0 - q:
        return "pass"
    if shown_over and share[0] > 1.0 - q:
        return "fail"
    return "open"


def late_share(arrived: list[float], latencies: list[float], limit_s: float, block_s: float = 1.0,
               min_blocks: int = 3) -> tuple[float, float] | None:
    """The two-sided 95% interval (97.5% each side) of the share of requests over ``limit_s``, by
    batch means: the requests cut into blocks of ``block_s`` seconds of arrivals, each block's late
    share one observation, a t-interval over the blocks (steady-state simulation's method for
    correlated output). None with fewer than ``min_blocks`` blocks holding requests."""
    from .latency import t975

    if not arrived:
        return None
    start = min(arrived)
    blocks: dict[int, list[int]] = {}
    for at, latency in zip(arrived, latencies):
        counts = blocks.setdefault(int((at - start) / block_s), [0, 0])
        counts[0] += latency > limit_s
        counts[1] += 1
    shares = [late / n for late, n in blocks.values()]
    if len(shares) < min_blocks:
        return None
    mean = sum(shares) / len(shares)
    sd = math.sqrt(sum((s - mean) ** 2 for s in shares) / (len(shares) - 1))
    half = t975(len(shares) - 1) * sd / math.sqrt(len(shares))
    return mean - half, mean + half
