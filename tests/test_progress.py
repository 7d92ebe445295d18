"""What `dnnbench run` prints: the time to go weighted by each cell's expected cost, one line per cell
when the output is not a terminal, the summary's order and counts; and the cell limits that follow
the model (pure: no process is started)."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from dnnbench.runner.plan import RunConfig
from dnnbench.runner.progress import CostModel, RunPrinter
from dnnbench.runner.sweep import _Watch


def test_the_time_to_go_weighs_cells_by_operations_times_batch():
    todo = {("big", 8): 1, ("small", 8): 1, ("small", 1): 1}
    cost = CostModel(todo, {"big": 10 * 10**9, "small": 10**9}, prior_cell_s=1.0)
    assert cost.remaining_s() == pytest.approx(3.0)  # nothing measured yet: the prior per cell
    cost.done("small", 1, 1.0)  # 1 G-MAC x 1 image: 1 s
    cost.done("small", 8, 2.0)  # 8 G-MAC-images: 2 s, so a + k x work with k = 1/7 s per G
    assert cost.remaining_s() == pytest.approx(6 / 7 + 80 / 7, rel=1e-6)  # the big cell: a + k x 80 G


def test_a_model_not_yet_counted_costs_as_the_median_known_one():
    cost = CostModel({("new", 1): 2}, {"a": 10**9, "b": 3 * 10**9, "c": 5 * 10**9}, prior_cell_s=1.0)
    cost.done("a", 1, 1.0)
    cost.done("c", 1, 5.0)
    assert cost.remaining_s() == pytest.approx(2 * 3.0)


def test_off_a_terminal_every_cell_gets_a_line():
    stream = io.StringIO()  # not a terminal: tqdm's bar disables itself
    printer = RunPrinter(RunConfig(quick=True, rounds=1, max_seconds_per_cell=3, on_busy="wait"), stream)
    printer.event("plan", {"cells": 2, "already": 0, "models": 1, "rounds": 1, "macs": {"m": 10**9},
                           "todo": {("m", 1): 1, ("m", 2): 1}})
    cell = {"model": "m", "status": "ok", "latency_median_s": 0.0123, "ci_rel": 0.021, "cell_wall_s": 2.0}
    printer.event("cell", {**cell, "batch_size": 1})
    printer.event("cell", {**cell, "batch_size": 2, "disturbed": 1, "contention": 0.45, "busy_attempts": 2})
    lines = stream.getvalue().splitlines()
    assert "on a busy machine: wait for quiet" in lines[0]
    assert lines[1].startswith("dnnbench run: [1/2] m batch 1: 12.3 ms ±2.1%;") and "to go" in lines[1]
    assert "m batch 2: disturbed: other processes used 45% of the cores during its timed passes, timed 2 times" \
        in lines[2]
    assert lines[3].startswith("dnnbench run: [2/2] m batch 2: 12.3 ms ±2.1% (busy machine)")


def test_the_summary_sorts_names_as_numbers_and_counts_failures_apart():
    printer = RunPrinter(RunConfig(rounds=1), io.StringIO())
    row = {"status": "ok", "latency_median_s": 0.01, "latency_p90_s": None, "time_per_image_s": 0.01,
           "images_per_s": 100.0, "mem_peak_bytes": 2**20, "samples": 10, "rounds": 1, "stop_reason": "converged",
           "ci_rel": 0.01, "batch_size": 1, "disturbed": 0, "contention": 0.0}
    rows = [{**row, "model": m} for m in ("resnet101", "resnet18", "resnet34")]
    rows[0].update(status="timeout", latency_median_s=None, time_per_image_s=None, images_per_s=None)
    result = SimpleNamespace(measured=[{**r, "stored": True} for r in rows], already=0, run_id=1)
    text = printer.summary(rows, result)
    order = [line.split()[0] for line in text.splitlines()[2:5]]
    assert order == ["resnet18", "resnet34", "resnet101"]
    assert "2 cells measured now, 1 failed" in text and "quiet" in text


def test_quick_mode_is_two_short_rounds_that_share_the_quick_window():
    quick = RunConfig(quick=True)
    assert quick.rounds == 2 and quick.max_seconds_per_cell == 3.0
    policy = quick.policy
    assert policy.max_seconds == 1.5 and policy.min_seconds == 0.4 and policy.min_samples == 3
    assert policy.target_ci == pytest.approx(0.05 * 2**0.5)
    assert RunConfig(quick=True, rounds=1).policy.min_seconds == 1.0
    assert RunConfig(quick=True, rounds=1).policy.min_samples == RunConfig().policy.min_samples == 6
    assert RunConfig().policy.min_seconds == 1.0 and RunConfig().policy.target_ci == 0.02


def test_the_summary_states_the_runs_drift_and_what_quick_rounds_cover():
    from dnnbench.measure.latency import Drift

    row = {"model": "m", "status": "ok", "latency_median_s": 0.01, "latency_p90_s": None, "time_per_image_s": 0.01,
           "images_per_s": 100.0, "mem_peak_bytes": 2**20, "samples": 10, "rounds": 2, "stop_reason": "converged",
           "ci_rel": 0.12, "batch_size": 1, "disturbed": 0, "contention": 0.0}
    result = SimpleNamespace(measured=[{**row, "stored": True}], already=0, run_id=1, drift=Drift(0.1, 8, 8))
    text = RunPrinter(RunConfig(quick=True), io.StringIO()).summary([row], result)
    assert "Between rounds the cells moved by ±10.5% (one standard deviation, pooled over 8 cells" in text
    assert "2 short windows per cell" in text and "slow (or fast) for the whole run" in text
    one = RunPrinter(RunConfig(quick=True, rounds=1), io.StringIO()).summary([row], SimpleNamespace(
        measured=[], already=0, run_id=1))
    assert "each from one window" in one and "Between rounds" not in one


def test_cell_limits_follow_the_model_unless_timeout_is_given():
    quick = RunConfig(quick=True, max_seconds_per_cell=3)
    assert quick.cell_timeout_s == 60
    assert quick.cell_limit_s(0.01) == 60  # a fast model: the floor
    slow = quick.cell_limit_s(5.0)  # 5 s a pass: its passes, warm-up and memory passes need over a minute
    assert slow == pytest.approx(3 * 2 * (3 / quick.rounds + 5 * (3 + 8))) and slow > 60  # 3 passes a quick round
    assert RunConfig(quick=True, timeout_s=20).cell_limit_s(5.0) == 20  # --timeout is a hard limit
    watch = _Watch(quick, now=0.0)
    watch.stage("build", 0.0)
    assert watch.overdue(59.0) is None and "building the model took longer than 60 s" in watch.overdue(61.0)[1]
    watch.start(1, 100.0)
    watch.passed(1, 5.0)
    assert watch.overdue(100.0 + slow - 1) is None and watch.overdue(100.0 + slow + 1) is not None
    watch.finished()
    watch.start(8, 600.0)  # 8 x the batch: its limit is scaled before its first pass is timed
    assert watch.limit == pytest.approx(quick.cell_limit_s(40.0))


def test_a_run_of_several_setups_names_the_setup_of_each_cell():
    from dnnbench.setup import Setup

    stream = io.StringIO()
    setups = (Setup(threads=2), Setup(threads=2, backend="onnxruntime", precision="int8"))
    printer = RunPrinter(RunConfig(quick=True, setups=setups), stream)
    printer.event("plan", {"cells": 2, "already": 0, "models": 1, "rounds": 1, "macs": {}, "todo": {},
                           "machine": "lab1", "setups": [s.runtime() for s in setups]})
    cell = {"model": "m", "batch_size": 1, "status": "ok", "latency_median_s": 0.01, "ci_rel": 0.01,
            "disturbed": 0, "contention": 0.0}
    printer.event("cell", {**cell, **setups[1].on("lab1").to_dict()})
    lines = stream.getvalue().splitlines()
    assert "of lab1 with 2 threads in eager fp32, onnxruntime int8" in lines[0]
    assert "m (onnxruntime int8) batch 1" in lines[-1]
