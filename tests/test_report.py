"""The report, from a database with known figures: every figure drawn or explained, the CSV tables,
and the page opened in a real headless browser (Debian's Chromium driven by Playwright): no console
error, every figure there, hovering a point names its model, a hostile model name stays text."""

from __future__ import annotations

import csv
import json
import re
import shutil
import sqlite3

import pytest

from dnnbench.errors import UserError
from dnnbench.report import build_report
from dnnbench.store import Store
from clitool import cli  # noqa: E402


@pytest.fixture(scope="module")
def report(tmp_path_factory, synthetic):
    tmp = tmp_path_factory.mktemp("report")
    with Store(synthetic.make_db(tmp / "r.db")) as store:
        path = build_report(store, tmp / "out")
    return path


def test_every_figure_is_drawn_or_explained(report):
    out = report.parent
    page = report.read_text()
    for key in ("ball_chart", "top1", "time_vs_batch", "memory_vs_batch", "ops_vs_time", "top1_vs_fps",
                "top1_vs_ops", "accuracy_density", "params_vs_memory", "pareto", "efficiency"):
        assert (out / f"{key}.png").stat().st_size > 5000 and (out / f"{key}.svg").exists(), key
        assert f'id="fig-{key}"' in page
    for key in ("power_vs_batch", "ops_vs_power"):  # no energy counter in this database
        assert not (out / f"{key}.png").exists()
        assert f'id="fig-{key}"' in page
    assert page.count("Not drawn:") == 8 and "no RAPL energy counter: test" in page
    assert page.count("one machine in the database: measure others with `dnnbench run --cluster") == 2
    assert "no model was measured both in eager fp32 and in another setup" in page  # one setup: no speed-up
    assert "fewer than two setups were measured with the size of their files" in page  # nor artifacts compared
    assert page.count('<section class="figure"') == 20
    # offline: nothing to fetch (XML namespace names are identifiers, never fetched)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//|@import""", page)


def test_findings_state_the_numbers(report):
    page = report.read_text()
    assert "Operations predict time per image with R² = " in page
    assert ("Predicted from a line in operations, each measured model from the other 6: 7 of 7 within ±10%, "
            "median error ±0%") in page
    assert "vgg16 is the most expensive model: 15.5 G-MACs" in page
    # make_db's memory is flat up to batch 4, then linear
    assert "Memory stays constant up to a batch size, then grows linearly, for all 7 models." in page
    assert "resnet18: 760 MiB up to batch 4, then 5.18 MiB per image." in page
    assert "Pareto frontier" in page


def test_tables_as_csv(report, synthetic):
    out = report.parent
    models = list(csv.DictReader(open(out / "models.csv")))
    assert {r["model"] for r in models} == {m[0] for m in synthetic.MODELS}
    cells = list(csv.DictReader(open(out / "cells.csv")))
    assert len(cells) == len(synthetic.MODELS) * len(synthetic.BATCHES) + 1
    best = list(csv.DictReader(open(out / "best_models.csv")))
    assert best and all(r["images/s ≥"] for r in best)
    predicted = list(csv.DictReader(open(out / "predicted.csv")))
    assert len(predicted) == len(synthetic.MODELS)
    # make_db's time is linear in operations at one batch size: the line predicts every model exactly
    assert all(abs(float(r["error (%)"])) < 0.1 and r["what"] == "measured" for r in predicted)


@pytest.mark.parametrize("environment, words", [
    ({"allocator": "kept", "dnnbench": "0.2.0"}, "passes timed with freed memory kept for the next one"),
    ({"allocator": "system", "dnnbench": "0.2.0"}, "passes timed with the system allocator"),
    ({"dnnbench": "0.1.0"}, "timed by dnnbench 0.1.0, whose passes faulted their large activations in again"),
    ({}, None)])
