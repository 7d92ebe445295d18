"""What the server scenario's points say: the highest rate each (model, setup, policy) sustains with
its tail under a limit, and the answer to "N requests a second, p99 under T, in M of memory: which
model, setup and policy?" (`recommend --qps`).

A point passes a limit only when its percentile's 95% upper bound is under it: a rate is never
credited on a point estimate. The peak is the highest passing rate measured; where a higher rate
was measured and did not pass, the peak lies between the two (``next_failed``).

The machine's speed moves between minutes, and a long run's tail is the mixture of its stretches:
each point records how much slower its passes ran than the model's first timing (``slowdown``), and
the peak is also read over the speeds its points saw (``sustained``): the measured peak scaled by
the queueing model's ratio of the peak over those speeds to the peak at the speed of its own point.
That is the rate a long run on this machine keeps; the measured peak is the rate of one stretch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

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
    upper bound under the limit, and never overloaded."""
    return (point.get("q") is not None and abs(point["q"] - q) < 1e-9 and point.get("q_high_s") is not None
            and point["q_high_s"] <= limit_s and not point.get("overloaded"))


@dataclass
class Peak:
    served: Served
    qps: float | None  # the highest rate shown to pass, requests per second
    point: dict | None
    next_failed: float | None  # the lowest higher rate measured that did not pass
    disturbed: bool
    # the peak over the speeds the points saw (requests per second), and those speeds' range as pass
    # times over the peak point's (None: the points did not record their speed)
    over_speeds: float | None = None
    speed_range: tuple[float, float] | None = None

    @property
    def sustained(self) -> float | None:
        """The rate to plan with: the peak over the speeds seen where known, else the measured peak."""
        return self.over_speeds if self.over_speeds is not None else self.qps

    def to_dict(self) -> dict:
        s = self.served
        return {"model": s.model, "input_size": s.input_size, **s.setup.to_dict(), "max_batch": s.max_batch,
                "max_wait_s": s.max_wait_s, "instances": s.instances, "peak_qps": self.qps,
                "next_failed_qps": self.next_failed, "q_high_s": self.point["q_high_s"] if self.point else None,
                "mem_peak_bytes": self.point.get("mem_peak_bytes") if self.point else None,
                "load_cpu_share": load_share(self.point) if self.point else None,
                "load_apart": self.point.get("load_apart") if self.point else None, "disturbed": self.disturbed,
                "sustained_qps": self.sustained,
                "speed_low": self.speed_range[0] if self.speed_range else None,
                "speed_high": self.speed_range[1] if self.speed_range else None}


def load_share(point: dict) -> float | None:
    """The load generator's CPU time over the point's wall time (a share of one core)."""
    if not point.get("wall_s"):
        return None
    return (point.get("load_cpu_s") or 0.0) / point["wall_s"]


def peak(served: Served, q: float, limit_s: float) -> Peak:
    ok = [p for p in served.points if passes(p, q, limit_s)]
    best = max(ok, key=lambda p: p["qps"]) if ok else None
    rate = best["qps"] if best else None
    above = [p["qps"] for p in served.points if not passes(p, q, limit_s) and (rate is None or p["qps"] > rate)]
    found = Peak(served, rate, best, min(above) if above else None, bool(best and best.get("disturbed")))
    if best is not None:
        speeds = speeds_seen(served.points, best)
        if speeds:
            ratio = _over_speeds_ratio(tuple(sorted(_medians(best).items())), served.max_batch, served.max_wait_s, served.instances, q,
                                       limit_s, tuple(speeds))
            if ratio is not None:
                found.over_speeds = rate * ratio
                found.speed_range = (min(f for f, _ in speeds), max(f for f, _ in speeds))
    return found


def _medians(point: dict) -> dict[int, float]:
    return {int(b): float(t) for b, t in (point.get("service_s") or {}).items() if t}


def _pass_time(point: dict) -> float | None:
    """A point's pass time at its smallest batch size (seconds): its slowdown times the service time
    its worker measured first; None where the point did not record them."""
    medians = _medians(point)
    if not point.get("slowdown") or not medians:
        return None
    return point["slowdown"] * medians[min(medians)]


def speeds_seen(points: list[dict], best: dict) -> list[tuple[float, float]]:
    """Each point's speed as its pass time over ``best``'s, with its wall time as weight: the
    stretches of the machine the search saw (empty where ``best`` has no speed recorded)."""
    base = _pass_time(best)
    if not base:
        return []
    return [(round(_pass_time(p) / base, 4), round(p["wall_s"], 3)) for p in points
            if _pass_time(p) and (p.get("wall_s") or 0) > 0]


@lru_cache(maxsize=256)
def _over_speeds_ratio(medians_items, max_batch, max_wait_s, instances, q, limit_s, speeds) -> float | None:
    from ..measure.serving import Policy, peak_over_speeds

    medians = dict(medians_items)
    policy = Policy(max_batch, max_wait_s, instances)
    mixed = peak_over_speeds(medians, policy, q, limit_s, list(speeds))
    alone = peak_over_speeds(medians, policy, q, limit_s, [(1.0, 1.0)])
    return min(1.0, mixed / alone) if mixed and alone else None


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
        elif p.sustained < qps:
            broken.append(f"sustains {format_rate(p.sustained)} requests/s, not {qps:g}" + (
                f" (its peak of {format_rate(p.qps)} was measured at a faster stretch)" if p.qps >= qps else ""))
        memory = p.point.get("mem_peak_bytes") if p.point else None
        if max_memory is not None and memory is not None and memory > max_memory:
            broken.append(f"serving takes {memory / 2**20:.0f} MiB, above {max_memory / 2**20:.0f} MiB")
        out.append(ServingVerdict(p, top1.get((p.served.model, p.served.input_size)), broken))
    return sorted(out, key=lambda v: (not v.ok, -(v.top1 if v.top1 is not None else -1), -(v.peak.sustained or 0)))
