"""What the server scenario's points say: the highest rate each (model, setup, policy) sustains with
its tail under a limit, and the answer to "N requests a second, p99 under T, in M of memory: which
model, setup and policy?" (`recommend --qps`).

A point passes a limit only when its percentile's 95% upper bound is under it: a rate is never
credited on a point estimate. The peak is the highest passing rate measured; where a higher rate
was measured and did not pass, the peak lies between the two (``next_failed``).

The machine's speed moves between minutes: each point records how much slower its passes ran than
the model's first timing (``slowdown``), and a peak says how far the speeds of its search's points
ranged (``speed_range``), so a reader sees when the peak was found on a machine that would not hold
still.
"""

from __future__ import annotations

import math

from dataclasses import dataclass, field

from ..setup import Setup
from ..units import format_rate


@dataclass
class Served:
    """One model in one setup and batching policy, with its points."""

    model: str
    input_size: int
    setup: Setup
    max_batch: int
    max_wait_s: float
    instances: int
    points: list = field(default_factory=list)
    errors: list = field(default_factory=list)

    def policy_words(self) -> str:
        from ..measure.serving import Policy

        return Policy(self.max_batch, self.max_wait_s, self.instances).words()


def group(rows: list[dict]) -> list[Served]:
    out: dict[tuple, Served] = {}
    for r in rows:
        setup = Setup.of(r)
        key = (r["model"], r["input_size"], setup, r["max_batch"], r["max_wait_s"], r["instances"])
        served = out.setdefault(key, Served(*key))
        (served.points if r["status"] == "ok" else served.errors).append(r)
    return list(out.values())


def passes(point: dict, q: float, limit_s: float) -> bool:
    """Whether ``point`` shows its ``q``-percentile under ``limit_s``: measured for that percentile, its
    upper bound under the limit, never overloaded, and at the limit it was served for, its verdict a
    pass (which also asks the late share to be shown under ``1 - q`` over seconds of arrivals)."""
    shown = (point.get("q") is not None and abs(point["q"] - q) < 1e-9 and point.get("q_high_s") is not None
             and point["q_high_s"] <= limit_s and not point.get("overloaded"))
    if shown and point.get("limit_s") is not None and abs(point["limit_s"] - limit_s) < 1e-12:
        return point.get("verdict") == "pass"
    return shown


@dataclass
class Peak:
    served: Served
    qps: float | None  # the highest rate shown to pass, requests per second
    point: dict | None
    next_failed: float | None  # the lowest higher rate measured that did not pass
    disturbed: bool
    # the range of the points' pass times over the peak point's (None: not recorded): how far the
    # machine's speed moved along the search
    speed_range: tuple[float, float] | None = None
    # the longest point that met the limit at the peak's rate (seconds): a confirmation's 30 s, or one
    # short point's few seconds, which a fast phase of the machine can pass
    held_s: float | None = None

    def to_dict(self) -> dict:
        s = self.served
        return {"model": s.model, "input_size": s.input_size, **s.setup.to_dict(), "max_batch": s.max_batch,
                "max_wait_s": s.max_wait_s, "instances": s.instances, "peak_qps": self.qps,
                "next_failed_qps": self.next_failed, "q_high_s": self.point["q_high_s"] if self.point else None,
                "mem_peak_bytes": self.point.get("mem_peak_bytes") if self.point else None,
                "load_cpu_share": load_share(self.point) if self.point else None,
                "load_apart": self.point.get("load_apart") if self.point else None, "disturbed": self.disturbed,
                "speed_low": self.speed_range[0] if self.speed_range else None,
                "speed_high": self.speed_range[1] if self.speed_range else None, "held_s": self.held_s}


def load_share(point: dict) -> float | None:
    """The load generator's CPU time over the point's wall time (a share of one core)."""
    if not point.get("wall_s"):
        return None
    return (point.get("load_cpu_s") or 0.0) / point["wall_s"]


