"""Latency prediction from operations on hand-built measurements (pure Python/numpy, fast)."""

import pytest

from dnnbench.analysis.data import Measured
from dnnbench.analysis.predict import Prediction, calibration, loo_errors, predict, predicted_vs_measured
from dnnbench.errors import UserError
from dnnbench.setup import Setup

SLOPE, INTERCEPT = 1e-12, 2e-3  # seconds per MAC, seconds


def model(name, macs, time_per_image=None, batch=16, status="ok", device="cpu", input_size=224):
    if time_per_image is None and macs:
        time_per_image = SLOPE * macs + INTERCEPT
    cell = {"status": status, "batch_size": batch, "time_per_image_s": time_per_image,
            "latency_median_s": time_per_image * batch if time_per_image else None}
    return Measured(model=name, input_size=input_size, setup=Setup(machine="m1", device=device, threads=4),
                     macs=macs, cells={batch: cell})


def exact_models():
    return [model(f"m{k}", macs) for k, macs in enumerate([1e9, 2e9, 4e9, 8e9, 16e9])]


def test_exact_data_predicts_exactly():
    result = predict(exact_models(), 3e9, 16, "new")
    assert isinstance(result, Prediction)
    assert result.model == "new" and result.batch_size == 16 and result.macs == 3e9
    assert result.time_per_image_s == pytest.approx(SLOPE * 3e9 + INTERCEPT, rel=1e-9)
    assert result.fit.slope == pytest.approx(SLOPE, rel=1e-9)
    assert result.fit.intercept == pytest.approx(INTERCEPT, rel=1e-9)
    assert result.fit.r2 == pytest.approx(1.0, abs=1e-12)
    assert result.n == result.fit.n == 5
    assert set(result.loo_errors) == {"m0", "m1", "m2", "m3", "m4"}
    assert all(abs(e) < 1e-9 for e in result.loo_errors.values())
    assert result.loo_median_abs < 1e-9 and result.loo_max_abs < 1e-9


def test_loo_errors_hand_example():
    # without (3, 4): y = x predicts 3 -> -0.25; without (1, 1): y = 2x - 2 predicts 0 -> -1;
    # without (2, 2): y = 1.5x - 0.5 predicts 2.5 -> +0.25
    errors = loo_errors([("a", 1.0, 1.0), ("b", 2.0, 2.0), ("c", 3.0, 4.0)])
    assert errors == pytest.approx({"a": -1.0, "b": 0.25, "c": -0.25})


def test_prediction_summarises_loo_errors():
    models = [model("a", 1e9, 1.0), model("b", 2e9, 2.0), model("c", 3e9, 4.0)]
    result = predict(models, 4e9, 16, "new")
    assert result.loo_median_abs == pytest.approx(0.25)
    assert result.loo_max_abs == pytest.approx(1.0)
    assert result.time_per_image_s == pytest.approx(1.5 * 4 - 2 / 3 * 1, rel=1e-9)  # OLS: y = 1.5x - 2/3


def test_loo_errors_need_three_points():
    with pytest.raises(ValueError):
        loo_errors([("a", 1.0, 1.0), ("b", 2.0, 2.0)])


def test_fewer_than_three_models_is_a_user_error():
    models = exact_models()[:2]
    with pytest.raises(UserError) as err:
        predict(models, 3e9, 16, "new")
    message = str(err.value)
    assert "at least 3 models measured at batch size 16" in message
    assert "m0, m1" in message and "dnnbench run" in message and "\n" not in message


def test_wrong_batch_size_is_a_user_error_naming_the_good_ones():
    with pytest.raises(UserError) as err:
        predict(exact_models(), 3e9, 8, "new")
    assert "measured: none" in str(err.value) and "batch sizes with enough: 16" in str(err.value)


