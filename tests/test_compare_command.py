"""`dnnbench compare`: the paired ratio and its interval on synthetic rounds with known truth, the
verdict at the margin, the selections, the exit codes, and a comparison of two real tiny databases."""

from __future__ import annotations

import json
import math
import random

import pytest

import dnnbench
from dnnbench.analysis.compare import Ratio, change, geometric_mean, verdict
from dnnbench.comparing import parse_where
from dnnbench.errors import UserError
from dnnbench.store import Store

from clitool import cli  # noqa: E402

TINY = f"{__import__('pathlib').Path(__file__).parent / 'data' / 'faulty_models.py'}:tiny"


def cell(medians: list[float], run: str = "r1", **extra) -> dict:
    mid = sorted(medians)[len(medians) // 2]
    return {"status": "ok", "latency_median_s": mid, "round_medians": medians, "round_runs": [run] * len(medians),
            "rounds": len(medians), "latency_ci_low_s": mid * 0.98, "latency_ci_high_s": mid * 1.02, **extra}


def rounds_with_drift(rng, n: int, truth: float, drift: float = 0.10, noise: float = 0.01):
    """n rounds of a base and a new cell measured in the same minutes: each round's machine speed moves
    both (``drift``, log-normal), and each its own small noise; new is ``truth`` times base."""
    base, new = [], []
    for _ in range(n):
        speed = math.exp(rng.gauss(0, drift))
        base.append(0.010 * speed * math.exp(rng.gauss(0, noise)))
        new.append(0.010 * truth * speed * math.exp(rng.gauss(0, noise)))
    return base, new


@pytest.mark.parametrize("truth", [1.0, 1.05, 0.8])
def test_the_paired_interval_covers_the_true_ratio_as_often_as_it_promises(truth):
    rng = random.Random(11)
    trials, covered = 2000, 0
    for _ in range(trials):
        base, new = rounds_with_drift(rng, 5, truth)
        r = change(cell(base), cell(new))
        assert r.paired and r.rounds == 5
        covered += r.low <= truth <= r.high
    # 95% promised; 2000 trials put a true 95% above 93.6% with 99.9% probability
    assert covered / trials >= 0.936


def test_pairing_cancels_the_drift_that_unpaired_rounds_cannot():
    rng = random.Random(5)
    base, new = rounds_with_drift(rng, 5, 1.05, drift=0.10)
    paired = change(cell(base), cell(new))
    apart = change(cell(base, run="r1"), cell(new, run="r2"))  # two runs: the rounds are not the same minutes
    assert paired.paired and not apart.paired
    assert paired.low > 1.0 and verdict(paired, 0.05) == "slower"  # a 5% slowdown shown through 10% drift
    assert apart.low < 1.0 < apart.high and verdict(apart, 0.05) == "undecided"
    assert math.log(apart.high / apart.low) > 4 * math.log(paired.high / paired.low)  # the interval's width


def test_the_unpaired_interval_of_separate_runs_covers_the_truth():
    rng = random.Random(8)
    trials, covered = 2000, 0
    for _ in range(trials):
        base, _ = rounds_with_drift(rng, 3, 1.0, drift=0.05)
        _, new = rounds_with_drift(rng, 3, 1.1, drift=0.05)
        r = change(cell(base, run="a"), cell(new, run="b"))
        covered += r.low <= 1.1 <= r.high
    assert covered / trials >= 0.936


@pytest.mark.parametrize("low, high, expected", [
    (1.01, 1.09, "slower"), (1.01, 1.04, "slower within the margin"), (0.90, 0.99, "faster"),
    (0.97, 1.03, "same"), (0.96, 1.08, "undecided"), (1.06, 1.20, "slower")])
def test_the_verdict_at_a_5_percent_margin(low, high, expected):
    assert verdict(Ratio((low + high) / 2, low, high, True, 3), 0.05) == expected


def test_the_geometric_mean_is_never_narrower_than_its_cells_show():
    g = geometric_mean([Ratio(1.1, 1.05, 1.15, True, 3), Ratio(0.9, 0.85, 0.95, True, 3)])
    assert g.value == pytest.approx(math.sqrt(1.1 * 0.9)) and g.low == pytest.approx(math.sqrt(1.05 * 0.85))
    assert geometric_mean([Ratio(1.0, 0.0, math.inf, False, 0)]).high == math.inf


def test_a_selection_is_field_equals_value():
    assert parse_where("backend=onnxruntime, precision=int8", "--new") == {"backend": "onnxruntime", "precision": "int8"}
    with pytest.raises(UserError, match="'onnxruntime' is not FIELD=VALUE"):
        parse_where("onnxruntime", "--new")


# -- databases -----------------------------------------------------------------------------------------


KEY = {"model": "resnet18", "input_size": 224, "machine": "m1", "device": "cpu", "precision": "fp32", "threads": 2,
       "layout": "nchw"}


def put_rounds(store: Store, run: int, medians: list[float], **key) -> None:
    """One cell measured in ``len(medians)`` rounds of run ``run``, each round's median given."""
    for m in medians:
        samples = [m * (1 + 0.001 * i) for i in range(-5, 6)]
        store.put_cell(run, {**KEY, "backend": "eager", "batch_size": 1, **key, "status": "ok",
                             "latency_median_s": m, "latency_samples": samples, "samples": len(samples),
                             "latency_ci_low_s": m * 0.99, "latency_ci_high_s": m * 1.01, "images_per_s": 1 / m,
                             "time_per_image_s": m}, rounds=len(medians))


def make(path, medians: dict, torch: str = "2.14.1") -> None:
    with Store(path) as store:
        run = store.start_run(["run"], {}, {"torch": torch})
        for (model, backend), ms in medians.items():
            put_rounds(store, run, ms, model=model, backend=backend)


def test_two_setups_of_one_sweep_compare_round_by_round(tmp_path):
    db = tmp_path / "one.db"
    make(db, {("resnet18", "eager"): [0.010, 0.012, 0.011], ("resnet18", "onnxruntime"): [0.0050, 0.0061, 0.0055]})
    found = dnnbench.compare(db, base_where="backend=eager", new_where="backend=onnxruntime")
    (row,) = found
    assert row["paired"] and row["rounds"] == 3 and row["verdict"] == "faster" and row["ratio"] == pytest.approx(0.5)
    assert found.differing == ("backend",) and "eager" in row["base_setup"] and "onnxruntime" in row["new_setup"]
    with pytest.raises(UserError, match="backend differs between the sides: give it on both"):
        dnnbench.compare(db, new_where="backend=onnxruntime")
    with pytest.raises(UserError, match="no field 'backnd' in these measurements"):
        dnnbench.compare(db, base_where="backnd=eager", new_where="backend=onnxruntime")


def test_the_gate_exit_codes(tmp_path):
    base, slow, same = tmp_path / "base.db", tmp_path / "slow.db", tmp_path / "same.db"
    make(base, {("resnet18", "eager"): [0.0100, 0.0101, 0.0099], ("alexnet", "eager"): [0.020, 0.0202, 0.0199]})
    make(slow, {("resnet18", "eager"): [0.0130, 0.0131, 0.0129], ("alexnet", "eager"): [0.020, 0.0201, 0.0199]},
         torch="2.15.0")
    make(same, {("resnet18", "eager"): [0.0100, 0.0100, 0.0101], ("alexnet", "eager"): [0.0201, 0.0200, 0.0200]})
    out = cli("compare", base, slow, "--fail-above", "5%")
    assert out.returncode == 5, out.stderr
    assert "1 cells slower beyond 5%" in out.stderr and "resnet18" in out.stdout
    assert cli("compare", base, slow, "--fail-above", "5%", "--gate", "geomean").returncode == 5  # 14% over the two
    assert cli("compare", base, same, "--fail-above", "5%").returncode == 0
    assert cli("compare", base, slow).returncode == 0  # no gate asked: the comparison only
    rows = json.loads(cli("compare", base, slow, "--json").stdout)
    assert {r["model"]: r["verdict"] for r in rows["cells"]}["resnet18"] == "slower"
    assert not rows["cells"][0]["paired"]  # two runs: compared from each side's rounds
    out = cli("compare", base, slow, "--new", "torch=2.14")
    assert out.returncode == 6 and "share no cell measured on both" in out.stderr
    out = cli("compare", base, slow, "--margin", "5")
    assert out.returncode == 2 and "give a percentage with its unit, e.g. 5%" in out.stderr


@pytest.mark.process
def test_two_real_tiny_databases(tmp_path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    for db in (a, b):
        out = cli("run", TINY, "--input-size", "32", "--batch-sizes", "1,2", "--threads", "1", "--rounds", "2",
                  "--max-seconds-per-cell", "1", "--on-busy", "measure", "--db", db)
        assert out.returncode == 0, out.stderr
    out = cli("compare", a, b, "--json")
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert [r["batch_size"] for r in found["cells"]] == [1, 2] and found["only_base"] == found["only_new"] == 0
    for r in found["cells"]:
        assert r["low"] <= r["ratio"] <= r["high"] and r["rounds"] == 2 and r["verdict"] in (
            "same", "undecided", "slower", "slower within the margin", "faster")
    out = cli("compare", a, b, "--report", tmp_path / "cmp")
    assert "geometric mean over 2 cells" in out.stdout and out.returncode == 0, out.stderr
    page = (tmp_path / "cmp" / "compare.html").read_text()
    assert "<svg" in page and "New over base" in page and (tmp_path / "cmp" / "compare.png").stat().st_size > 0
    assert (tmp_path / "cmp" / "compare.csv").read_text().splitlines()[0].startswith("model,input_size,batch_size")


def test_sides_timed_with_freed_memory_treated_otherwise_are_said_to_differ_in_it(tmp_path):
    """A run before 0.2.0 recorded no allocator, and its eager passes returned freed memory to glibc
    (up to 3x slower at batch 16): a comparison with a later run says so, unless asked by allocator."""
    old, kept, kept_too = tmp_path / "old.db", tmp_path / "kept.db", tmp_path / "kept2.db"
    for path, env in ((old, {"torch": "2.14.1"}), (kept, {"torch": "2.14.1", "allocator": "kept"}),
                      (kept_too, {"torch": "2.14.1", "allocator": "kept"})):
        with Store(path) as store:
            run = store.start_run(["run"], {}, env)
            put_rounds(store, run, [0.010, 0.0101, 0.0099], model="resnet18", backend="eager")
            put_rounds(store, run, [0.005, 0.0051, 0.0049], model="resnet18", backend="onnxruntime")
    apart = dnnbench.compare(old, kept)
    (warning,) = apart.warnings
    assert "base's returned freed memory to the system (dnnbench before 0.2.0), new's kept freed memory" in warning
    assert str(apart).startswith("warning: the sides' eager/compile passes were timed apart")
    assert json.loads(cli("compare", old, kept, "--json").stdout)["warnings"] == [warning]
    assert not dnnbench.compare(kept, kept_too).warnings
    # onnxruntime keeps an arena of its own: its cells alone are not said to differ
    assert not dnnbench.compare(old, kept, base_where="backend=onnxruntime", new_where="backend=onnxruntime").warnings