def fails(point: dict, q: float, limit_s: float) -> bool:
    """Whether ``point`` shows its ``q``-percentile over ``limit_s``: overloaded (requests waiting far
    beyond it), its verdict at the limit it was served for (a fail shown over seconds of arrivals, as
    the search decided), or at another limit its lower bound over that one."""
    if point.get("overloaded"):
        return True
    if point.get("q") is None or abs(point["q"] - q) >= 1e-9:
        return False
    if point.get("limit_s") is not None and abs(point["limit_s"] - limit_s) < 1e-12:
        return point.get("verdict") == "fail"
    return point.get("q_low_s") is not None and point["q_low_s"] > limit_s


def peak(served: Served, q: float, limit_s: float) -> Peak:
    """The highest rate that passed below every rate shown to fail: latency does not fall as the rate
    rises, so a pass above a fail was a fast phase of the machine (a confirmation served longer, or
    another point, refuted it)."""
    refuted = min((p["qps"] for p in served.points if fails(p, q, limit_s)), default=math.inf)
    ok = [p for p in served.points if passes(p, q, limit_s) and p["qps"] < refuted]
    best = max(ok, key=lambda p: p["qps"]) if ok else None
    rate = best["qps"] if best else None
    above = [p["qps"] for p in served.points if not passes(p, q, limit_s) and (rate is None or p["qps"] > rate)]
    found = Peak(served, rate, best, min(above) if above else None, bool(best and best.get("disturbed")))
    if best is not None:
        found.held_s = max(p.get("wall_s") or 0.0 for p in ok if p["qps"] == rate) or None
        speeds = speeds_seen(served.points, best)
        if speeds:
            found.speed_range = (min(speeds), max(speeds))
    return found


def _pass_time(point: dict) -> float | None:
    """A point's pass time at its smallest batch size (seconds): its slowdown times the service time
    its worker measured first; None where the point did not record them."""
    medians = {int(b): float(t) for b, t in (point.get("service_s") or {}).items() if t}
    if not point.get("slowdown") or not medians:
        return None
    return point["slowdown"] * medians[min(medians)]


def speeds_seen(points: list[dict], best: dict) -> list[float]:
    """Each point's pass time over ``best``'s: the machine's speeds along the search (empty where
    ``best`` has no speed recorded). Points other processes disturbed are left out: they are flagged
    (and served again under --on-busy wait), and the range is the machine's own drift."""
    base = _pass_time(best)
    if not base:
        return []
    times = [_pass_time(p) for p in points if p is best or not p.get("disturbed")]
    return [round(t / base, 4) for t in times if t]


def peaks(rows: list[dict], q: float, limit_s: float) -> list[Peak]:
    return [peak(s, q, limit_s) for s in group(rows)]


@dataclass
class ServingVerdict:
    peak: Peak
    top1: float | None
    broken: list[str]

    @property
    def ok(self) -> bool:
        return not self.broken


def answer(rows: list[dict], top1: dict, qps: float, q: float, limit_s: float, max_memory: float | None) -> list:
    """Each (model, setup, policy) against the load: a `ServingVerdict` per one, those that meet it
    first, most accurate first (then the largest margin of rate). ``top1``: {(model, input size): %}."""
    out = []
    for p in peaks(rows, q, limit_s):
        broken = []
        if p.qps is None:
            broken.append(f"no rate measured met p{100 * q:g} <= {limit_s * 1e3:.3g} ms")
        elif p.qps < qps:
            broken.append(f"sustains {format_rate(p.qps)} requests/s, not {qps:g}")
        memory = p.point.get("mem_peak_bytes") if p.point else None
        if max_memory is not None and memory is not None and memory > max_memory:
            broken.append(f"serving takes {memory / 2**20:.0f} MiB, above {max_memory / 2**20:.0f} MiB")
        out.append(ServingVerdict(p, top1.get((p.served.model, p.served.input_size)), broken))
    return sorted(out, key=lambda v: (not v.ok, -(v.top1 if v.top1 is not None else -1), -(v.peak.qps or 0)))
