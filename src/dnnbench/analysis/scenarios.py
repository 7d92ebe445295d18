"""MLPerf Inference's four scenarios, answered from what a database holds, per model and setup.

- single-stream: one query of one image at a time; MLPerf reports its p90. The batch-1 cell: its
  median, its p90 and the p90's 95% upper bound.
- multi-stream: one query of 8 images at a time (MLPerf's ``samples_per_query``), the next issued
  when it returns; MLPerf reports its p99. The batch-8 cell is exactly that loop: its p99 and the
  bound, or that its passes are too few for a bound (299).
- offline: every image at once, throughput only. The batch curve's best images per second, with the
  batch that gives it and the 95% interval (batch over the interval of the median).
- server: Poisson arrivals under a tail limit; the highest rate the server scenario's points show
  under their limit (``analysis/serving.py``), with its policy.

The first three are views of the single-stream sweep's cells, not separate runs: one forward pass of
a batch timed back to back is what each of them issues on one instance. A scenario whose cell or
points are missing says what to run.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..setup import Setup
from .data import Measured
from .serving import group, peak

MULTI_STREAM_SAMPLES = 8  # images per query, as MLPerf's MultiStream issues them


@dataclass
class Scenarios:
    model: str
    setup: Setup
    single_stream: dict | None  # median_s, p90_s, p90_high_s, samples
    multi_stream: dict | None  # median_s, p99_s, p99_high_s, samples
    offline: dict | None  # images_per_s, low, high, batch_size
    server: dict | None  # peak_qps, q, limit_s, q_high_s, policy, disturbed

    def to_dict(self) -> dict:
        out = {"model": self.model, **self.setup.to_dict()}
        for name in ("single_stream", "multi_stream", "offline", "server"):
            for key, value in (getattr(self, name) or {}).items():
                out[f"{name}_{key}"] = value
        return out


def _tail_cell(m: Measured, batch: int, p: int) -> dict | None:
    """The cell of ``batch``: its median, its ``p``-th percentile and that percentile's upper bound."""
    cell = m.ok.get(batch)
    if cell is None:
        return None
    return {"median_s": cell["latency_median_s"], f"p{p}_s": cell.get(f"latency_p{p}_s"),
            f"p{p}_high_s": cell.get(f"latency_p{p}_high_s"), "samples": cell.get("samples"),
            "disturbed": bool(cell.get("disturbed"))}


def single_stream(m: Measured) -> dict | None:
    return _tail_cell(m, 1, 90)


def multi_stream(m: Measured) -> dict | None:
    return _tail_cell(m, MULTI_STREAM_SAMPLES, 99)


def offline(m: Measured) -> dict | None:
    """The batch size with the most images per second, and that throughput's 95% interval."""
    if not m.ok:
        return None
    batch, cell = max(m.ok.items(), key=lambda bc: bc[1]["images_per_s"])
    low, high = cell.get("latency_ci_high_s"), cell.get("latency_ci_low_s")  # a longer pass, fewer images
    return {"images_per_s": cell["images_per_s"], "low": batch / low if low else None,
            "high": batch / high if high else None, "batch_size": batch, "disturbed": bool(cell.get("disturbed"))}


def server_peaks(points: list[dict]) -> dict[tuple, dict]:
    """Per (model, setup), the best peak rate over its batching policies at the limit its points were
    measured under (the latest point's percentile and limit)."""
    best: dict[tuple, dict] = {}
    for served in group(points):
        latest = max(served.points + served.errors, key=lambda p: p.get("measured_at") or "")
        q, limit = latest.get("q"), latest.get("limit_s")
        if q is None or limit is None:
            continue
        found = peak(served, q, limit)
        key = (served.model, served.setup)
        entry = {"peak_qps": found.qps, "q": q, "limit_s": limit,
                 "q_high_s": found.point["q_high_s"] if found.point else None,
                 "policy": served.policy_words(), "disturbed": found.disturbed}
        if key not in best or (found.qps or 0) > (best[key]["peak_qps"] or 0):
            best[key] = entry
    return best


