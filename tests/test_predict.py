"""The latency predictor on synthetic data with known laws (pure numpy, fast)."""

import math

import pytest

from dnnbench.analysis import predictor
from dnnbench.analysis.predictor import Point, calibrate, kernel_fits, kernel_seconds, predict_point
from dnnbench.measure.profile import KernelSpec


def points(law, rows):
    return [Point(f"m{k}", f, law(f)) for k, f in enumerate(rows)]


OPS_ROWS = [{"macs": m} for m in (1e9, 2e9, 4e9, 8e9, 16e9, 3e9)]


def test_the_ops_line_recovers_a_linear_law_exactly():
    cal = calibrate(points(lambda f: 2e-3 + 1e-12 * f["macs"], OPS_ROWS), "ops")
    assert cal.coefficients == pytest.approx((2e-3, 1e-12), rel=1e-9)
    assert max(abs(e) for e in cal.loo_errors.values()) < 1e-9
    assert cal(dict(macs=5e9)) == pytest.approx(2e-3 + 5e-3, rel=1e-9)


def test_the_kernels_method_recovers_its_law_and_the_others_miss_it():
    # latency = 1.3 x the kernels' sum + 20 µs per kernel call: a per-call cost operations cannot see
    rows = [{"kernel_s": s, "kernels": n, "macs": s * 1e11} for s, n in
            [(1e-3, 400), (5e-3, 60), (2e-2, 900), (4e-2, 100), (8e-2, 1500), (3e-3, 1200), (1e-2, 250)]]
    law = lambda f: 1.3 * f["kernel_s"] + 2e-5 * f["kernels"]  # noqa: E731
    cal = calibrate(points(law, rows), "kernels")
    assert dict(zip(cal.columns, cal.coefficients)) == pytest.approx({"one": 0, "kernel_s": 1.3, "kernels": 2e-5},
                                                                     rel=1e-6, abs=1e-12)
    assert cal.median_abs_error < 1e-9
    ops = calibrate(points(law, rows), "ops")
    assert ops.median_abs_error > 0.1  # operations alone cannot tell 1,200 small kernels from 60


def test_in_model_fits_learn_how_a_kernel_s_time_alone_misleads_by_kind_and_size():
    import json as _json

    def spec(k, kind):
        key = _json.dumps([f"aten.op{k % 2}.default", [k], {}])
        return key, KernelSpec(key, kind, 0, 1, 1000)

    specs = dict(spec(k, "grouped_conv" if k % 2 else "dense_conv") for k in range(16))
    alone = {key: 1e-6 * 2 ** k for k, key in enumerate(specs)}
    # inside a model: dense kernels take what they take alone; depthwise ones more the shorter they
    # are: 2x at 1 ms, 4x at 1/16 ms
    law = {"dense_conv": lambda s: 1.0, "grouped_conv": lambda s: 2.0 * (s / 1e-3) ** -0.25}
    inside = {key: alone[key] * law[sp.kind](alone[key]) for key, sp in specs.items()}
    # two calibration models, each running half of the kernels
    keys = list(specs)
    runs = [({k: 1 for k in keys[::2]}, {k: inside[k] for k in keys[::2]}),
            ({k: 3 for k in keys[1::2]}, {k: inside[k] for k in keys[1::2]})]
    fits = predictor.in_model_fits(alone, runs, specs)
    assert fits["kind:dense_conv"](5e-4) == pytest.approx(1.0)
    grouped = fits["kind:grouped_conv"]
    assert grouped(1e-3) == pytest.approx(2.0) and grouped.coefficients[1] == pytest.approx(-0.25)
    key = _json.dumps(["aten.op1.default", ["new"], {}])
    new = {key: KernelSpec(key, "grouped_conv", 0, 1, 1000)}
    assert predictor.inside_models({key: 1e-3 / 16}, new, fits)[key] == pytest.approx(1e-3 / 16 * 4.0)
    assert predictor.inside_models({key: 1e-3}, new, {})[key] == 1e-3  # no fit: as timed alone
    assert predictor.inside_models({key: 1e-12}, new, fits)[key] == 1e-12 * 8.0  # bounded: never beyond 8x


