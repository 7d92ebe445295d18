"""The latency stopping rule, driven by a fake clock: no test here depends on real time."""

import itertools
import math
import random
import statistics
from fractions import Fraction

import numpy as np
import pytest

from dnnbench.measure.latency import (
    Drift,
    LatencyResult,
    TimingPolicy,
    median_ci,
    percentile,
    pooled_drift,
    rounds_interval,
    summarize,
    t975,
    time_until_precise,
    timing_interval,
    warm_up,
)


class FakeClock:
    """Time advances only inside ``step``, by the next scripted duration; ``clock()`` reads it.

    Durations should be dyadic (1, 0.5, 0.125, ...) so that t1 - t0 equals the duration exactly.
    """

    def __init__(self, durations):
        self.durations = iter(durations)
        self.t = 0.0
        self.steps = 0
        self.taken = []

    def step(self):
        d = next(self.durations)
        self.t += d
        self.steps += 1
        self.taken.append(d)

    def __call__(self):
        return self.t


def exact_rank(n, confidence=Fraction(95, 100)):
    """Largest k with P(Binomial(n, 1/2) <= k - 1) <= (1 - confidence) / 2, in exact arithmetic."""
    alpha2 = (1 - confidence) / 2
    k, cdf = 0, Fraction(0)  # cdf = P(X <= k - 1)
    while True:
        nxt = cdf + Fraction(math.comb(n, k), 2**n)  # P(X <= k)
        if nxt > alpha2:
            return k
        cdf, k = nxt, k + 1


def coverage(n, k):
    """P(x_(k) <= true median <= x_(n-k+1)) = 1 - 2 P(X <= k - 1)."""
    return 1 - 2 * sum(Fraction(math.comb(n, i), 2**n) for i in range(k))


def rank_of(n):
    """The rank k that median_ci used, recovered from its answer on the values 1..n."""
    ci = median_ci([float(i) for i in range(1, n + 1)])
    if ci is None:
        return 0
    low, high = ci
    assert high == n - low + 1, "interval is not symmetric in ranks"
    return int(low)


# ---------------------------------------------------------------------------------------------
# statistics


def test_median_ci_absent_below_six_samples():
    for n in range(6):
        assert median_ci(sorted(random.Random(n).random() for _ in range(n))) is None


def test_median_ci_six_samples_is_min_max():
    values = sorted([3.0, 1.0, 4.0, 1.5, 9.0, 2.6])
    assert median_ci(values) == (1.0, 9.0)


@pytest.mark.parametrize("n", [6, 7, 8, 9, 10, 17, 30, 31, 64, 100, 199, 250, 399, 400])
def test_median_ci_ranks_match_exact_binomial(n):
    k = rank_of(n)
    assert k == exact_rank(n)
    assert coverage(n, k) >= Fraction(95, 100)
    assert coverage(n, k + 1) < Fraction(95, 100)  # and k is the tightest such rank


@pytest.mark.parametrize("n", [401, 1000, 5000])
def test_median_ci_normal_approximation_within_one_rank(n):
    k = rank_of(n)
    assert abs(k - exact_rank(n)) <= 1
    assert coverage(n, k) >= Fraction(95, 100)


def test_median_ci_normal_approximation_over_a_range():
    for n in range(401, 1600, 7):
        total, cumulative, k = 2**n, 0, 0
        while True:  # exact rank in integers: first k with P(X <= k) > 1/40
            cumulative += math.comb(n, k)
            if cumulative * 40 > total:
                break
            k += 1
        assert abs(rank_of(n) - k) <= 1, n


def test_median_ci_coverage_by_simulation():
    rng = random.Random(12345)
    true_median = 1.0  # lognormal(mu=0) has median e^0
    trials, hits = 2000, 0
    for _ in range(trials):
        ci = median_ci(sorted(rng.lognormvariate(0.0, 1.0) for _ in range(30)))
        hits += ci[0] <= true_median <= ci[1]
    assert 0.93 <= hits / trials <= 0.975


# ------------------------------------------------------------------------------------------------
# rounds: samples pooled from several processes


