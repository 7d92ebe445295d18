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
from dataclasses import dataclass, replace

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
    interleaved: bool = False  # the two sides took turns on the machine (`run --versus`)

    @property
    def verdict(self) -> str:
        """``faster`` (A's time is below B's with 95% confidence), ``slower``, or ``tie``."""
        if self.high < 1:
            return "faster"
        if self.low > 1:
            return "slower"
        return "tie"

    def describe(self, a: str, b: str) -> str:
        how = (f"in turns, over {self.rounds} round(s)" if self.interleaved else
               f"paired over {self.rounds} rounds" if self.paired else "from the two medians' intervals")
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
        return _paired(value, [math.log(x / y) for x, y in zip(ra[:n], rb[:n], strict=True)])
    la, ha = a.get("latency_ci_low_s"), a.get("latency_ci_high_s")
    lb, hb = b.get("latency_ci_low_s"), b.get("latency_ci_high_s")
    if None in (la, ha, lb, hb) or lb <= 0 or hb <= 0:
        return Ratio(value, 0.0, math.inf, False, n)  # no interval: nothing can be said
    return Ratio(value, la / hb, ha / lb, False, n)


# ---- comparing two measurements of one cell (`dnnbench compare`) ---------------------------------


def paired_rounds(base: dict, new: dict) -> list[tuple[float, float]]:
    """(base's, new's) round medians taken in the same run, round by round: a sweep visits every cell
    once per round, so the k-th rounds of two cells in one run saw the same minutes of the machine.
    None of them where either cell does not name the runs of its rounds (stored before schema 7)."""
    from ..store.rounds import round_runs

    runs_a, runs_b = round_runs(base), round_runs(new)
    ma, mb = base.get("round_medians") or [], new.get("round_medians") or []
    if runs_a is None or runs_b is None or len(runs_a) != len(ma) or len(runs_b) != len(mb):
        return []
    by_run: dict[str, tuple[list, list]] = {}
    for run, m in zip(runs_a, ma, strict=True):
        by_run.setdefault(run, ([], []))[0].append(m)
    for run, m in zip(runs_b, mb, strict=True):
        by_run.setdefault(run, ([], []))[1].append(m)
    return [pair for a, b in by_run.values() for pair in zip(a, b)]


def change(base: dict, new: dict) -> Ratio | None:
    """New's latency over base's (above 1: slower), with its 95% interval: from their interleaved
    rounds where the two took turns (`run --versus`, see `interleaved`); else paired over the rounds the
    two took in the same runs (two or more); else a Welch interval of the two sets of round medians
    (two or more each); else from the two medians' intervals."""
    if base.get("status") != "ok" or new.get("status") != "ok":
        return None
    if base.get("interleaved_rows") is not None and base["interleaved_rows"] is new.get("interleaved_rows"):
        return interleaved(base["interleaved_rows"])  # the two took turns: their own paired figure
    mb, mn = base.get("latency_median_s"), new.get("latency_median_s")
    if not mb or not mn:
        return None
    value = mn / mb
    pairs = paired_rounds(base, new)
    if len(pairs) >= 2:
        return _paired(value, [math.log(n / b) for b, n in pairs])
    ra, rn = base.get("round_medians") or [], new.get("round_medians") or []
    if len(ra) >= 2 and len(rn) >= 2:
        la, ln = [math.log(x) for x in ra], [math.log(x) for x in rn]
        va, vn = _variance(la) / len(la), _variance(ln) / len(ln)
        se = math.sqrt(va + vn)
        df = (va + vn) ** 2 / ((va**2 / (len(la) - 1) if va else 0) + (vn**2 / (len(ln) - 1) if vn else 0) or 1e-300)
        half = t975(max(1, math.floor(min(df, len(la) + len(ln) - 2)))) * se
        # the rounds (separate processes, minutes apart) are the independent repetitions: their
        # medians' spread on each side, around the ratio of the pooled medians
        centre = math.log(value)
        return Ratio(value, math.exp(centre - half), math.exp(centre + half), False, min(len(ra), len(rn)))
    own = latency_ratio({**base, "round_medians": None}, {**new, "round_medians": None})
    return None if own is None else Ratio(own.value, own.low, own.high, False, 0)


def interleaved(rows: list[dict]) -> Ratio | None:
    """New over base from one comparison's interleaved rounds (rows of the ``pairs`` table): a
    t-interval over the rounds' mean log ratios, since the rounds (fresh pairs of processes) are the
    independent repetitions; with one round, the interval of its paired blocks, which cannot cover
    what differs between two processes. None without a measured round."""
    ok = [r for r in rows if r.get("status") == "ok" and r.get("ratio")]
    if not ok:
        return None
    if len(ok) == 1:
        (r,) = ok
        return Ratio(r["ratio"], r["ratio_low"], r["ratio_high"], True, 1, interleaved=True)
    logs = [math.log(r["ratio"]) for r in ok]
    return replace(_paired(math.exp(sum(logs) / len(logs)), logs), interleaved=True)


def _paired(value: float, logs: list[float]) -> Ratio:
    """The ratio ``value`` with a t-interval of the mean of paired log ratios (two or more)."""
    k = len(logs)
    mean = sum(logs) / k
    half = t975(k - 1) * math.sqrt(_variance(logs) / k)
    low, high = math.exp(mean - half), math.exp(mean + half)
    return Ratio(value, min(low, value), max(high, value), True, k)


def _variance(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / (len(values) - 1)


VERDICTS = ("slower", "slower within the margin", "faster", "same", "undecided")


def verdict(ratio: Ratio, margin: float) -> str:
    """``slower``: shown slower (the interval above 1) and a slowdown beyond ``margin`` not ruled out;
    ``slower within the margin``: shown slower, but by less than ``margin``; ``faster``: shown faster;
    ``same``: the interval within the margin on both sides; ``undecided``: none of these (too wide)."""
    if ratio.low > 1:
        return "slower" if ratio.high > 1 + margin else "slower within the margin"
    if ratio.high < 1:
        return "faster"
    if ratio.low >= 1 / (1 + margin) and ratio.high <= 1 + margin:
        return "same"
    return "undecided"


def geometric_mean(ratios: list[Ratio]) -> Ratio | None:
    """The geometric mean of several cells' ratios, its interval the geometric mean of their ends: as
    wide as if every cell's error were the same (the drift of a shared machine moves all cells of a
    run together), never narrower than what the cells show."""
    ratios = [r for r in ratios if r is not None]
    if not ratios:
        return None

    def gm(values):
        return math.exp(sum(math.log(v) if v > 0 else -math.inf for v in values) / len(values)) \
            if all(v < math.inf for v in values) else math.inf

    return Ratio(gm([r.value for r in ratios]), gm([r.low for r in ratios]), gm([r.high for r in ratios]),
                 all(r.paired for r in ratios), min(r.rounds for r in ratios))
