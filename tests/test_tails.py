"""Tail latency with honest bounds: the order-statistic bounds' coverage on synthetic samples, the
samples a bound needs, and the bounds in a cell as measured, pooled over rounds and migrated."""

from __future__ import annotations

import json
import math
import random
import sqlite3

import pytest

from dnnbench.measure.latency import summarize
from dnnbench.measure.tails import lower_rank, percentile, quantile_bounds, samples_for_a_bound, tail_figures, upper_rank
from dnnbench.runner.progress import _tail
from dnnbench.store import Store
from dnnbench.store.rounds import pool


def test_a_bound_needs_the_samples_mlperf_counts():
    assert samples_for_a_bound(0.99) == 299 and samples_for_a_bound(0.90) == 29
    assert upper_rank(298, 0.99) is None and upper_rank(299, 0.99) == 299 and upper_rank(29, 0.9) == 29
    assert quantile_bounds(sorted(range(100)), 0.99)[1] is None


@pytest.mark.parametrize("q, n", [(0.99, 400), (0.99, 3000), (0.90, 60)])
def test_the_bounds_cover_the_true_percentile_at_least_as_often_as_they_promise(q, n):
    rng = random.Random(7)
    true = -math.log(1 - q)  # the q-quantile of Exp(1)
    trials, upper_ok, lower_ok = 1500, 0, 0
    for _ in range(trials):
        low, high = quantile_bounds(sorted(rng.expovariate(1.0) for _ in range(n)), q)
        upper_ok += high >= true
        lower_ok += low is None or low <= true
    # each promises 95%; 1500 trials put a true 95% at 93.8% or more with 99.9% probability
    assert upper_ok / trials >= 0.938 and lower_ok / trials >= 0.938
    assert lower_rank(n, q) < upper_rank(n, q)


def test_the_bound_is_not_wasted_on_a_far_order_statistic():
    # with many samples the upper bound of p90 sits close above the percentile, not at the maximum
    rng = random.Random(3)
    values = sorted(rng.expovariate(1.0) for _ in range(5000))
    figures = tail_figures(values)
    assert figures["latency_p90_s"] == pytest.approx(percentile(values, 90))
    assert figures["latency_p90_s"] < figures["latency_p90_high_s"] < percentile(values, 92)
    assert figures["latency_p99_s"] < figures["latency_p99_high_s"] < values[-1]


@pytest.mark.parametrize("n, p90, p90_high, p99, p99_high", [
    (9, False, False, False, False), (10, True, False, False, False), (29, True, True, False, False),
    (100, True, True, True, False), (299, True, True, True, True)])
def test_a_tail_figure_has_its_bound_or_too_few_samples_for_one(n, p90, p90_high, p99, p99_high):
    figures = summarize([0.01 + i * 1e-5 for i in range(n)], "converged", 1.0)
    assert (figures.p90 is not None, figures.p90_high is not None) == (p90, p90_high)
    assert (figures.p99 is not None, figures.p99_high is not None) == (p99, p99_high)
    if figures.p90_high is not None:
        assert figures.p90_high >= figures.p90


def test_the_progress_table_says_a_bound_or_that_the_samples_are_few():
    assert _tail({"latency_p90_s": 0.0123, "latency_p90_high_s": 0.0141}, 90) == "12.3 ≤ 14.1"
    assert _tail({"latency_p90_s": 0.0123, "latency_p90_high_s": None}, 90) == "12.3 (few)"
    assert _tail({"latency_p90_s": None}, 90) == "-"


def _cell(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {"batch_size": 1, "status": "ok", "latency_samples": samples, "latency_median_s": ordered[len(ordered) // 2],
            "round_medians": [ordered[len(ordered) // 2]], "rounds": 1, "samples": len(samples)}


def test_rounds_pooled_bound_the_tail_of_all_their_samples():
    rng = random.Random(1)
    a, b = [rng.uniform(0.01, 0.02) for _ in range(20)], [rng.uniform(0.01, 0.02) for _ in range(20)]
    one = pool(_cell(a), _cell(b))
    assert one["latency_p90_high_s"] == quantile_bounds(sorted(a + b), 0.9)[1] and one["latency_p99_high_s"] is None


def test_a_schema_8_database_gains_the_bounds_of_the_samples_it_holds(tmp_path):
    path = tmp_path / "old.db"
    samples = [0.01 + i * 1e-5 for i in range(40)]
    with Store(path) as store:
        run = store.start_run([], {}, {})
        store.put_cell(run, {"model": "m", "input_size": 32, "machine": "x", "device": "cpu", "backend": "eager",
                             "precision": "fp32", "threads": 1, "layout": "contiguous", "batch_size": 1,
                             **summarize_cell(samples)})
    db = sqlite3.connect(path, isolation_level=None)  # as schema 8 left it: no bound columns
    db.execute("UPDATE cells SET latency_samples = ?", (json.dumps(samples),))
    for column in ("latency_p90_high_s", "latency_p99_high_s"):
        db.execute(f"ALTER TABLE cells DROP COLUMN {column}")
    db.execute("ALTER TABLE serving DROP COLUMN load_apart")
    db.execute("PRAGMA user_version = 8")
    db.close()
    with Store(path) as store:
        (row,) = store.cells()
    assert row["latency_p90_high_s"] == quantile_bounds(samples, 0.9)[1] and row["latency_p99_high_s"] is None


def summarize_cell(samples: list[float]) -> dict:
    result = summarize(samples, "converged", 1.0)
    return {"status": "ok", "latency_median_s": result.median, "latency_p90_s": result.p90,
            "latency_p90_high_s": result.p90_high, "samples": len(samples), "latency_samples": samples}
