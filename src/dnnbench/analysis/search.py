"""`dnnbench recommend --measure`: answer the limits by measuring only the models that decide the answer.

`recommend` answers with the most accurate model that meets every limit. So the candidates are taken
in order of top-1, most accurate first, and the first one that is *measured* to pass is the answer:
no later candidate can beat it. Before measuring a candidate, the prediction may rule it out: its
weights alone exceed the memory limit (the resident memory of a model holds at least its weights),
or its whole predicted latency interval lies above the latency limit. Every other candidate on the
way is measured: one predicted to fit, or one whose interval straddles the limit. After each
measurement the predictor is calibrated again with it. Until it has enough measured models to be
calibrated at all, the candidates spread widest in operations are measured first, to calibrate it.

The functions take the predictor and the measurer as arguments, so the rule is tested on fakes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Candidate:
    name: str
    top1: float | None
    weights_bytes: float | None
    macs: float | None = None


@dataclass(frozen=True)
class Step:
    """What was done with one candidate, and why, in words: ``action`` is measured, skipped or left."""

    name: str
    action: str
    why: str
    passes: bool | None = None


def _order(candidates: list[Candidate]) -> list[Candidate]:
    """Most accurate first; those without a top-1 last (recommend ranks them so)."""
    return sorted(candidates, key=lambda c: (c.top1 is None, -(c.top1 or 0.0), c.name))


def _spread(candidates: list[Candidate], k: int) -> list[Candidate]:
    """``k`` candidates spread over the range of operations: the smallest, the largest, then between."""
    ranked = sorted((c for c in candidates if c.macs), key=lambda c: c.macs)
    if len(ranked) <= k:
        return ranked
    picks = [ranked[round(i * (len(ranked) - 1) / (k - 1))] for i in range(k)]
    return list(dict.fromkeys(picks))


def decide(candidates: list[Candidate], *, max_latency: float, max_memory: float,
           predict: Callable[[str], tuple[float, float, float] | None],
           measure: Callable[[str], bool], measured: Callable[[str], bool | None],
           calibrated: Callable[[], int], min_calibration: int,
           measure_many: Callable[[list[str]], list[bool]] | None = None) -> tuple[str | None, list[Step]]:
    """(the answer's name or None, the steps taken). ``predict(name)``: (latency, low, high) of one
    batch, seconds, or None while the predictor cannot be calibrated; ``measure(name)``: measures it,
    returns whether it meets every limit (``measure_many(names)``, where given, measures the calibration's
    models together, returning the same for each); ``measured(name)``: whether it passes where it is already
    measured, None where it is not; ``calibrated()``: how many measured models the predictor has."""
    steps: list[Step] = []
    done: dict[str, bool] = {}

    def run(c: Candidate, why: str) -> bool:
        passes = measure(c.name)
        done[c.name] = passes
        steps.append(Step(c.name, "measured", why, passes))
        return passes

    ordered = _order(candidates)
    for c in ordered:
        known = measured(c.name)
        if known is not None:
            done[c.name] = known
    if calibrated() < min_calibration:
        spread = _spread([c for c in ordered if c.name not in done], min_calibration - calibrated())
        why = "to calibrate the predictor (too few models were measured in this setup)"
        if measure_many is not None:  # in one sweep: one start instead of one per model
            for c, passes in zip(spread, measure_many([c.name for c in spread]), strict=True):
                done[c.name] = passes
                steps.append(Step(c.name, "measured", why, passes))
        else:
            for c in spread:
                run(c, why)
    answer = None
    for c in ordered:
        if c.name in done:
            if not any(s.name == c.name for s in steps):
                steps.append(Step(c.name, "measured", "already measured", done[c.name]))
            if done[c.name]:
                answer = c.name
                break
            continue
        if c.weights_bytes and c.weights_bytes > max_memory:
            steps.append(Step(c.name, "skipped", "its weights alone exceed the memory limit"))
            continue
        predicted = predict(c.name)
        if predicted is not None and predicted[1] > max_latency:
            steps.append(Step(c.name, "skipped", f"its predicted latency, {_ms(predicted[1])} to {_ms(predicted[2])}, "
                                                 f"is above the limit of {_ms(max_latency)}"))
            continue
        if predicted is None:
            why = "no prediction is possible yet"
        elif predicted[2] > max_latency:
            why = f"its predicted latency, {_ms(predicted[1])} to {_ms(predicted[2])}, straddles the limit"
        else:
            why = f"predicted to meet the limit ({_ms(predicted[1])} to {_ms(predicted[2])}), and the most accurate left"
        if run(c, why):
            answer = c.name
            break
    if answer is not None:
        rank = next(i for i, c in enumerate(ordered) if c.name == answer)
        for c in ordered[rank + 1:]:
            if c.name in done:  # measured before this call (an earlier, interrupted one): still accounted for
                steps.append(Step(c.name, "measured", "already measured", done[c.name]))
            else:
                steps.append(Step(c.name, "left", "less accurate than the answer, which is measured"))
    return answer, steps


def _ms(seconds: float) -> str:
    return "∞" if seconds == float("inf") else f"{seconds * 1e3:.3g} ms"


def decide_serving(candidates: list[Candidate], *, qps: float, max_memory: float | None,
                   measured: Callable[[str], bool | None], measure: Callable[[str], bool],
                   throughput: Callable[[str], float | None]) -> tuple[str | None, list[Step]]:
    """`recommend --qps --measure`: the most accurate candidate that sustains ``qps`` under the tail
    limit, serving only those that decide it. Most accurate first; the first one served (or already
    served) that meets the load is the answer, and no later one can beat it. Before serving one, its
    single-stream cells may rule it out: a server cannot sustain more requests a second than the most
    images a second its batches were measured to take (``throughput(name)``: the upper end of the best
    interval, None where it is unknown), nor fit a memory its weights alone exceed.
    ``measured(name)``: whether it meets the load where it was already served under this limit, None
    where it was not; ``measure(name)``: serve it (its peak searched) and say whether it meets the load."""
    steps: list[Step] = []
    ordered = _order(candidates)
    answer = None
    for c in ordered:
        known = measured(c.name)
        if known is not None:
            steps.append(Step(c.name, "measured", "already served under this limit", known))
            if known:
                answer = c.name
                break
            continue
        if max_memory and c.weights_bytes and c.weights_bytes > max_memory:
            steps.append(Step(c.name, "skipped", "its weights alone exceed the memory limit"))
            continue
        best = throughput(c.name)
        if best is not None and best < qps:
            steps.append(Step(c.name, "skipped", f"its batches were measured at {best:.3g} images/s at most, below "
                                                 f"the load of {qps:g} requests/s"))
            continue
        passes = measure(c.name)
        steps.append(Step(c.name, "measured", "the most accurate left" if best is None else
                          f"the most accurate left (its batches reach {best:.3g} images/s)", passes))
        if passes:
            answer = c.name
            break
    if answer is not None:
        rank = next(i for i, c in enumerate(ordered) if c.name == answer)
        steps += [Step(c.name, "left", "less accurate than the answer, which is measured") for c in ordered[rank + 1:]]
    return answer, steps