def test_the_page_says_how_the_passes_treated_freed_memory(tmp_path, synthetic, environment, words):
    """Up to 3x on eager's times at batch 16 (`measure.memory.speed_mode`): a reader comparing pages
    must see it, and a run that does not say is not given words."""
    with Store(synthetic.make_db(tmp_path / "r.db")) as store:
        with store.db:
            store.db.execute("UPDATE runs SET environment = ?", (json.dumps({"cpu_model": "test CPU", **environment}),))
        page = build_report(store, tmp_path / "out").read_text()
    said = [w for w in ("freed memory kept", "system allocator", "faulted their large activations") if w in page]
    assert len(said) == (words is not None) and (words is None or words in page)


def test_memory_is_in_binary_units_like_the_run_table(report, synthetic):
    out = report.parent
    rows = {r["model"]: r for r in csv.DictReader(open(out / "models.csv"))}
    vgg = next(m for m in synthetic.MODELS if m[0] == "vgg16")
    assert rows["vgg16"]["peak memory at batch 1 (MiB)"] == str(round(synthetic.memory(vgg[1], vgg[2], 1) / 2**20, 1))
    best = list(csv.DictReader(open(out / "best_models.csv")))
    assert {r["memory ≤ (MiB)"] for r in best} == {"1,000", "2,000"}  # round numbers of MiB
    mem = synthetic.memory(vgg[1], vgg[2], 1)
    assert f"per image at batch 16, {mem / 2**30:.2f} GiB at batch 1." in report.read_text()  # the summary


def test_hostile_name_is_escaped_in_the_page(report, synthetic):
    page = report.read_text()
    assert synthetic.EVIL not in page  # never raw
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# "<!--" then "<script" inside a script element puts the HTML parser in the double-escaped state,
# where the next "</script>" no longer ends the element: the page's own script is swallowed.
COMMENT_OPENER = "x<!--<script>.py"


def test_embedded_data_is_escaped_for_every_html_parsing_state(tmp_path):
    from dnnbench.report.figures import Chart
    from dnnbench.report.html import page

    svg = tmp_path / "f.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg"></svg>')
    infos = [{"model": name, "note": "a & b > c"}
             for name in (COMMENT_OPENER, "</script><script>alert(1)//", "line\u2028separator\u2029")]
    chart = Chart(key="k", title="t", series=[infos], files={"svg": svg, "png": tmp_path / "f.png"})
    text = page("t", [], [chart], [], "")
    data = re.search(r'<script type="application/json" id="points">(.*?)</script>', text, re.S).group(1)
    assert not set(data) & {"<", ">", "&", "\u2028", "\u2029"}
    assert json.loads(data) == {"k-pts-0": infos}


def test_energy_figures_when_a_counter_was_read(tmp_path, synthetic):
    with Store(synthetic.make_db(tmp_path / "e.db", energy=True)) as store:
        path = build_report(store, tmp_path / "out")
    assert (tmp_path / "out" / "power_vs_batch.svg").exists() and (tmp_path / "out" / "ops_vs_power.svg").exists()
    page = path.read_text()
    assert page.count("Not drawn:") == 6 and "Not drawn: no model was measured both in eager fp32" in page  # one setup


