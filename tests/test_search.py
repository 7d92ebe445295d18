"""`recommend --measure`'s stopping rule, on a fake measurer and a fake predictor (pure, fast)."""

import random

import pytest

from dnnbench.analysis.search import Candidate, decide

LIMIT = 0.050  # seconds per batch
MEMORY = 1e9


def zoo(n=30, seed=0):
    """Candidates with a top-1 and a true latency; bigger models are slower and more accurate, with scatter."""
    rng = random.Random(seed)
    out, truth = [], {}
    for k in range(n):
        size = rng.uniform(0.2, 10)
        name = f"net{k}"
        out.append(Candidate(name, 60 + 2 * size + rng.uniform(-3, 3), 4e7 * size, size * 1e9))
        truth[name] = 0.008 * size * rng.uniform(0.8, 1.25)
    return out, truth


def brute_force(candidates, truth):
    fits = [c for c in candidates if truth[c.name] <= LIMIT and c.weights_bytes <= MEMORY]
    return max(fits, key=lambda c: c.top1).name if fits else None


class Bench:
    def __init__(self, truth, error=0.2, calibrated=0):
        self.truth, self.error, self.done, self.already = truth, error, [], calibrated

    def measure(self, name):
        self.done.append(name)
        return self.truth[name] <= LIMIT

    def measured(self, name):
        return (self.truth[name] <= LIMIT) if name in self.done else None

    def predict(self, name):
        if self.calibrated() < 4:
            return None
        t = self.truth[name]  # an interval that holds the truth, as the calibration's promises
        return t * 1.05, t / (1 + self.error), t * (1 + self.error)

    def calibrated(self):
        return self.already + len(self.done)


def run(candidates, bench, memory=MEMORY):
    return decide(candidates, max_latency=LIMIT, max_memory=memory, predict=bench.predict, measure=bench.measure,
                  measured=bench.measured, calibrated=bench.calibrated, min_calibration=4)


@pytest.mark.parametrize("seed", range(5))
def test_the_answer_is_the_brute_force_answer_with_fewer_models_measured(seed):
    candidates, truth = zoo(seed=seed)
    bench = Bench(truth)
    answer, steps = run(candidates, bench)
    assert answer == brute_force(candidates, truth)
    assert len(bench.done) < len(candidates) / 2
    assert {s.name for s in steps} == {c.name for c in candidates}  # every candidate is accounted for
    # everything more accurate than the answer was measured or ruled out by a prediction
    better = [c.name for c in candidates if c.top1 > next(c.top1 for c in candidates if c.name == answer)]
    reasons = {s.name: s for s in steps}
    assert all(reasons[n].action in ("measured", "skipped") for n in better)
    assert all(reasons[n].action == "left" for n in reasons if n not in better and n != answer
               and n not in bench.done)


def test_it_calibrates_first_on_models_spread_over_operations():
    candidates, truth = zoo(seed=1)
    bench = Bench(truth)
    _, steps = run(candidates, bench)
    first = steps[:4]
    assert all("to calibrate" in s.why for s in first)
    macs = sorted(c.macs for c in candidates)
    chosen = {c.macs for c in candidates if c.name in {s.name for s in first}}
    assert macs[0] in chosen and macs[-1] in chosen


def test_weights_beyond_the_memory_limit_are_never_measured():
    candidates, truth = zoo(seed=2)
    bench = Bench(truth, calibrated=4)
    answer, steps = run(candidates, bench, memory=1.5e8)
    heavy = {c.name for c in candidates if c.weights_bytes > 1.5e8}
    assert not heavy & set(bench.done)
    assert all(s.why == "its weights alone exceed the memory limit" for s in steps if s.name in heavy
               and s.action == "skipped")
    assert answer is None or answer not in heavy


def test_a_straddling_interval_is_measured_and_a_clear_miss_is_skipped():
    candidates = [Candidate("big", 80, 1e6, 9e9), Candidate("edge", 75, 1e6, 5e9), Candidate("small", 70, 1e6, 1e9)]
    truth = {"big": 0.2, "edge": 0.049, "small": 0.01}
    bench = Bench(truth, calibrated=4)
    answer, steps = run(candidates, bench)
    assert answer == "edge" and bench.done == ["edge"]
    assert [s.action for s in steps] == ["skipped", "measured", "left"]
    assert "straddles the limit" in steps[1].why and "above the limit" in steps[0].why


def test_nothing_passes_then_every_possible_candidate_was_measured():
    candidates = [Candidate(f"n{k}", 70 + k, 1e6, 1e9 * (k + 1)) for k in range(6)]
    truth = {c.name: 0.049 * 1.1 for c in candidates}  # all just miss; intervals straddle
    bench = Bench(truth, calibrated=4)
    answer, steps = run(candidates, bench)
    assert answer is None and sorted(bench.done) == sorted(truth)


def test_the_calibration_models_are_measured_in_one_sweep_when_it_can():
    candidates, truth = zoo(seed=3)
    bench = Bench(truth)
    sweeps = []

    def measure_many(names):
        sweeps.append(list(names))
        return [bench.measure(n) for n in names]

    answer, steps = decide(candidates, max_latency=LIMIT, max_memory=MEMORY, predict=bench.predict,
                           measure=bench.measure, measured=bench.measured, calibrated=bench.calibrated,
                           min_calibration=4, measure_many=measure_many)
    assert len(sweeps[0]) == 4 and answer == brute_force(candidates, truth)
    assert [s.name for s in steps[:4]] == sweeps[0]


@pytest.mark.parametrize("seed", range(3))
def test_asked_again_after_an_interrupt_every_candidate_is_accounted_for(seed):
    candidates, truth = zoo(n=12, seed=seed)
    bench = Bench(truth)
    bench.done = [c.name for c in candidates[::2]]  # measured by an earlier call that was interrupted
    answer, steps = run(candidates, bench)
    assert sorted(s.name for s in steps) == sorted(c.name for c in candidates)
    assert answer == brute_force(candidates, truth)