def test_t975_table_and_beyond():
    assert t975(1) == 12.706 and t975(2) == 4.303 and t975(30) == 2.042
    assert t975(31) == pytest.approx(2.040, abs=0.001)  # published: 2.0395
    assert t975(60) == pytest.approx(2.000, abs=0.001)
    assert t975(10_000) == pytest.approx(1.960, abs=0.001)
    assert all(t975(df) > t975(df + 1) for df in range(1, 100))
    with pytest.raises(ValueError):
        t975(0)


def test_rounds_interval_of_one_round_is_the_median_interval():
    values = sorted(1 + i / 100 for i in range(50))
    assert rounds_interval(values, [values[25]]) == median_ci(values)


def test_rounds_interval_with_agreeing_rounds_is_the_pooled_interval():
    values = sorted(1 + i / 1000 for i in range(60))
    assert rounds_interval(values, [1.03, 1.03, 1.03]) == median_ci(values)


def test_rounds_interval_known_answer():
    # medians e^-0.1, e^0, e^0.1: sd of the logs 0.1, half width t(2) * 0.1 / sqrt(3) on a log scale
    values = sorted([0.999, 1.0, 1.0, 1.0, 1.0, 1.0, 1.001])
    low, high = rounds_interval(values, [math.exp(-0.1), 1.0, math.exp(0.1)])
    half = 4.303 * 0.1 / math.sqrt(3)
    assert low == pytest.approx(math.exp(-half)) and high == pytest.approx(math.exp(half))


def test_rounds_interval_covers_the_truth_when_processes_differ():
    # each round (process) shifts all its samples by a random 3%; samples vary 1% within a round.
    # The interval of one round's samples misses the truth most of the time; the rounds interval must not.
    rng = random.Random(7)
    trials, hits, hits_within = 1500, 0, 0
    for _ in range(trials):
        rounds = []
        for _ in range(3):
            shift = rng.gauss(0, 0.03)
            rounds.append([math.exp(shift + rng.gauss(0, 0.01)) for _ in range(40)])
        pooled = sorted(v for r in rounds for v in r)
        low, high = rounds_interval(pooled, [float(np.median(r)) for r in rounds])
        hits += low <= 1.0 <= high
        within = median_ci(sorted(rounds[0]))
        hits_within += within[0] <= 1.0 <= within[1]
    assert hits / trials >= 0.93
    assert hits_within / trials < 0.5


def test_pooled_drift_known_answer():
    # two cells of two rounds, log medians 0.1 apart and 0.3 apart: squares 0.005 + 0.045, 2 degrees of freedom
    drift = pooled_drift([[1.0, math.exp(0.1)], [2.0, 2.0 * math.exp(-0.3)], [5.0]])
    assert drift.df == 2 and drift.cells == 2 and drift.sd == pytest.approx(math.sqrt(0.05 / 2))
    assert pooled_drift([[1.0], [2.0]]) is None


def test_two_rounds_take_the_runs_drift_and_still_cover_their_own_medians():
    values = sorted([0.999, 1.0, 1.0, 1.0, 1.001])
    own = rounds_interval(values, [1.0, math.exp(0.02)])  # t(1) = 12.7 on one degree of freedom
    drift = Drift(sd=0.05, df=30, cells=30)
    low, high = rounds_interval(values, [1.0, math.exp(0.02)], drift)
    half = t975(30) * 0.05 / math.sqrt(2)
    assert low == pytest.approx(math.exp(-half)) and high == pytest.approx(math.exp(half))
    assert high < own[1]
    # a cell that moved more than the run's drift: the interval still spans its rounds
    low, high = rounds_interval(values, [1.0, 1.5], Drift(sd=0.01, df=30, cells=30))
    assert low <= 1.0 and high >= 1.5
    # from three rounds on, the cell's own spread counts where it is wider than the run's
    medians = [math.exp(-0.1), 1.0, math.exp(0.1)]
    assert rounds_interval(values, medians, Drift(sd=0.001, df=30, cells=30)) == rounds_interval(values, medians)
    # a drift of fewer degrees of freedom than the cell's own is not used
    assert rounds_interval(values, medians, Drift(sd=1.0, df=2, cells=1)) == rounds_interval(values, medians)