def test_auto_chooses_the_method_whose_leave_one_out_errors_are_smallest():
    rows = [{"kernel_s": s, "kernels": n, "macs": m, "macs_dense_conv": m, "activations": a} for s, n, m, a in
            [(1e-3, 400, 5e8, 1e6), (5e-3, 60, 1e8, 4e6), (2e-2, 900, 3e9, 2e6), (4e-2, 100, 9e8, 9e6),
             (8e-2, 1500, 2e9, 3e6), (3e-3, 1200, 7e8, 5e6), (1e-2, 250, 4e9, 8e6)]]
    by_kernels = points(lambda f: 1.3 * f["kernel_s"] + 2e-5 * f["kernels"], rows)
    assert predictor.best_calibration(by_kernels, predictor.AUTO, timed=True).method == "kernels"
    # a runtime whose time follows operations and activations, not the eager kernels' sum
    by_features = points(lambda f: 1e-11 * f["macs"] + 3e-9 * f["activations"], rows)
    assert predictor.best_calibration(by_features, predictor.AUTO, timed=True).method == "features"
    # without timed kernels, kernels is not a candidate
    assert predictor.best_calibration(by_kernels, predictor.AUTO, timed=False).method != "kernels"
    assert predictor.best_calibration(by_kernels, "ops", timed=True).method == "ops"  # asked: as asked


def test_auto_ranks_by_the_predictions_within_ten_and_twenty_percent_before_the_median_error():
    def cal(errors):
        return predictor.Calibration("ops", ("one",), (1.0,), {f"m{i}": e for i, e in enumerate(errors)}, {})

    # a smaller median error, but one model missed by 45% and fewer within ±10%
    tight_median = cal([0.01, -0.02, 0.03, 0.04, -0.05, 0.15, -0.2, 0.45])
    fewer_misses = cal([0.05, -0.06, 0.07, -0.08, 0.08, 0.09, -0.09, 0.18])
    assert tight_median.median_abs_error < fewer_misses.median_abs_error
    assert fewer_misses.rank < tight_median.rank
    # one fewer within ±10%, but none missed by more than 20%: within ±10% counts twice, ±20% once
    assert cal([0.05, 0.15, 0.15, 0.15]).rank < cal([0.05, 0.06, 0.5, 0.5]).rank
    assert cal([0.05, 0.06, 0.15, 0.3]).rank < cal([0.01, 0.02, 0.3, 0.3]).rank
    # as many near: the smaller median error ranks first
    assert cal([0.01, 0.02, 0.3, 0.3]).rank < cal([0.05, 0.06, 0.3, 0.3]).rank
    # more within ±10%, but one model missed by more than half: every calibration without such a miss first
    many_close_one_far = cal([0.01, -0.02, 0.03, 0.04, -0.05, 0.06, -0.07, 0.08, 0.09, 0.3, -0.4, 1.32])
    none_far = cal([0.05, -0.06, 0.07, -0.08, 0.09, -0.09, 0.12, -0.14, 0.15, 0.17, -0.18, 0.25])
    assert many_close_one_far.rank[1:] < none_far.rank[1:]
    assert none_far.rank < many_close_one_far.rank
    assert cal([0.05, 0.06, 0.3, -0.5]).rank < cal([0.05, 0.06, 0.3, -0.51]).rank


def test_relative_fits_never_give_a_negative_cost():
    # time falls with operations here: an unconstrained line would have a negative slope
    rows = [{"kernel_s": s, "kernels": 10} for s in (1e-3, 2e-3, 3e-3, 4e-3)]
    pts = [Point(f"m{k}", f, t) for k, (f, t) in enumerate(zip(rows, (4e-3, 3e-3, 2e-3, 1e-3)))]
    cal = calibrate(pts, "kernels")
    assert all(c >= 0 for c in cal.coefficients)


def test_the_interval_comes_from_the_leave_one_out_errors():
    cal = predictor.Calibration("ops", ("one", "macs"), (0.0, 1.0), {"a": -0.2, "b": 0.0, "c": 0.25, "d": 0.1},
                                {"macs": (1.0, 10.0)})
    assert cal.coverage == pytest.approx(3 / 5)
    low, high = cal.interval(1.0)
    assert low == pytest.approx(1 / 1.25) and high == pytest.approx(1 / 0.8)
    # a leave-one-out prediction of 0 or less bounds nothing above
    assert predictor.Calibration("ops", ("one",), (1.0,), {"a": -1.0, "b": 0.1, "c": 0, "d": 0}, {}).interval(1.0)[1] \
        == math.inf