def test_models_without_macs_are_skipped():
    models = exact_models()[:3] + [model("nomacs", None, 0.5), model("zero", 0, 0.5)]
    assert [p[0] for p in calibration(models, 16)] == ["m0", "m1", "m2"]
    assert predict(models, 3e9, 16, "new").n == 3
    with pytest.raises(UserError):
        predict(exact_models()[:2] + [model("nomacs", None, 0.5), model("x", None, 0.1)], 3e9, 16, "new")


def test_calibration_skips_failed_and_other_batches():
    models = exact_models()[:3] + [model("oom", 5e9, status="oom"), model("b8", 5e9, batch=8)]
    assert calibration(models, 16) == [("m0", 1e9, pytest.approx(SLOPE * 1e9 + INTERCEPT)),
                                       ("m1", 2e9, pytest.approx(SLOPE * 2e9 + INTERCEPT)),
                                       ("m2", 4e9, pytest.approx(SLOPE * 4e9 + INTERCEPT))]


def test_calibration_labels_repeated_names():
    models = [model("a", 1e9), model("a", 2e9, input_size=299), model("b", 3e9)]
    assert [p[0] for p in calibration(models, 16)] == ["a@224", "a@299", "b"]


def test_predicted_model_is_left_out_of_its_own_fit():
    models = exact_models() + [model("target", 3e9, time_per_image=1.0)]  # way off the line
    result = predict(models, 3e9, 16, "target")
    assert result.n == 5 and "target" not in result.loo_errors
    assert result.time_per_image_s == pytest.approx(SLOPE * 3e9 + INTERCEPT, rel=1e-9)


def test_one_setup_is_used():
    cuda = [model(f"g{k}", macs, time_per_image=1e-6, device="cuda") for k, macs in enumerate([1e9, 5e9])]
    cuda += [model(f"h{k}", 1e9 * k, batch=8, device="cuda") for k in range(1, 7)]  # more models, not at 16
    result = predict(exact_models() + cuda, 3e9, 16, "new")
    assert result.n == 5 and result.setup == Setup(machine="m1", device="cpu", threads=4)
    assert result.time_per_image_s == pytest.approx(SLOPE * 3e9 + INTERCEPT, rel=1e-9)


def test_missing_macs_is_a_user_error():
    with pytest.raises(UserError):
        predict(exact_models(), None, 16, "new")


def test_predicted_vs_measured():
    models = [model("c", 3e9, 4.0), model("a", 1e9, 1.0), model("b", 2e9, 2.0)]
    rows = predicted_vs_measured(models, 16)
    assert [r[0] for r in rows] == ["a", "b", "c"]  # by operations
    assert [r[1] for r in rows] == pytest.approx([1.0, 2.0, 4.0])
    assert [r[2] for r in rows] == pytest.approx([0.0, 2.5, 3.0])
    with pytest.raises(ValueError):
        predicted_vs_measured(models[:2], 16)


def test_a_good_fit_is_reliable():
    result = predict(exact_models(), 3e9, 16, "new")
    assert result.reliable and result.doubts == []


def test_times_unrelated_to_operations_are_unreliable():
    models = [model(f"m{k}", macs, t) for k, (macs, t) in enumerate(zip([1e9, 2e9, 3e9, 4e9, 5e9], [5, 1, 4, 2, 3]))]
    result = predict(models, 3e9, 16, "new")
    assert result.time_per_image_s == pytest.approx(3.0)  # still given
    assert not result.reliable
    assert result.doubts == ["the fit explains little: R² = 0.09, below 0.5"]


def test_a_line_that_misses_the_small_models_is_unreliable():
    # one large model makes R² high while every small one is missed by a factor of several
    macs = [1e9, 2e9, 4e9, 8e9, 100e9]
    models = [model(f"m{k}", m, t) for k, (m, t) in enumerate(zip(macs, [0.01, 0.1, 0.01, 0.1, 10]))]
    result = predict(models, 3e9, 16, "new")
    assert result.fit.r2 > 0.99 and not result.reliable
    assert result.doubts == [
        "the fit misses the measured models by a median ±519% when each is left out, beyond ±50%",
        "the fitted line gives no positive time at this operation count"]