def test_two_rounds_with_the_runs_drift_cover_the_truth():
    # runs of 8 cells; each round (process, minute) moves a cell by a random 8%; within a round samples
    # vary 1%. Two rounds of one cell with their own t(1) are honest but useless (about ±50%); with the
    # run's drift the intervals must still cover the truth 95% of the time, at a width near what the drift needs.
    rng = random.Random(11)
    hits = total = 0
    widths = []
    for _ in range(300):
        cells = []
        for _ in range(8):
            rounds = [[math.exp(shift + rng.gauss(0, 0.01)) for _ in range(20)]
                      for shift in (rng.gauss(0, 0.08), rng.gauss(0, 0.08))]
            cells.append(rounds)
        drift = pooled_drift([[float(np.median(r)) for r in rounds] for rounds in cells])
        for rounds in cells:
            pooled = sorted(v for r in rounds for v in r)
            low, high = rounds_interval(pooled, [float(np.median(r)) for r in rounds], drift)
            hits += low <= 1.0 <= high
            total += 1
            widths.append(math.log(high / low) / 2)
    assert hits / total >= 0.93
    assert statistics.median(widths) < 0.2  # t(8) * 0.08 / sqrt(2) = 0.13, not t(1)'s 0.5 and more


def test_percentile_matches_numpy_linear():
    rng = np.random.default_rng(7)
    for n in (1, 2, 3, 10, 57, 1000):
        data = sorted(rng.lognormal(size=n).tolist())
        for q in (0, 1, 25, 50, 90, 99, 99.9, 100):
            assert percentile(data, q) == pytest.approx(np.percentile(data, q), rel=1e-12, abs=0)


def test_summarize_percentiles_absent_with_few_samples():
    r = summarize([float(i) for i in range(1, 10)], "time_cap", 9.0)
    assert r.p90 is None and r.p99 is None and r.median == 5.0 and r.ci_low is not None
    r = summarize([float(i) for i in range(1, 11)], "time_cap", 10.0)
    assert r.p90 == pytest.approx(np.percentile(range(1, 11), 90)) and r.p99 is None
    r = summarize([float(i) for i in range(1, 100)], "time_cap", 1.0)
    assert r.p99 is None
    data = [float(i) for i in range(100, 0, -1)]
    r = summarize(data, "converged", 1.0)
    assert r.p99 == pytest.approx(np.percentile(data, 99)) and r.samples == data  # order kept
    r = summarize([1.0, 2.0, 3.0, 4.0, 5.0], "sample_cap", 1.0)
    assert r.ci_low is None and r.ci_high is None and r.ci_rel is None


def test_ci_rel_and_timed_s_definitions():
    samples = [1.0, 1.0, 2.0, 2.0, 2.0, 7.0, 3.0]
    r = summarize(samples, "converged", 99.0)
    assert (r.median, r.ci_low, r.ci_high) == (2.0, 1.0, 7.0)
    assert r.ci_rel == pytest.approx(max(2.0 - 1.0, 7.0 - 2.0) / 2.0)
    assert r.timed_s == pytest.approx(sum(samples)) and r.n == 7 and r.window_s == 99.0


# ---------------------------------------------------------------------------------------------
# policy


@pytest.mark.parametrize("kwargs", [
    {"target_ci": 0}, {"target_ci": 1}, {"target_ci": -0.1}, {"target_ci": 1.5},
    {"max_seconds": 0}, {"max_seconds": -1}, {"min_samples": 2}, {"min_samples": 0},
])
def test_policy_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        TimingPolicy(**kwargs)


def test_policy_accepts_edge_values():
    policy = TimingPolicy(target_ci=0.999, max_seconds=1e-9, min_samples=6)
    assert (policy.target_ci, policy.max_seconds, policy.min_samples) == (0.999, 1e-9, 6)
    clock = FakeClock(itertools.repeat(1 / 64))
    r = time_until_precise(clock.step, policy, clock=clock)
    assert (r.n, r.stop_reason) == (6, "time_cap")  # the tiny budget is honoured once the 6 samples are taken


# ---------------------------------------------------------------------------------------------
# warm-up