def test_a_model_unlike_the_calibrated_ones_is_said_to_extrapolate():
    rows = [{"macs": m, "macs_attention": 0.0} for m in (1e9, 2e9, 4e9, 8e9)]
    cal = calibrate(points(lambda f: 1e-12 * f["macs"], rows), "ops")
    assert predict_point(cal, {"macs": 5e9, "macs_attention": 0.0}).extrapolations == []
    far = predict_point(cal, {"macs": 40e9, "macs_attention": 0.0})
    assert far.extrapolates and "outside the calibrated" in far.extrapolations[0]
    attention = predict_point(cal, {"macs": 5e9, "macs_attention": 2e9})
    assert "40% of its MACs are attention" in attention.extrapolations[0]


def test_calibration_needs_enough_distinct_measured_models():
    with pytest.raises(ValueError, match="at least 4"):
        calibrate(points(lambda f: 1.0, OPS_ROWS[:3]), "ops")
    twice = [Point("a", {"macs": 1}, 1.0)] * 4
    with pytest.raises(ValueError, match="distinct"):
        calibrate(twice, "ops")
    with pytest.raises(ValueError, match="unknown method"):
        calibrate(points(lambda f: 1.0, OPS_ROWS), "magic")


def spec(key, kind="other", macs=0, b=1000):
    return KernelSpec(key, kind, macs, b // 8, b)


def test_untimed_kernels_are_estimated_from_timed_ones_of_their_operator():
    # time = 1e-9 s per byte, exactly a power law: the fit of the operator recovers it
    specs = {f'["aten.relu.default",{k}]': spec(f'["aten.relu.default",{k}]', b=1000 * 2 ** k) for k in range(6)}
    timed = {k: s.bytes * 1e-9 for k, s in list(specs.items())[:5]}
    fits = kernel_fits(timed, specs)
    assert fits["op:aten.relu.default"].n == 5
    last = list(specs)[-1]
    total, share = kernel_seconds({last: 2}, specs, timed, fits)
    assert total == pytest.approx(2 * specs[last].bytes * 1e-9, rel=1e-6) and share == 0
    first = list(specs)[0]
    total, share = kernel_seconds({first: 1, last: 1}, specs, timed, fits)
    assert share == pytest.approx(timed[first] / total)
    with pytest.raises(ValueError, match="no kernel was timed"):
        kernel_seconds({last: 1}, specs, {}, {})


def test_a_fit_of_bytes_and_macs_that_grow_together_is_left_to_a_wider_group():
    # batched products whose MACs are bytes to a fixed power: least squares may split the time between
    # the two in any proportion, and with noise picks powers that cancel on them and explode elsewhere
    import random

    rng = random.Random(1)
    keys = [f'["aten.bmm.default",{k}]' for k in range(10)]
    specs = {k: KernelSpec(k, "attention", int(4000 * 2 ** i) ** 2, 100, 4000 * 2 ** i) for i, k in enumerate(keys)}
    timed = {k: 1e-9 * s.bytes * rng.uniform(0.8, 1.25) for k, s in specs.items()}
    others = {f'["aten.mul.Tensor",{k}]': spec(f'["aten.mul.Tensor",{k}]', kind="attention", b=1000 * 3 ** k)
              for k in range(5)}
    specs.update(others)
    timed.update({k: s.bytes * 1e-9 for k, s in others.items()})
    fits = kernel_fits(timed, specs)
    assert all(predictor.POWER_BOUNDS[0] <= p <= predictor.POWER_BOUNDS[1]
               for f in fits.values() for p in f.coefficients[1:])
    far = '["aten.bmm.default","far"]'  # far beyond the timed ones: an estimate, and a finite one
    total, _ = kernel_seconds({far: 1}, {**specs, far: KernelSpec(far, "attention", 10 ** 15, 100, 10 ** 9)}, timed,
                              fits)
    assert 0 < total <= 3600


def test_measured_targets_are_predicted_without_themselves():
    from dnnbench.analysis.data import Measured
    from dnnbench.setup import Setup

    def profile(n):  # n convolutions of 1e8 MACs
        key = f'["aten.convolution.default",{n}]'
        return {"calls": {key: n}, "specs": {key: ["dense_conv", int(1e8), 1000, 8000]}}

    models, profiles = [], {}
    for n in (1, 2, 4, 8, 16):
        cell = {"status": "ok", "latency_median_s": 1e-3 + n * 1e-3}
        models.append(Measured(model=f"net{n}", input_size=224, setup=Setup(machine="m", threads=2), cells={1: cell}))
        profiles[(f"net{n}", 224, 1)] = profile(n)
    profiles[("new", 224, 1)] = profile(3)
    out = predictor.predict_models(models, profiles, {("bad", 224, 1): "Boom"}, None, 1, "features",
                                   [("net4", 224), ("new", 224), ("bad", 224)])
    measured, new, bad = out["rows"]
    assert measured["measured_latency_s"] == pytest.approx(5e-3) and abs(measured["error"]) < 1e-6
    assert new["latency_s"] == pytest.approx(4e-3, rel=1e-6) and new["low_s"] <= new["latency_s"] <= new["high_s"]
    assert new["time_per_image_s"] == new["latency_s"] and new["macs"] == 3e8
    assert bad == {"model": "bad", "input_size": 224, "batch_size": 1, "method": "features", "problem": "Boom"}


def test_summary_and_rank_correlation():
    s = predictor.summary([0.05, -0.15, 0.3, -0.01])
    assert s["within_10"] == 0.5 and s["within_20"] == 0.75 and s["median_abs"] == pytest.approx(0.1)
    assert predictor.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert predictor.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert predictor.spearman([1, 2, 2, 3], [1, 2, 2, 3]) == pytest.approx(1.0)


def test_every_method_has_its_words():
    from dnnbench.analysis import PREDICT_METHODS

    assert set(PREDICT_METHODS) == set(predictor.METHODS) | {predictor.AUTO}
    assert set(predictor.AUTO_METHODS) <= set(predictor.METHODS)


def test_auto_and_the_report_weigh_the_runtime_s_own_kernels_and_sum_only_those():
    from dnnbench.analysis.data import Measured
    from dnnbench.setup import Setup

    # the runtime's latency follows its own convolution times; the activations it fuses away cost eager
    # time that follows nothing, and operations follow neither
    conv_s = [3e-3, 1e-3, 7e-3, 2e-3, 9e-3, 4e-3, 5e-3]
    relu_s = [4e-3, 9e-3, 1e-3, 6e-3, 2e-3, 8e-3, 3e-3]

    def kernels_of(profile):  # the runtime's: its convolutions
        calls = {k: n for k, n in profile["calls"].items() if "convolution" in k}
        return calls, {k: predictor.specs_of([profile])[k] for k in calls}

    models, profiles, eager, runtime = [], {}, {}, {}
    for i, (c, r) in enumerate(zip(conv_s, relu_s, strict=True)):
        conv, relu = f'["aten.convolution.default",{i}]', f'["aten.relu.default",{i}]'
        profiles[(f"net{i}", 224, 1)] = {"calls": {conv: 1, relu: 1}, "specs": {
            conv: ["dense_conv", int(1e8 * (i + 1)), 1000, 8000], relu: ["other", 0, 1000, 8000]}}
        eager.update({conv: c * 3, relu: r})
        runtime[conv] = c
        if i < 6:
            cell = {"status": "ok", "latency_median_s": 2 * c + 1e-4}
            models.append(Measured(model=f"net{i}", input_size=224, setup=Setup(machine="m", threads=2),
                                   cells={1: cell}))
    out = predictor.predict_models(models, profiles, {}, eager, 1, predictor.AUTO, [("net6", 224)], runtime=runtime,
                                   kernels_of=kernels_of)
    assert out["calibration"].method == "runtime"
    assert out["rows"][0]["latency_s"] == pytest.approx(2 * 5e-3 + 1e-4, rel=1e-6)
    # without the runtime's times, auto cannot find the law
    assert predictor.predict_models(models, profiles, {}, eager, 1, predictor.AUTO, [("net6", 224)])[
        "calibration"].median_abs_error > 0.05
    report = predictor.for_report(models, profiles, eager, 1, runtime, kernels_of)
    assert report["method"] == "runtime" and report["predicted"][0][0] == "net6"
    assert report["predicted"][0][2].latency_s == pytest.approx(2 * 5e-3 + 1e-4, rel=1e-6)
    assert predictor.for_report(models, profiles, eager, 1)["method"] != "runtime"
