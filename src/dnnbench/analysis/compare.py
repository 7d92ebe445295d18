"""Is model A faster than model B on this machine? Only when the measurements support it.

Absolute times drift on a shared machine (2x between minutes is common), but a sweep measures every
model once per round, round after round, in a random order: within one round, A and B see the same
machine. So the ratio of A's and B's medians *in the same round* cancels most of the drift, and the
spread of that ratio over the rounds gives its interval (a t-interval on the log ratios, n - 1
degrees of freedom). With fewer than two shared rounds, the ratio's interval is the conservative one
from the two medians' intervals (A's low over B's high, A's high over B's low).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..measure.latency import t975


@dataclass(frozen=True)
class Ratio:
    """A's latency over B's: ``value`` with its 95% interval [``low``, ``high``]; ``paired``: from
    ``rounds`` shared rounds, else from the two medians' intervals."""

    value: float
    low: float
    high: float
    paired: bool
    rounds: int

    @property
    def verdict(self) -> str:
        """``faster`` (A's time is below B's with 95% confidence), ``slower``, or ``tie``."""
        if self.high < 1:
            return "faster"
        if self.low > 1:
            return "slower"
        return "tie"

    def describe(self, a: str, b: str) -> str:
        how = f"paired over {self.rounds} rounds" if self.paired else "from the two medians' intervals"
        interval = f"{self.value:.2f}x (95% interval {self.low:.2f}x to {self.high:.2f}x, {how})"
        if self.verdict == "tie":
            return f"{a} and {b} cannot be told apart at this precision: time ratio {interval}"
        return f"{a} is {'faster' if self.verdict == 'faster' else 'slower'} than {b}: time ratio {interval}"


def latency_ratio(a: dict, b: dict) -> Ratio | None:
    """A's latency over B's, from two successful cells (store rows) of the same batch size."""
    if a.get("status") != "ok" or b.get("status") != "ok":
        return None
    ma, mb = a.get("latency_median_s"), b.get("latency_median_s")
    if not ma or not mb:
        return None
    value = ma / mb
    ra, rb = a.get("round_medians") or [], b.get("round_medians") or []
    n = min(len(ra), len(rb))
    if n >= 2:
        logs = [math.log(x / y) for x, y in zip(ra[:n], rb[:n], strict=True)]
        mean = sum(logs) / n
        sd = math.sqrt(sum((v - mean) ** 2 for v in logs) / (n - 1))
        half = t975(n - 1) * sd / math.sqrt(n)
        low, high = math.exp(mean - half), math.exp(mean + half)
        return Ratio(value, min(low, value), max(high, value), True, n)
    la, ha = a.get("latency_ci_low_s"), a.get("latency_ci_high_s")
    lb, hb = b.get("latency_ci_low_s"), b.get("latency_ci_high_s")
    if None in (la, ha, lb, hb) or lb <= 0 or hb <= 0:
        return Ratio(value, 0.0, math.inf, False, n)  # no interval: nothing can be said
    return Ratio(value, la / hb, ha / lb, False, n)
