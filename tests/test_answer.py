"""`dnnbench recommend` and `dnnbench predict` on a database with known figures (the synthetic sweep
of tests/conftest.py): which models pass, in which order, why the others fail, interpolation between
measured batch sizes, and the operations fit."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

from dnnbench.units import format_seconds

MEASURED = "measured: 1, 2, 4, 8, 16, 32"  # the synthetic sweep's batch sizes


@pytest.fixture(scope="module")
def db(tmp_path_factory, synthetic):
    return synthetic.make_db(tmp_path_factory.mktemp("answer") / "a.db")


from clitool import cli  # noqa: E402


def recommend_json(db, *args):
    out = cli("recommend", "--db", db, "--json", *args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_passing_models_most_accurate_first(db, synthetic):
    rows = recommend_json(db, "--max-memory", "1GB", "--max-latency", "30ms")
    expected = sorted((top1, name) for name, params, gmacs, top1 in synthetic.MODELS
                      if synthetic.memory(params, gmacs, 1) <= 1e9 and synthetic.per_image(gmacs, 1) <= 0.030)
    assert [r["model"] for r in rows if r["passes"]] == [name for _, name in reversed(expected)]


def test_failing_models_name_each_limit_they_break(db, synthetic):
    rows = recommend_json(db, "--max-memory", "1GB", "--max-latency", "30ms")
    broken = {r["model"]: r["broken"] for r in rows if not r["passes"]}
    vgg16_memory = synthetic.memory(138.4e6, 15.47, 1)
    assert broken == {
        "vgg16": [f"memory {vgg16_memory / 2**20:,.0f} MiB > 954 MiB",  # 1GB typed: 10^9 bytes, shown in MiB
                  f"latency {synthetic.per_image(15.47, 1) * 1e3:.1f} ms > 30.0 ms"],
        "resnet50": [f"latency {synthetic.per_image(4.09, 1) * 1e3:.1f} ms > 30.0 ms"]}


def test_interpolated_between_measured_batch_sizes(db, synthetic):
    rows = recommend_json(db, "--max-memory", "2GB", "--min-fps", "1", "--batch-size", "3")
    resnet18 = next(r for r in rows if r["model"] == "resnet18")
    assert resnet18["interpolated"] is True and resnet18["between"] == [2, 4]
    # halfway between the two batch latencies
    want = (synthetic.per_image(1.81, 2) * 2 + synthetic.per_image(1.81, 4) * 4) / 2
    assert resnet18["latency_s"] == pytest.approx(want, rel=1e-9)
    assert resnet18["images_per_s"] == pytest.approx(3 / want, rel=1e-9)


def test_interpolated_figures_are_marked_in_the_table(db):
    text = cli("recommend", "--db", db, "--max-memory", "2GB", "--min-fps", "1", "--batch-size", "3").stdout
    line = next(line for line in text.splitlines() if line.startswith("resnet18 "))
    assert line.endswith("  interpolated between b2 and b4")


def test_failure_reasons_name_the_limit(db):
    rows = recommend_json(db, "--max-memory", "4GB", "--min-fps", "1", "--batch-size", "64", "--min-top1", "70")
    by = {r["model"]: r["broken"] for r in rows}
    assert not any(r["passes"] for r in rows)  # nothing was measured at 64
    assert by["resnet50"] == ["failed at batch size 64: oom"]
    assert by["vgg16"] == [f"not measured at batch size 64 ({MEASURED})"]
    assert by["alexnet"] == [f"not measured at batch size 64 ({MEASURED})", "top-1 56.5% < 70.0%"]


def test_failure_reasons_in_the_text(db):
    text = cli("recommend", "--db", db, "--max-memory", "4GB", "--min-fps", "1", "--batch-size", "64").stdout
    assert "  resnet50: failed at batch size 64: oom" in text.splitlines()


def test_energy_limit_without_energy_measured(db, synthetic):
    rows = recommend_json(db, "--max-memory", "4GB", "--min-fps", "1", "--max-energy", "1")
    assert {r["model"]: r["broken"] for r in rows} == {m[0]: ["energy not measured"] for m in synthetic.MODELS}


@pytest.mark.parametrize("args, message", [
    (["--max-memory", "1GB"], "give a speed limit: --max-latency TIME or --min-fps N"),
    (["--max-memory", "1GB", "--max-latency", "5ms", "--min-fps", "3"], "not allowed with argument"),
    (["--max-memory", "lots", "--min-fps", "3"], "cannot read memory size 'lots'"),
    (["--max-memory", "1GB", "--max-latency", "fast"], "cannot read duration 'fast'"),
    (["--max-memory", "1GB", "--min-fps", "3", "--min-top1", "120"], "between 0 and 100"),
])
def test_bad_limits_are_one_line(db, args, message):
    out = cli("recommend", "--db", db, *args)
    assert out.returncode == 2 and message in out.stderr and out.stderr.count("\n") == 1


@pytest.fixture(scope="module")
def resnet34_macs():
    import dnnbench

    return dnnbench.inspect("resnet34", progress=False)[0].macs


def test_predict_from_the_operations_line(db, synthetic, resnet34_macs):
    out = cli("predict", "resnet34", "--batch-size", "16", "--method", "ops", "--db", db, "--json")
    assert out.returncode == 0, out.stderr
    [got] = json.loads(out.stdout)
    # the synthetic law is linear in operations at one batch size: the line recovers it (the operations
    # of the profiles, counted here, differ from the table's rounded G-MACs by under 0.5%)
    assert got["time_per_image_s"] == pytest.approx(synthetic.per_image(resnet34_macs / 1e9, 16), rel=5e-3)
    assert got["latency_s"] == pytest.approx(16 * got["time_per_image_s"])
    assert got["low_s"] <= got["latency_s"] <= got["high_s"] and got["high_s"] / got["low_s"] < 1.02
    # the two models no library can build are left out of the calibration
    assert got["calibrated_on"] == len(synthetic.MODELS) - 2 and got["coverage"] == pytest.approx(4 / 6)
    assert got["extrapolations"] == [] and got["macs"] == resnet34_macs


def test_predict_text(db, synthetic, resnet34_macs):
    lines = cli("predict", "resnet34", "resnet18", "--batch-size", "16", "--method", "ops", "--db", db).stdout.splitlines()
    assert lines[0].startswith("Predicted at batch size 16 in cpu, eager, fp32, 2 threads on m1, from a line in "
                               "operations, calibrated on the 5 models measured there: leave-one-out error median ±0%")
    assert lines[3].startswith("resnet34 ") and format_seconds(synthetic.per_image(resnet34_macs / 1e9, 16)) in lines[3]
    assert "measured: predicted without itself" in lines[4] and lines[4].startswith("resnet18")


@pytest.fixture(scope="module")
def scrambled_db(tmp_path_factory, synthetic):
    """Times of several seconds that have nothing to do with the operations."""
    db = synthetic.make_db(tmp_path_factory.mktemp("scrambled") / "s.db")
    seconds = [5.0, 1.0, 4.0, 2.0, 3.0, 6.0, 1.5]
    with sqlite3.connect(db) as con:
        for (name, *_), t in zip(synthetic.MODELS, seconds, strict=True):
            con.execute("UPDATE cells SET time_per_image_s = ?, latency_median_s = ? * batch_size WHERE model = ?",
                        (t, t, name))
    return db


def test_a_poor_calibration_gives_a_wide_interval(scrambled_db):
    [got] = json.loads(cli("predict", "resnet34", "--method", "ops", "--db", scrambled_db, "--json").stdout)
    assert got["low_s"] <= got["latency_s"] <= got["high_s"] and got["high_s"] / got["low_s"] > 3
    text = cli("predict", "resnet34", "--method", "ops", "--db", scrambled_db).stdout
    assert re.findall(r"\d[eE][+-]?\d", text) == []  # never e-notation


def test_predict_needs_four_measured_models(tmp_path, synthetic):
    db = synthetic.make_db(tmp_path / "few.db")
    with sqlite3.connect(db) as con:
        con.execute("DELETE FROM cells WHERE model NOT IN ('resnet18', 'vgg16', 'alexnet')")
    out = cli("predict", "resnet34", "--db", db)
    assert out.returncode == 2 and "at least 4 models measured at batch size 16" in out.stderr


def test_backend_precision_and_machine_restrict_the_answer(tmp_path, synthetic):
    db = synthetic.make_db(tmp_path / "s.db", setups=True)
    rows = recommend_json(db, "--max-memory", "4GB", "--min-fps", "1", "--backend", "onnxruntime")
    assert {(r["model"], r["backend"], r["precision"]) for r in rows} == {
        (m, "onnxruntime", p) for m in synthetic.SETUP_MODELS for p in ("fp32", "int8")}
    rows = recommend_json(db, "--max-memory", "4GB", "--min-fps", "1", "--precision", "bf16,int8", "--machine", "m1")
    assert {r["precision"] for r in rows} == {"bf16", "int8"}
    assert not any(r["passes"] for r in rows if r["precision"] == "bf16")  # wrong results are never recommended
    out = cli("recommend", "--db", db, "--max-memory", "4GB", "--min-fps", "1", "--backend", "openvino")
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "error: backend openvino: not measured in" in out.stderr and "(measured: compile, coreml, eager, litert, onnxruntime)" in out.stderr
