"""The fits and the Pareto frontier on synthetic data with known answers (pure numpy, fast)."""

import itertools

import numpy as np
import pytest

from dnnbench.analysis.fits import HingeFit, LinearFit, hinge_fit, hyperbolic_fit, linear_fit, upper_bound_line
from dnnbench.analysis.frontier import pareto_front

BATCHES = [1, 2, 4, 8, 16, 32, 64]


# -- linear ---------------------------------------------------------------------------------------

def test_linear_exact_line():
    x = [1.0, 2.0, 5.0, 7.5, 10.0]
    fit = linear_fit(x, [3.0 * v - 2.0 for v in x])
    assert isinstance(fit, LinearFit)
    assert fit.slope == pytest.approx(3.0, rel=1e-12)
    assert fit.intercept == pytest.approx(-2.0, rel=1e-12)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)
    assert fit.n == 5
    assert fit(4.0) == pytest.approx(10.0)


def test_linear_noisy_seeded():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 10, 400)
    y = 2.5 * x - 1.0 + rng.normal(0, 0.2, x.size)
    fit = linear_fit(x, y)
    assert fit.slope == pytest.approx(2.5, abs=0.02)
    assert fit.intercept == pytest.approx(-1.0, abs=0.1)
    assert 0.99 < fit.r2 < 1.0
    # r2 as defined: 1 - SSres / SStot
    sse = np.sum((y - fit(x)) ** 2)
    assert fit.r2 == pytest.approx(1 - sse / np.sum((y - y.mean()) ** 2))


def test_linear_matches_numpy_polyfit():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=30), rng.normal(size=30)
    fit = linear_fit(x, y)
    slope, intercept = np.polyfit(x, y, 1)
    assert (fit.slope, fit.intercept) == pytest.approx((slope, intercept))


def test_linear_constant_y_is_exact():
    fit = linear_fit([1, 2, 3], [0.1, 0.1, 0.1])
    assert fit.slope == 0.0
    assert fit.intercept == pytest.approx(0.1)
    assert fit.r2 == 1.0


@pytest.mark.parametrize("x, y", [([1.0], [2.0]), ([], []), ([2, 2, 2], [1, 2, 3]), ([1, 2], [1, 2, 3])])
def test_linear_refuses_undetermined_lines(x, y):
    with pytest.raises(ValueError):
        linear_fit(x, y)


# -- hinge ----------------------------------------------------------------------------------------

def _hinge(base, knee, slope, batches):
    return [base + slope * max(0, b - knee) for b in batches]


def test_hinge_recovers_exact_knee():
    fit = hinge_fit(BATCHES, _hinge(800e6, 8, 10e6, BATCHES))
    assert isinstance(fit, HingeFit)
    assert fit.knee == 8
    assert fit.base == pytest.approx(800e6, rel=1e-9)
    assert fit.slope == pytest.approx(10e6, rel=1e-9)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)
    assert fit.n == 7
    assert fit(4) == pytest.approx(800e6)
    assert fit(20) == pytest.approx(920e6)
    assert list(fit(np.array([1.0, 20.0]))) == pytest.approx([800e6, 920e6])


def test_hinge_recovers_knee_with_noise():
    rng = np.random.default_rng(42)
    mem = np.array(_hinge(800e6, 8, 10e6, BATCHES)) + rng.normal(0, 0.5e6, len(BATCHES))
    fit = hinge_fit(BATCHES, mem)
    assert fit.knee == 8
    assert fit.base == pytest.approx(800e6, abs=2e6)
    assert fit.slope == pytest.approx(10e6, abs=0.2e6)
    assert 0.999 < fit.r2 < 1.0


def test_hinge_linear_from_the_start_takes_smallest_knee():
    fit = hinge_fit(BATCHES, [100e6 + 5e6 * b for b in BATCHES])
    assert fit.knee == 1
    assert fit.base == pytest.approx(105e6)  # M(1)
    assert fit.slope == pytest.approx(5e6)


def test_hinge_flat_memory_ties_go_to_the_larger_knee():
    fit = hinge_fit(BATCHES, [3e8] * len(BATCHES))
    assert fit.knee == 64
    assert fit.slope == 0.0
    assert fit.base == pytest.approx(3e8)
    assert fit.r2 == 1.0


def test_hinge_negative_slope_is_clamped_to_constant():
    mem = [900.0, 880.0, 860.0, 840.0]
    fit = hinge_fit([1, 2, 4, 8], mem)
    assert fit.slope == 0.0
    assert fit.base == pytest.approx(np.mean(mem))
    assert fit.knee == 8  # every knee gives the constant: the tie goes to the larger one


def test_hinge_picks_smallest_sse_knee():
    """Brute force over knees and compare with the chosen one."""
    rng = np.random.default_rng(3)
    b = np.array(BATCHES, dtype=float)
    mem = _hinge(500.0, 16, 3.0, BATCHES) + rng.normal(0, 2.0, b.size)
    fit = hinge_fit(b, mem)
    sses = {}
    for k in BATCHES:
        x = np.maximum(0, b - k)
        if np.all(x == 0):
            sses[k] = np.sum((mem - mem.mean()) ** 2)
            continue
        slope, base = np.polyfit(x, mem, 1)
        sses[k] = np.sum((mem - base - slope * x) ** 2) if slope >= 0 else np.sum((mem - mem.mean()) ** 2)
    assert fit.knee == min(sses, key=sses.get)
    assert np.sum((mem - fit(b)) ** 2) == pytest.approx(min(sses.values()))