def test_setups_are_compared_and_the_figures_show_the_chosen_one(tmp_path, synthetic):
    db = synthetic.make_db(tmp_path / "s.db", setups=True)
    with Store(db) as store:  # a later run measured int8's peak
        store.start_run(["run"], {"setups": [{"machine": "m1"}]},
                        {"peak_flops": 2e11, "peak_by_precision": {"int8": {"peak_flops": 4e11}}})
    with Store(db, create=False) as store:
        page = build_report(store, tmp_path / "out").read_text()
        assert "figures 1 to 13 show cpu, eager, fp32, 2 threads on m1 (choose another with --setup)" in page
        assert (tmp_path / "out" / "speedup.svg").exists() and 'id="fig-speedup"' in page
        assert "At batch 1, onnxruntime int8 runs mobilenet_v2 4x as fast as eager fp32" in page
        assert "Hatched, computing wrong results against eager fp32: mobilenet_v2 in compile bf16" in page
        assert "Never the fastest nor recommended" in page and "No accuracy for:" in page and "dnnbench eval" in page
        # what each setup ships against its latency, the restarts, what converted only, what did not convert
        assert (tmp_path / "out" / "artifacts.svg").exists() and "Smallest files: onnxruntime int8" in page
        assert "Fastest of the 2 models measured in several setups: onnxruntime int8 for 2." in page
        assert "converted only: " + synthetic.UNTIMED in page and "0.3 s / 0.2 s" in page
        assert ("Did not convert or run: mobilenet_v2 in litert int8 (error: " + synthetic.NOT_CONVERTED) in page
        deployed = list(csv.DictReader(open(tmp_path / "out" / "deployments.csv")))
        # every model in eager fp32, and the setup models also in coreml and the other setups
        assert len(deployed) == len(synthetic.MODELS) + len(synthetic.SETUP_MODELS) * (1 + len(synthetic.SETUPS))
        coreml = [r for r in deployed if r["backend"] == "coreml"]
        assert all(r["latency (s)"] == "" and r["not timed because"] == synthetic.UNTIMED for r in coreml)
        assert {r["backend"]: int(r["artifact (bytes)"]) for r in deployed if r["model"] == "resnet18"
                and r["precision"] != "bf16"} == {"eager": 4 * 11_700_000, "onnxruntime": 11_700_000,
                                                  "coreml": 2 * 11_700_000}
        rows = list(csv.DictReader(open(tmp_path / "out" / "setups.csv")))
        assert len(rows) == len(synthetic.SETUP_MODELS) * len(synthetic.SETUPS) * len(synthetic.BATCHES)
        assert {r["wrong results"] != "" for r in rows if r["backend"] == "compile"} == {True}
        shown = build_report(store, tmp_path / "int8", setup="onnxruntime, int8").read_text()
        assert "figures 1 to 13 show cpu, onnxruntime, int8, 2 threads on m1" in shown
        assert "of the int8 peak 400 GFLOP/s" in shown  # each setup against its own precision's ceiling
        bf16 = build_report(store, tmp_path / "bf16", setup="bf16").read_text()
        assert "Not drawn: the database holds no measured bf16 peak FLOP/s" in bf16
        models = list(csv.DictReader(open(tmp_path / "int8" / "models.csv")))
        assert {r["model"] for r in models} == set(synthetic.SETUP_MODELS)
        with pytest.raises(UserError, match="names 2 setups: cpu, onnxruntime, fp32"):
            build_report(store, tmp_path / "x", setup="onnxruntime")
        with pytest.raises(UserError, match="names none of the setups measured: cpu, eager, fp32"):
            build_report(store, tmp_path / "x", setup="openvino")


def test_machines_are_compared_model_by_model(tmp_path, synthetic):
    """A second machine ("edge", 4 threads) whose slowdown grows with a model's operations: the report shows
    every model on both, the ratio per model (not one number), each machine's own line, and the best models
    per machine."""
    db = synthetic.make_db(tmp_path / "m.db", edge=True)
    with Store(db, create=False) as store:
        page = build_report(store, tmp_path / "out").read_text()
    out = tmp_path / "out"
    assert (out / "machines.svg").exists() and (out / "machine_ratio.svg").exists()
    ratios = sorted(synthetic.slower(g) for name, _, g, _ in synthetic.MODELS if name != synthetic.EVIL)
    median = (ratios[2] + ratios[3]) / 2
    assert (f"On edge, 6 models take {ratios[0]:.2g}x to {ratios[-1]:.2g}x the time they take on m1 at batch 16 "
            f"(median {median:.2g}x).") in page
    assert f"edge over m1: {ratios[0]:.2g}x to {ratios[-1]:.2g}x over 6 models" in page and "not one number" in page
    assert "Time per image against operations, each machine its own line: edge " in page
    rows = list(csv.DictReader(open(out / "machines.csv")))
    assert len(rows) == 13 and {r["machine"] for r in rows} == {"m1", "edge"}
    vgg = next(r for r in rows if r["model"] == "vgg16" and r["machine"] == "edge")
    assert float(vgg["time over m1 (x)"]) == pytest.approx(synthetic.slower(15.47), rel=1e-3)
    assert 'id="best-per-machine"' in page and "<th>edge</th>" in page