def test_warm_up_stops_when_two_passes_agree():
    clock = FakeClock([10.0, 5.0, 2.0, 1.0, 1.0625, 1.0, 1.0])
    w = warm_up(clock.step, TimingPolicy(max_seconds=1000.0), clock=clock)
    assert w.settled and w.n == 5 and clock.steps == 5
    assert w.samples == [10.0, 5.0, 2.0, 1.0, 1.0625]
    assert w.seconds == sum(w.samples)


def test_warm_up_does_not_accept_a_change_just_above_tolerance():
    clock = FakeClock([1.0, 1.125, 1.25, 1.25])  # 12.5% then 11.1% then 0%
    w = warm_up(clock.step, TimingPolicy(max_seconds=1000.0), clock=clock)
    assert w.settled and w.n == 4


def test_warm_up_waits_for_min_seconds():
    d = 1 / 64
    clock = FakeClock(itertools.repeat(d))
    w = warm_up(clock.step, TimingPolicy(max_seconds=1000.0, warmup_min_seconds=0.125), clock=clock)
    assert w.settled and w.n == 8 and w.seconds == 0.125  # steady from pass 2, but 0.125 s are needed


def test_warm_up_gives_up_at_its_share_of_the_budget():
    clock = FakeClock(itertools.cycle([1.0, 2.0]))
    policy = TimingPolicy(max_seconds=20.0, warmup_max_share=0.25)  # 5 s of warm-up at most
    w = warm_up(clock.step, policy, clock=clock)
    assert not w.settled
    assert w.samples == [1.0, 2.0, 1.0, 2.0] and w.seconds == 6.0  # first pass to reach 5 s
    assert w.seconds - w.samples[-1] < 5.0


def test_prior_passes_count_towards_settling_and_may_be_the_whole_warm_up():
    clock = FakeClock([2.1, 2.0])
    w = warm_up(clock.step, TimingPolicy(max_seconds=1000.0), clock=clock, prior=(2.2,))
    assert w.settled and w.n == 1 and clock.steps == 1  # one new pass agreed with the prior one
    w = warm_up(clock.step, TimingPolicy(max_seconds=1000.0), clock=clock, prior=(2.2,), prior_settles=True)
    assert (w.settled, w.n, w.seconds, w.samples, clock.steps) == (True, 0, 2.2, [2.2], 1)  # no pass ran


def test_warm_up_calls_sync_after_each_step():
    clock = FakeClock(itertools.repeat(0.5))
    calls = []
    w = warm_up(lambda: (clock.step(), calls.append("step")), TimingPolicy(), sync=lambda: calls.append("sync"),
                clock=clock)
    assert calls == ["step", "sync"] * w.n


# ---------------------------------------------------------------------------------------------
# timing


def test_constant_passes_converge_after_min_samples():
    clock = FakeClock(itertools.repeat(0.25))
    r = time_until_precise(clock.step, TimingPolicy(min_seconds=0.5), clock=clock)
    assert r.stop_reason == "converged" and r.n == 6 and r.samples == [0.25] * 6
    assert r.ci_rel == 0.0 and r.window_s == 1.5


def test_constant_passes_converge_only_after_min_seconds():
    clock = FakeClock(itertools.repeat(0.125))
    r = time_until_precise(clock.step, TimingPolicy(min_seconds=2.0, min_samples=6), clock=clock)
    assert r.stop_reason == "converged"
    assert r.timed_s >= 2.0 and r.n == 16  # first check point (6, 7, ..., 16, 18, ...) with 2 s spent
    assert r.n <= 1.125 * 16 + 1


def test_variable_passes_stop_at_the_time_cap():
    clock = FakeClock(itertools.cycle([1.0, 3.0]))
    r = time_until_precise(clock.step, TimingPolicy(max_seconds=100.0, min_seconds=0.5), clock=clock)
    assert r.stop_reason == "time_cap"
    assert r.n == 50 and r.window_s == 100.0 and r.timed_s == 100.0
    assert r.samples == clock.taken
    assert r.ci_rel > 0.02