def test_hinge_needs_two_points():
    with pytest.raises(ValueError):
        hinge_fit([4], [1e6])


# -- upper bound ----------------------------------------------------------------------------------

def test_upper_bound_hand_example():
    # upper hull (1,1) (2,3) (4,4); the edge over mean x = 2.5 is (2,3)-(4,4): y = 0.5 x + 2,
    # gaps 1.5 + 0 + 1.5 + 0 = 3 (the other hull edge, y = 2x - 1, has gaps 6)
    x, y = [1, 2, 3, 4], [1, 3, 2, 4]
    bound = upper_bound_line(x, y)
    assert bound.slope == pytest.approx(0.5)
    assert bound.intercept == pytest.approx(2.0)
    assert bound.support == (1, 3)
    assert bound.n == 4
    assert bound(3) == pytest.approx(3.5)


def test_upper_bound_tie_takes_first_pair():
    bound = upper_bound_line([0, 1, 2], [0, 1, 0])  # y = x and y = 2 - x both leave gaps of 2
    assert bound.support == (0, 1)
    assert (bound.slope, bound.intercept) == pytest.approx((1.0, 0.0))


def test_upper_bound_properties_on_random_data():
    rng = np.random.default_rng(11)
    x = rng.uniform(10, 2000, 40)
    y = 80 - 0.01 * x + rng.normal(0, 2, 40)
    bound = upper_bound_line(x, y)
    line = bound.slope * x + bound.intercept
    assert np.all(y <= line + 1e-9)  # every point on or below
    i, j = bound.support
    assert line[i] == pytest.approx(y[i]) and line[j] == pytest.approx(y[j])  # through two points
    best = np.sum(line - y)
    for a, b in itertools.combinations(range(40), 2):  # no feasible pair line leaves smaller gaps
        s = (y[b] - y[a]) / (x[b] - x[a])
        other = s * x + y[a] - s * x[a]
        if np.all(y <= other + 1e-9):
            assert np.sum(other - y) >= best - 1e-6


def test_upper_bound_needs_two_distinct_x():
    assert upper_bound_line([5, 5, 5], [1, 2, 3]) is None
    assert upper_bound_line([1], [1]) is None


# -- hyperbolic -----------------------------------------------------------------------------------

def test_hyperbolic_exact():
    x = [0.3, 0.6, 1.0, 2.0, 4.0, 8.0, 16.0]
    fit = hyperbolic_fit(x, [80 - 5 / v for v in x])
    assert fit.a == pytest.approx(80.0)
    assert fit.b == pytest.approx(5.0)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)
    assert fit.n == 7
    assert fit(2.0) == pytest.approx(77.5)


def test_hyperbolic_noisy():
    rng = np.random.default_rng(5)
    x = rng.uniform(0.2, 20, 300)
    y = 82 - 4 / x + rng.normal(0, 0.3, x.size)
    fit = hyperbolic_fit(x, y)
    assert fit.a == pytest.approx(82, abs=0.1)
    assert fit.b == pytest.approx(4, abs=0.1)
    assert fit.r2 > 0.9


@pytest.mark.parametrize("x", [[0.0, 1.0, 2.0], [-1.0, 1.0, 2.0]])
def test_hyperbolic_needs_positive_x(x):
    with pytest.raises(ValueError):
        hyperbolic_fit(x, [1.0, 2.0, 3.0])


# -- Pareto front ---------------------------------------------------------------------------------

ITEMS = [
    ("A", 1.0, 70.0),
    ("B", 2.0, 75.0),
    ("C", 2.0, 73.0),   # B: same cost, better value
    ("D", 3.0, 75.0),   # B: cheaper, same value
    ("E", 3.0, 80.0),
    ("F", 3.0, 80.0),   # exact tie with E: neither dominates
    ("G", None, 99.0),  # no cost: skipped
    ("H", 4.0, None),   # no value: skipped
    ("I", 0.5, 60.0),
    ("J", 5.0, 79.0),   # E: cheaper and better
    ("K", 6.0, 81.0),
]


def _front(items):
    return [i[0] for i in pareto_front(items, cost=lambda i: i[1], value=lambda i: i[2])]


def test_pareto_hand_example():
    assert _front(ITEMS) == ["I", "A", "B", "E", "F", "K"]


def test_pareto_is_deterministic_and_order_independent_up_to_exact_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        shuffled = [ITEMS[k] for k in rng.permutation(len(ITEMS))]
        got = _front(shuffled)
        assert [g for g in got if g not in "EF"] == ["I", "A", "B", "K"]
        assert sorted(g for g in got if g in "EF") == ["E", "F"]
        assert got == _front(shuffled)
    # exact ties keep input order
    assert _front([("F", 3.0, 80.0), ("E", 3.0, 80.0)]) == ["F", "E"]


def test_pareto_matches_definition_on_random_data():
    rng = np.random.default_rng(9)
    items = [(str(k), float(c), float(v)) for k, (c, v) in enumerate(rng.integers(0, 8, (60, 2)))]
    got = set(_front(items))
    for name, c, v in items:
        dominated = any(c2 <= c and v2 >= v and (c2 < c or v2 > v) for _, c2, v2 in items)
        assert (name in got) == (not dominated)


def test_pareto_empty_and_all_none():
    assert _front([]) == []
    assert _front([("X", None, None)]) == []
