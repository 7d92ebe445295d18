"""`dnnbench recommend` and `dnnbench predict` on a database with known figures (the report tests'
synthetic sweep): which models pass, in which order, why the others fail, interpolation between
measured batch sizes, and the operations fit."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_report import MODELS, make_db

PEAK = 2e11


def per_image(gmacs: float, b: int) -> float:  # the synthetic sweep's law (see make_db)
    return 0.002 + gmacs * 1e9 * 2 / PEAK * 1.5 / (1 + 0.1 * b)


def memory(params: float, gmacs: float, b: int) -> float:
    return 7.5e8 + 4 * params + 3e6 * gmacs * max(0, b - 4)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return make_db(tmp_path_factory.mktemp("answer") / "a.db")


def cli(*args):
    return subprocess.run([sys.executable, "-m", "dnnbench", *args], capture_output=True, text=True)


def recommend_json(db, *args):
    out = cli("recommend", "--db", str(db), "--json", *args)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_passing_models_most_accurate_first(db):
    rows = recommend_json(db, "--max-memory", "1GB", "--max-latency", "30ms")
    expected = sorted((top1, name) for name, params, gmacs, top1 in MODELS
                      if memory(params, gmacs, 1) <= 1e9 and per_image(gmacs, 1) <= 0.030)
    passing = [r["model"] for r in rows if r["passes"]]
    assert passing == [name for _, name in reversed(expected)]
    assert passing[0] == "mobilenet_v2" and "<script>alert(1)</script>" in passing
    broken = {r["model"]: r["broken"] for r in rows if not r["passes"]}
    assert set(broken) == {"vgg16", "resnet50"}
    assert any(b.startswith("memory 1.30 GB > 1.00 GB") for b in broken["vgg16"])
    assert any(b.startswith("latency 213 ms > 30.0 ms") or b.startswith("latency 213.") for b in broken["vgg16"])
    assert broken["resnet50"] == [f"latency {per_image(4.09, 1) * 1e3:.1f} ms > 30.0 ms"]


def test_interpolated_between_measured_batch_sizes(db):
    rows = recommend_json(db, "--max-memory", "2GB", "--min-fps", "1", "--batch-size", "3")
    resnet18 = next(r for r in rows if r["model"] == "resnet18")
    assert resnet18["interpolated"] is True and resnet18["between"] == [2, 4]
    want = (per_image(1.81, 2) * 2 + per_image(1.81, 4) * 4) / 2  # halfway between the two batch latencies
    assert resnet18["latency_s"] == pytest.approx(want, rel=1e-9)
    assert resnet18["images_per_s"] == pytest.approx(3 / want, rel=1e-9)
    text = cli("recommend", "--db", str(db), "--max-memory", "2GB", "--min-fps", "1", "--batch-size", "3").stdout
    assert "interpolated" in text


def test_failure_reasons_name_the_limit(db):
    rows = recommend_json(db, "--max-memory", "4GB", "--min-fps", "1", "--batch-size", "64", "--min-top1", "70")
    by = {r["model"]: r for r in rows}
    assert not any(r["passes"] for r in rows)  # nothing was measured at 64
    assert any("oom" in b for b in by["resnet50"]["broken"])
    assert any("not measured at batch size 64" in b for b in by["vgg16"]["broken"])
    assert any("top-1 56.50% < 70.0%" in b or "top-1 56.5" in b for b in by["alexnet"]["broken"])
    text = cli("recommend", "--db", str(db), "--max-memory", "4GB", "--min-fps", "1", "--batch-size", "64").stdout
    assert "resnet50" in text and "oom" in text


def test_energy_limit_without_energy_measured(db):
    rows = recommend_json(db, "--max-memory", "4GB", "--min-fps", "1", "--max-energy", "1")
    assert all(not r["passes"] and any("energy" in b for b in r["broken"]) for r in rows)


@pytest.mark.parametrize("args, message", [
    (["--max-memory", "1GB"], "one of the arguments --max-latency --min-fps is required"),
    (["--max-memory", "1GB", "--max-latency", "5ms", "--min-fps", "3"], "not allowed with argument"),
    (["--max-memory", "lots", "--min-fps", "3"], "cannot read memory size 'lots'"),
    (["--max-memory", "1GB", "--max-latency", "fast"], "cannot read duration 'fast'"),
    (["--max-memory", "1GB", "--min-fps", "3", "--min-top1", "120"], "between 0 and 100"),
])
def test_bad_limits_are_one_line(db, args, message):
    out = cli("recommend", "--db", str(db), *args)
    assert out.returncode == 2 and message in out.stderr and out.stderr.count("\n") == 1


def test_predict_from_the_operations_fit(db):
    from dnnbench.measure.static import static_figures
    from dnnbench.zoo import get

    macs = static_figures(get("resnet34")).macs
    out = cli("predict", "resnet34", "--batch-size", "16", "--db", str(db), "--json")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    # the synthetic law is exactly linear in operations at one batch size: the fit recovers it
    assert got["predicted_time_per_image_s"] == pytest.approx(per_image(macs / 1e9, 16), rel=1e-6)
    assert got["loo_max_abs_error"] < 1e-6 and got["fit_n"] == len(MODELS)
    text = cli("predict", "resnet34", "--batch-size", "16", "--db", str(db)).stdout
    assert "predicted" in text and "leave-one-out error" in text


def test_predict_needs_three_measured_models(tmp_path):
    db = make_db(tmp_path / "few.db")
    import sqlite3

    with sqlite3.connect(db) as con:
        con.execute("DELETE FROM cells WHERE model NOT IN ('resnet18', 'vgg16')")
    out = cli("predict", "resnet34", "--db", str(db))
    assert out.returncode == 2 and "at least 3 models" in out.stderr