def scenarios(measured: list[Measured], points: list[dict]) -> list[Scenarios]:
    """One row per (model, setup) measured in either the sweep or the server scenario."""
    by_key = {(m.model, m.setup): m for m in measured}
    served = server_peaks(points)
    keys = sorted(set(by_key) | set(served), key=lambda k: (k[0], k[1].runtime()))
    out = []
    for key in keys:
        m = by_key.get(key)
        out.append(Scenarios(key[0], key[1], single_stream(m) if m else None, multi_stream(m) if m else None,
                             offline(m) if m else None, served.get(key)))
    return out


# ---- in words ------------------------------------------------------------------------------------

SAY_HOW = {
    "single_stream": "`dnnbench run MODEL --batch-sizes 1`",
    "multi_stream": f"`dnnbench run MODEL --batch-sizes {MULTI_STREAM_SAMPLES}`",
    "offline": "`dnnbench run MODEL` (the batch curve)",
    "server": "`dnnbench run MODEL --scenario server --p99 TIME`",
}


def _tail(figures: dict | None, p: int) -> str:
    from ..units import format_seconds

    if figures is None:
        return "-"
    value, high = figures.get(f"p{p}_s"), figures.get(f"p{p}_high_s")
    need = 29 if p == 90 else 299
    if value is None:
        return f"too few passes ({figures.get('samples')}) for p{p}"
    bound = f"≤ {format_seconds(high)}" if high is not None else f"no bound: {figures.get('samples')} passes < {need}"
    return f"{format_seconds(value)} ({bound}){' busy' if figures.get('disturbed') else ''}"


def _offline(figures: dict | None) -> str:
    from ..units import format_rate

    if figures is None:
        return "-"
    interval = (f" ({format_rate(figures['low'])}-{format_rate(figures['high'])})"
                if figures.get("low") and figures.get("high") else "")
    return (f"{format_rate(figures['images_per_s'])}{interval} at batch {figures['batch_size']}"
            f"{' busy' if figures.get('disturbed') else ''}")


def _server(figures: dict | None) -> str:
    from ..units import format_rate, format_seconds

    if figures is None:
        return "-"
    limit = f"p{round(figures['q'] * 100)} ≤ {format_seconds(figures['limit_s'])}"
    if figures["peak_qps"] is None:
        return f"no rate shown under {limit}"
    return (f"{format_rate(figures['peak_qps'])} req/s at {limit}, {figures['policy']}"
            f"{' busy' if figures.get('disturbed') else ''}")


def render(rows: list[Scenarios]) -> str:
    from ..text import short_name, table

    if not rows:
        return "nothing measured yet: " + SAY_HOW["offline"]
    several = len({r.setup for r in rows}) > 1
    headings = ["model", *(["setup"] if several else []), "single-stream p90 (bound)",
                f"multi-stream p99, {MULTI_STREAM_SAMPLES} a query (bound)", "offline images/s (95%)",
                "server peak"]
    body = [[short_name(r.model), *([r.setup.runtime()] if several else []), _tail(r.single_stream, 90),
             _tail(r.multi_stream, 99), _offline(r.offline), _server(r.server)] for r in rows]
    missing = [name for name in SAY_HOW if all(getattr(r, name) is None for r in rows)]
    lines = [table(headings, body, right=set()),
             "MLPerf Inference's scenarios on this machine. single-stream: the batch-1 cell; multi-stream: the "
             f"batch-{MULTI_STREAM_SAMPLES} cell (one query of {MULTI_STREAM_SAMPLES} images at a time); offline: the "
             "batch size with the most images per second; each tail with its distribution-free 95% upper bound. "
             "server: the highest Poisson rate shown under the tail limit its points were measured at. busy: "
             "other processes used the machine while it was measured."]
    lines += [f"{name.replace('_', '-')}: not measured; {SAY_HOW[name]} measures it" for name in missing]
    return "\n".join(lines)