def test_empty_and_failed_databases_are_clear_errors(tmp_path):
    from dnnbench.errors import UserError

    with Store(tmp_path / "empty.db") as store, pytest.raises(UserError, match="no measurements yet"):
        build_report(store, tmp_path / "out")
    with Store(tmp_path / "r.db") as store:
        run = store.start_run([], {}, {})
        store.put_cell(run, {"model": "m", "input_size": 224, "machine": "m1", "device": "cpu", "backend": "eager", "precision": "fp32",
                             "threads": 1, "batch_size": 1, "status": "crashed", "error": "boom"})
        with pytest.raises(UserError, match="every cell failed"):
            build_report(store, tmp_path / "out")


def test_memory_linear_from_batch_1_and_models_without_top1_are_named(tmp_path, synthetic):
    db = synthetic.make_db(tmp_path / "lin.db")
    with sqlite3.connect(db) as con:
        con.execute("UPDATE cells SET mem_peak_bytes = 8e8 + 1e7 * batch_size")
        con.execute("UPDATE models SET top1 = NULL, top5 = NULL WHERE model IN ('alexnet', 'vgg16')")
    with Store(db) as store:
        page = build_report(store, tmp_path / "out").read_text()
    assert "Memory grows linearly from the smallest batch size for all 7 models" in page
    assert "resnet18: 772 MiB at batch 1, then 9.54 MiB per image." in page
    note = "Not shown, having no published top-1: alexnet, vgg16."
    # under each of the 6 accuracy figures, and once in the summary
    assert page.count(note) == 7


def test_efficiency_uses_the_largest_peak_of_the_setup(tmp_path, synthetic):
    db = synthetic.make_db(tmp_path / "p.db", peak=2e11)
    with Store(db) as store:
        store.start_run(["run"], {}, {"peak_flops": 1e11, "threads": 2})  # a later run on a busier machine
        store.start_run(["run"], {}, {"peak_flops": 9e11, "threads": 8})  # another thread count: not this setup
        page = build_report(store, tmp_path / "out").read_text()
    assert "of the fp32 peak 200 GFLOP/s" in page


def test_labels_do_not_overlap():
    import matplotlib.pyplot as plt

    from dnnbench.report.figures import _label, _place_labels

    fig, ax = plt.subplots(figsize=(5, 4))
    points = [(1.0, 1.0), (1.0, 1.0), (1.02, 1.0), (1.0, 1.01), (3.0, 2.0)]
    ax.scatter(*zip(*points, strict=True))
    for i, (x, y) in enumerate(points):
        _label(ax, x, y, f"model-{i}")
    _place_labels(fig)
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert sorted(t.get_text() for t in ax.texts) == [f"model-{i}" for i in range(5)]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])
    plt.close(fig)


def test_single_model_says_why_fits_are_missing(tmp_path, synthetic):
    db = synthetic.make_db(tmp_path / "one.db")
    with sqlite3.connect(db) as con:
        con.execute("DELETE FROM cells WHERE model != 'resnet18'")
    with Store(db) as store:
        page = build_report(store, tmp_path / "out").read_text()
    assert "A fit needs at least 3 models." in page
    assert "fewer than two models" in page  # the Pareto figure


# ------------------------------------------------------------------------------------------------
# in a real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None:
        pytest.fail("the report's browser test needs Chromium: run `bash scripts/setup.sh --test` "
                    "(it installs Debian's chromium) or `apt-get install chromium`")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


def open_page(browser, path):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    problems, dialogs = [], []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, problems, dialogs