def test_seeded_noisy_passes_stop_at_the_time_cap():
    rng = random.Random(3)
    durations = [rng.choice([1, 2, 3, 4, 5, 6, 7, 8]) / 64 for _ in range(10_000)]
    clock = FakeClock(durations)
    policy = TimingPolicy(max_seconds=10.0, target_ci=0.01)
    r = time_until_precise(clock.step, policy, clock=clock)
    assert r.stop_reason == "time_cap"
    assert r.samples == durations[:r.n]
    assert r.window_s >= 10.0 and r.window_s - r.samples[-1] < 10.0  # stopped at the first pass past it
    assert r.timed_s == pytest.approx(math.fsum(durations[:r.n]))


def test_min_samples_are_taken_even_past_the_budget():
    clock = FakeClock(itertools.cycle([100.0, 200.0]))
    r = time_until_precise(clock.step, TimingPolicy(max_seconds=1.0, min_samples=6), clock=clock)
    assert r.stop_reason == "time_cap" and r.n == 6 and r.ci_low is not None
    clock = FakeClock(itertools.cycle([100.0, 200.0]))
    r = time_until_precise(clock.step, TimingPolicy(max_seconds=1.0, min_samples=9), clock=clock)
    assert r.n == 9


def test_max_samples_stops_with_sample_cap():
    clock = FakeClock(itertools.cycle([1.0, 3.0]))
    r = time_until_precise(clock.step, TimingPolicy(max_seconds=1e9, max_samples=24), clock=clock)
    assert r.stop_reason == "sample_cap" and r.n == 24 and clock.steps == 24


def test_max_samples_is_exact_between_check_points():
    clock = FakeClock(itertools.cycle([1.0, 3.0]))
    r = time_until_precise(clock.step, TimingPolicy(max_seconds=1e9, max_samples=25), clock=clock)
    assert r.stop_reason == "sample_cap" and r.n == 25 and clock.steps == 25


def test_converges_once_the_interval_is_narrow_enough():
    # 1 s passes with one slow outlier every 10 passes: the interval of the median is [1, 1] once
    # enough samples are taken, whatever the outliers
    durations = [2.0 if i % 10 == 0 else 1.0 for i in range(1000)]
    clock = FakeClock(durations)
    r = time_until_precise(clock.step, TimingPolicy(max_seconds=1e6, target_ci=0.02), clock=clock)
    assert r.stop_reason == "converged" and r.median == 1.0
    assert r.ci_low == 1.0 and r.ci_high == 1.0
    assert r.samples == durations[:r.n] and r.timed_s == sum(durations[:r.n])


def test_a_window_whose_speed_wandered_gets_an_interval_that_covers_the_wandering():
    # passes within ±1% of 1.0, then a slow episode at 1.2 for the last third, as a shared host's speed
    # wanders over a second: the passes are not independent, and the distribution-free interval alone
    # (which assumes they are) claims well under ±1% around 1.0, which a window a moment later would miss
    rng = random.Random(3)
    durations = [(1.0 if i < 320 else 1.2) * rng.uniform(0.99, 1.01) for i in range(480)]
    low, high = timing_interval(durations)
    naive = median_ci(sorted(durations))
    assert naive[1] - naive[0] < 0.25 * (high - low)
    assert low < 1.0 and high > 1.05
    steady = [rng.uniform(0.99, 1.01) for _ in range(480)]
    s_low, s_high = timing_interval(steady)
    assert s_high - s_low < 0.02  # a steady machine keeps a narrow interval


def test_result_matches_the_definitions():
    rng = random.Random(11)
    durations = [rng.randint(60, 70) / 64 for _ in range(5000)]
    clock = FakeClock(durations)
    policy = TimingPolicy(max_seconds=1e9, target_ci=0.02)
    r = time_until_precise(clock.step, policy, clock=clock)
    assert r.stop_reason == "converged"
    assert r.samples == durations[:r.n]
    ordered = sorted(r.samples)
    assert r.median == float(np.median(ordered))
    assert (r.ci_low, r.ci_high) == timing_interval(r.samples)
    low, high = median_ci(ordered)  # independent samples: the blocks add little to the distribution-free interval
    assert r.ci_low <= low and r.ci_high >= high and r.ci_high - r.ci_low < 1.5 * (high - low)
    assert r.ci_rel == max(r.median - r.ci_low, r.ci_high - r.median) / r.median <= policy.target_ci
    assert r.timed_s == math.fsum(durations[:r.n]) == r.window_s
    assert isinstance(r, LatencyResult)
