"""Saying "A is faster than B" only when the measurements support it: paired round ratios, the
conservative fallback, and how recommend and the report flag cells a busy machine disturbed."""

from __future__ import annotations

import math

from dnnbench.analysis.compare import latency_ratio
from dnnbench.analysis.data import Measured
from dnnbench.analysis.recommend import Limits, as_json, recommend, render
from dnnbench.setup import Setup


def cell(median, rounds=None, low=None, high=None, disturbed=0, batch=1):
    return {"status": "ok", "batch_size": batch, "latency_median_s": median, "images_per_s": batch / median,
            "time_per_image_s": median / batch, "mem_peak_bytes": 10**8, "mem_nvml_bytes": None,
            "energy_per_image_j": None, "round_medians": rounds, "latency_ci_low_s": low or median * 0.98,
            "latency_ci_high_s": high or median * 1.02, "disturbed": disturbed, "contention": 0.4 * disturbed}


def test_drift_that_hits_both_models_alike_cancels_in_the_paired_ratio():
    # the machine slows 2x between rounds; A is 0.8 of B in every round
    b = [0.010, 0.020, 0.015]
    a = [0.8 * x for x in b]
    r = latency_ratio(cell(0.012, a), cell(0.015, b))
    assert r.paired and r.rounds == 3 and r.verdict == "faster"
    assert r.low <= 0.8 <= r.high and r.high < 0.81


def test_without_shared_rounds_the_interval_is_the_conservative_one():
    r = latency_ratio(cell(0.010, low=0.009, high=0.011), cell(0.0105, low=0.0100, high=0.0110))
    assert not r.paired and r.verdict == "tie"
    assert math.isclose(r.low, 0.009 / 0.011) and math.isclose(r.high, 0.011 / 0.010)
    assert "cannot be told apart" in r.describe("a", "b")
    assert latency_ratio(cell(0.010, low=0.0099, high=0.0101), cell(0.020, low=0.0198, high=0.0202)).verdict == "faster"


def test_rounds_that_disagree_make_a_tie():
    r = latency_ratio(cell(0.010, [0.010, 0.012, 0.008]), cell(0.010, [0.011, 0.010, 0.009]))
    assert r.verdict == "tie" and r.low < 1 < r.high


def model(name, c, top1):
    return Measured(model=name, input_size=224, setup=Setup(machine="m1", device="cpu", threads=2),
                    top1=top1, cells={1: c})


def test_recommend_says_which_is_faster_and_flags_the_busy_cells():
    ms = [model("quick", cell(0.010, [0.010, 0.011, 0.009]), 70.0),
          model("slowish", cell(0.020, [0.020, 0.022, 0.018], disturbed=1), 75.0)]
    limits = Limits(max_memory=10**9, max_latency=1.0)
    passing, failing = recommend(ms, limits)
    text = render(passing, failing, limits)
    assert "Fastest: quick is faster than slowish: time ratio 0.50x" in text and "paired over 3 rounds" in text
    assert "busy machine" in text and "Measured while other processes used the machine" in text
    rows = {r["model"]: r for r in as_json(passing, failing, limits)}
    assert rows["slowish"]["disturbed"] is True and rows["quick"]["disturbed"] is False


def test_the_report_rings_busy_cells_and_says_its_findings_rest_on_them(tmp_path):
    from dnnbench.report.figures import Drawer

    ms = []
    for i, name in enumerate(["a", "b", "c"]):
        cells = {b: cell(0.01 * (i + 1) * b, disturbed=int(name == "b" and b == 2), batch=b) for b in (1, 2)}
        ms.append(Measured(model=name, input_size=224, setup=Setup(machine="m1", device="cpu", threads=2),
                           top1=70.0 + i, macs=10**9 * (i + 1), params=10**6, cells=cells))
    charts = {c.key: c for c in Drawer(ms, tmp_path, batch=2, peak_flops=1e11).draw_all()}
    for key in ("time_vs_batch", "ops_vs_time", "pareto", "top1_vs_fps", "efficiency"):
        assert "Ringed in red: 1 cell measured while other processes used the machine (b (batch 2))" \
            in charts[key].finding, key
        hover = [p for series in charts[key].series for p in series if p.get("machine")]
        assert [p["model"] for p in hover] == ["b"] and hover[0]["machine"].startswith("busy")
    assert "Ringed" not in charts["ball_chart"].finding  # static figures: no timing involved


def test_the_report_summary_names_the_busy_cells_once(tmp_path, synthetic):
    import sqlite3

    from dnnbench.report import build_report
    from dnnbench.store import Store

    db = synthetic.make_db(tmp_path / "busy.db")
    with Store(db):  # brings the file to the current schema
        pass
    with sqlite3.connect(db) as con:
        con.execute("UPDATE cells SET disturbed = 1, contention = 0.45, busy_attempts = 2 "
                    "WHERE model = 'resnet18' AND batch_size = 1")
    with Store(db, create=False) as store:
        page = build_report(store, tmp_path / "out").read_text()
    assert page.count("cells were measured while other processes used the machine: resnet18 (batch 1).") == 1
    assert "Cells measured on a busy machine" in page and ">45.0<" in page
    assert "Ringed in red: 1 cell measured while other processes used the machine (resnet18 (batch 1))" in page