def test_page_in_a_real_browser(browser, report, synthetic):
    page, problems, dialogs = open_page(browser, report)
    assert problems == []
    assert page.locator("section.figure").count() == 20
    assert page.locator("section.figure svg").count() == 12
    # every drawn figure has hoverable points, each naming its model
    for key in ("ball_chart", "ops_vs_time", "memory_vs_batch", "pareto", "efficiency"):
        assert page.locator(f"#fig-{key} .point").count() >= 6, key
    point = page.locator("#fig-ops_vs_time .point[data-model='vgg16']").first
    point.hover(force=True)
    tip = page.locator("#tip")
    assert tip.is_visible() and tip.inner_text().startswith("vgg16")
    # the hostile name is shown as text, and never ran
    assert synthetic.EVIL in page.locator("#models").inner_text()
    marks = page.locator("#fig-accuracy_density .point")  # one dot per bar: none hides another
    names = [marks.nth(i).get_attribute("data-model") for i in range(marks.count())]
    assert synthetic.EVIL in names
    marks.nth(names.index(synthetic.EVIL)).hover(force=True)
    assert tip.inner_text().startswith(synthetic.EVIL)
    assert dialogs == [] and page.evaluate("document.querySelectorAll('script').length") == 2
    # tables sort by any column
    header = page.locator("#models th", has_text="params (M)")
    header.click()
    first = page.locator("#models tbody tr").first.locator("td").first.inner_text()
    assert first == "mobilenet_v2"
    header.click()
    assert page.locator("#models tbody tr").first.locator("td").first.inner_text() == "vgg16"
    page.close()


def test_a_name_that_opens_a_comment_keeps_the_page_working(browser, tmp_path, synthetic):
    db = synthetic.make_db(tmp_path / "c.db")
    with sqlite3.connect(db) as con:
        for table in ("models", "cells"):
            con.execute(f"UPDATE {table} SET model = ? WHERE model = 'resnet18'", (COMMENT_OPENER,))
    with Store(db) as store:
        path = build_report(store, tmp_path / "out")
    page, problems, dialogs = open_page(browser, path)
    assert problems == [] and dialogs == []
    page.locator(f"#fig-ops_vs_time .point[data-model='{COMMENT_OPENER}']").first.hover(force=True)
    assert page.locator("#tip").inner_text().startswith(COMMENT_OPENER)
    page.close()


@pytest.mark.slow
def test_real_sweep_to_report_in_the_browser(browser, tmp_path):
    """The whole path: `dnnbench run` on real models, `dnnbench report`, the page in Chromium."""
    db = tmp_path / "real.db"
    run = cli("run", "squeezenet1_1", "mobilenet_v3_small", "alexnet",
                          "--input-size", "64", "--batch-sizes", "1,2,4", "--quick", "--max-seconds-per-cell", "0.3",
                          "--on-busy", "measure", "--db", str(db))  # the suite's own load must not make it wait
    assert run.returncode == 0, run.stderr
    out = cli("report", "--db", str(db), "--out", str(tmp_path / "rep"))
    assert out.returncode == 0, out.stderr
    path = tmp_path / "rep" / "report.html"
    assert out.stdout.strip() == str(path)
    page, problems, _ = open_page(browser, path)
    assert problems == []
    assert page.locator("section.figure").count() == 20
    assert page.locator("#fig-time_vs_batch .point").count() == 9
    page.close()
    data = json.loads(cli("export", "--format", "json", "--db", str(db)).stdout)
    assert {r["model"] for r in data} == {"squeezenet1_1", "mobilenet_v3_small", "alexnet"}


def test_machines_compared_in_a_real_browser(browser, tmp_path, synthetic):
    with Store(synthetic.make_db(tmp_path / "m.db", edge=True), create=False) as store:
        path = build_report(store, tmp_path / "out")
    page, problems, dialogs = open_page(browser, path)
    assert problems == [] and dialogs == []
    assert page.locator("#fig-machines .point").count() == 2 * 13  # latency and memory of 13 model-machine pairs
    point = page.locator("#fig-machine_ratio .point[data-model='vgg16']").first
    point.hover(force=True)
    tip = page.locator("#tip")
    assert tip.is_visible() and "edge over m1" in tip.inner_text()
    assert page.locator("#machines tbody tr").count() == 13
