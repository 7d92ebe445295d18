"""The constraint search on hand-built measurements (pure Python, fast)."""

import json

import pytest

from dnnbench.analysis.data import Measured
from dnnbench.analysis.recommend import At, Limits, Verdict, as_json, figures_at, recommend, render
from dnnbench.errors import UserError
from dnnbench.setup import Setup

GB, MB = 2**30, 2**20  # memory is shown in binary units


def cell(batch, latency, mem=100 * MB, energy=None, status="ok", nvml=None):
    if status != "ok":
        return {"status": status, "batch_size": batch, "latency_median_s": None, "images_per_s": None,
                "mem_peak_bytes": None, "mem_nvml_bytes": None, "energy_per_image_j": None}
    return {"status": "ok", "batch_size": batch, "latency_median_s": latency, "images_per_s": batch / latency,
            "time_per_image_s": latency / batch, "mem_peak_bytes": mem, "mem_nvml_bytes": nvml,
            "energy_per_image_j": energy}


def model(name, cells, top1=75.0, device="cpu"):
    return Measured(model=name, input_size=224, setup=Setup(machine="m1", device=device, threads=4),
                    top1=top1, cells={c["batch_size"]: c for c in cells})


def only(models, limits):
    passing, failing = recommend(models, limits)
    return passing, {v.model.model: v.broken for v in failing}


# -- figures_at --------------------------------------------------------------------------------------

def test_figures_at_measured_batch():
    m = model("a", [cell(1, 0.01, mem=200 * MB, energy=0.4), cell(8, 0.04)])
    at = figures_at(m, 1)
    assert at == At(latency_s=0.01, images_per_s=100.0, memory_bytes=200 * MB, energy_per_image_j=0.4,
                    interpolated=False, between=None)


def test_figures_at_prefers_nvml_memory():
    m = model("a", [cell(1, 0.01, mem=200 * MB, nvml=900 * MB), cell(2, 0.02, mem=300 * MB)])
    assert figures_at(m, 1).memory_bytes == 900 * MB
    assert figures_at(m, 2).memory_bytes == 300 * MB


def test_figures_at_interpolates_between_neighbours():
    m = model("a", [cell(1, 0.001, mem=1 * MB, energy=9.0), cell(2, 0.02, mem=100 * MB, energy=1.0),
                    cell(10, 0.06, mem=500 * MB, energy=0.2), cell(64, 1.0, mem=9 * GB)])
    at = figures_at(m, 4)  # t = (4 - 2) / (10 - 2) = 0.25
    assert at.interpolated is True
    assert at.between == (2, 10)
    assert at.latency_s == pytest.approx(0.03)
    assert at.memory_bytes == pytest.approx(200 * MB)
    assert at.energy_per_image_j == pytest.approx(0.8)
    assert at.images_per_s == pytest.approx(4 / 0.03)


def test_figures_at_interpolated_energy_needs_both_sides():
    m = model("a", [cell(2, 0.02, energy=1.0), cell(10, 0.06)])
    assert figures_at(m, 4).energy_per_image_j is None


def test_figures_at_never_extrapolates():
    m = model("a", [cell(2, 0.02), cell(10, 0.06)])
    assert figures_at(m, 1) is None
    assert figures_at(m, 16) is None


def test_figures_at_does_not_interpolate_across_a_failed_cell():
    m = model("a", [cell(8, 0.08), cell(16, None, status="oom"), cell(64, 0.6)])
    assert figures_at(m, 16) is None
    assert figures_at(m, 32) is None
    assert figures_at(m, 12) is None  # the nearest above failed
    assert figures_at(m, 8) is not None


# -- limits -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, words", [
    ({"max_memory": GB}, "speed limit"),
    ({"max_memory": GB, "max_latency": 0.05, "min_fps": 30}, "not both"),
    ({"max_memory": 0, "max_latency": 0.05}, "max_memory"),
    ({"max_memory": GB, "max_latency": -0.05}, "max_latency"),
    ({"max_memory": GB, "min_fps": 0}, "min_fps"),
    ({"max_memory": GB, "min_fps": 30, "batch_size": 0}, "batch_size"),
    ({"max_memory": GB, "min_fps": 30, "batch_size": 1.5}, "batch_size"),
    ({"max_memory": GB, "min_fps": 30, "min_top1": 120}, "min_top1"),
    ({"max_memory": GB, "min_fps": 30, "max_energy": -1}, "max_energy"),
])
def test_limits_validation(kwargs, words):
    with pytest.raises(UserError) as err:
        Limits(**kwargs)
    message = str(err.value)
    assert words in message
    assert "\n" not in message
    assert "--" in message  # names the option that fixes it


def test_limits_accept_valid():
    limits = Limits(max_memory=GB, min_fps=30, batch_size=8, min_top1=70, max_energy=0.5)
    assert limits.max_latency is None and limits.batch_size == 8


# -- verdicts ---------------------------------------------------------------------------------------

def test_passing_order_top1_then_latency():
    models = [model("slow80", [cell(1, 0.02)], top1=80.0), model("fast80", [cell(1, 0.01)], top1=80.0),
              model("notop1", [cell(1, 0.001)], top1=None), model("mid", [cell(1, 0.005)], top1=77.0)]
    passing, failing = recommend(models, Limits(max_memory=GB, max_latency=0.05))
    assert [v.model.model for v in passing] == ["fast80", "slow80", "mid", "notop1"]
    assert failing == []
    assert all(isinstance(v, Verdict) and v.passes for v in passing)


def test_memory_reason():
    _, broken = only([model("big", [cell(1, 0.01, mem=int(1.52 * GB))]), model("mid", [cell(1, 0.01, mem=812 * MB)])],
                     Limits(max_memory=GB, max_latency=0.05))
    assert broken["big"] == ["memory 1.52 GiB > 1.00 GiB"]
    _, broken = only([model("mid", [cell(1, 0.01, mem=812 * MB)])], Limits(max_memory=500 * MB, max_latency=0.05))
    assert broken["mid"] == ["memory 812 MiB > 500 MiB"]


def test_memory_reason_never_prints_equal_numbers():
    _, broken = only([model("edge", [cell(1, 0.01, mem=int(1.004 * GB))])], Limits(max_memory=GB, max_latency=0.05))
    assert broken["edge"] == ["memory 1.004 GiB > 1.000 GiB"]


def test_latency_reason_and_equal_passes():
    passing, broken = only([model("slow", [cell(1, 0.0831)]), model("exact", [cell(1, 0.05)])],
                           Limits(max_memory=GB, max_latency=0.05))
    assert broken == {"slow": ["latency 83.1 ms > 50.0 ms"]}
    assert [v.model.model for v in passing] == ["exact"]


def test_min_fps_path():
    passing, broken = only([model("slow", [cell(1, 1 / 1.2)]), model("fast", [cell(1, 1 / 40)])],
                           Limits(max_memory=GB, min_fps=30))
    assert broken == {"slow": ["1.2 images/s < 30 images/s"]}
    assert [v.model.model for v in passing] == ["fast"]


def test_min_fps_at_larger_batch_uses_batch_throughput():
    m = model("a", [cell(1, 0.05), cell(8, 0.1)])  # 20 images/s at 1, 80 images/s at 8
    assert only([m], Limits(max_memory=GB, min_fps=50, batch_size=1))[1] == {"a": ["20.0 images/s < 50 images/s"]}
    assert only([m], Limits(max_memory=GB, min_fps=50, batch_size=8))[1] == {}


def test_top1_reasons():
    _, broken = only([model("low", [cell(1, 0.01)], top1=69.8), model("none", [cell(1, 0.01)], top1=None),
                      model("ok", [cell(1, 0.01)], top1=75.0)],
                     Limits(max_memory=GB, max_latency=0.05, min_top1=75))
    assert broken == {"low": ["top-1 69.8% < 75.0%"], "none": ["no top-1 published"]}


def test_energy_reasons():
    _, broken = only([model("absent", [cell(1, 0.01)]), model("hungry", [cell(1, 0.01, energy=0.52)]),
                      model("ok", [cell(1, 0.01, energy=0.1)])],
                     Limits(max_memory=GB, max_latency=0.05, max_energy=0.3))
    assert broken == {"absent": ["energy not measured"], "hungry": ["energy 0.52 J/image > 0.3 J/image"]}


def test_every_broken_limit_is_listed():
    m = model("bad", [cell(1, 0.0831, mem=int(1.52 * GB))], top1=None)
    _, broken = only([m], Limits(max_memory=GB, max_latency=0.05, min_top1=70, max_energy=1.0))
    assert broken["bad"] == ["memory 1.52 GiB > 1.00 GiB", "latency 83.1 ms > 50.0 ms", "energy not measured",
                             "no top-1 published"]


def test_not_measured_at_batch_size():
    m = model("a", [cell(1, 0.01), cell(8, 0.05), cell(64, 0.3)])
    _, broken = only([m], Limits(max_memory=GB, max_latency=1.0, batch_size=128))
    assert broken == {"a": ["not measured at batch size 128 (measured: 1, 8, 64)"]}


def test_not_measured_mentions_failed_neighbours():
    m = model("a", [cell(1, 0.01), cell(8, 0.05), cell(16, None, status="oom"), cell(64, 0.3)])
    _, broken = only([m], Limits(max_memory=GB, max_latency=1.0, batch_size=32))
    assert broken == {"a": ["not measured at batch size 32 (measured: 1, 8, 64; failed: 16: oom)"]}


def test_failed_cell_status_reason():
    m = model("a", [cell(1, 0.01), cell(8, None, status="oom"), cell(16, 0.1)])
    passing, broken = only([m], Limits(max_memory=GB, max_latency=1.0, batch_size=8))
    assert broken == {"a": ["failed at batch size 8: oom"]}
    assert passing == []


def test_no_ok_cells_at_all():
    m = model("a", [cell(1, None, status="oom"), cell(2, None, status="crashed")])
    _, broken = only([m], Limits(max_memory=GB, max_latency=1.0))
    assert broken == {"a": ["no successful measurement (1: oom, 2: crashed)"]}


def test_interpolated_verdict():
    m = model("a", [cell(2, 0.02, mem=100 * MB, energy=1.0), cell(10, 0.06, mem=500 * MB, energy=0.2)])
    passing, failing = recommend([m], Limits(max_memory=GB, max_latency=0.05, batch_size=4))
    assert len(passing) == 1 and failing == []
    at = passing[0].at
    assert at.interpolated and at.between == (2, 10)
    assert at.latency_s == pytest.approx(0.03)
    # the same model fails at 8 where interpolation gives 0.05 + (too much) memory
    _, broken = only([m], Limits(max_memory=300 * MB, max_latency=0.045, batch_size=8))
    assert broken == {"a": ["memory 400 MiB > 300 MiB", "latency 50.0 ms > 45.0 ms"]}


def test_failing_order_near_misses_first():
    models = [model("two", [cell(1, 0.1, mem=2 * GB)]), model("one", [cell(1, 0.1)])]
    _, failing = recommend(models, Limits(max_memory=GB, max_latency=0.05))
    assert [v.model.model for v in failing] == ["one", "two"]


# -- output -----------------------------------------------------------------------------------------

def test_render_table_and_failures():
    limits = Limits(max_memory=GB, max_latency=0.05, batch_size=1)
    models = [model("alpha", [cell(1, 0.0123, mem=150 * MB, energy=0.25)], top1=80.1),
              model("beta", [cell(1, 0.02, mem=100 * MB), cell(10, 0.06, mem=500 * MB)], top1=None),
              model("gamma", [cell(1, 0.2, mem=2 * GB)], top1=70.0)]
    text = render(*recommend(models, limits), limits)
    lines = text.splitlines()
    assert "memory <= 1.00 GiB" in lines[0] and "latency <= 50.0 ms" in lines[0] and "batch size 1" in lines[0]
    header = next(line for line in lines if line.startswith("model"))
    for word in ("top-1 %", "latency ms", "images/s", "memory MiB", "energy J/image"):
        assert word in header
    alpha = next(line for line in lines if line.startswith("alpha"))
    assert alpha.split()[:6] == ["alpha", "80.10", "12.3", "81.3", "150", "0.25"]
    beta = next(line for line in lines if line.startswith("beta"))
    assert beta.split()[1] == "-" and beta.split()[-1] == "-"  # no top-1, no energy
    assert "gamma: memory 2.00 GiB > 1.00 GiB; latency 200.0 ms > 50.0 ms" in text


def test_render_marks_interpolation():
    m = model("beta", [cell(2, 0.02, mem=100 * MB), cell(10, 0.06, mem=500 * MB)])
    limits = Limits(max_memory=GB, max_latency=0.05, batch_size=4)
    text = render(*recommend([m], limits), limits)
    assert "interpolated between b2 and b10" in text


def test_render_nothing_passes_and_tells_setups_apart():
    models = [model("a", [cell(1, 0.2)], device="cpu"), model("a", [cell(1, 0.3)], device="cuda")]
    limits = Limits(max_memory=GB, max_latency=0.05)
    text = render(*recommend(models, limits), limits)
    assert "None of the 2 models" in text
    assert "a (224 px, cpu, eager, fp32, 4 threads on m1): latency 200.0 ms > 50.0 ms" in text
    assert "a (224 px, cuda, eager, fp32, 4 threads on m1): latency 300.0 ms > 50.0 ms" in text


def test_as_json():
    m_pass = model("beta", [cell(2, 0.02, mem=100 * MB, energy=1.0), cell(10, 0.06, mem=500 * MB, energy=0.2)])
    m_fail = model("gamma", [cell(4, 0.2, mem=2 * GB)], top1=None)
    limits = Limits(max_memory=GB, max_latency=0.05, batch_size=4, min_top1=50)
    rows = as_json(*recommend([m_fail, m_pass], limits), limits)
    json.dumps(rows)  # serialisable
    keys = {"model", "passes", "top1", "latency_s", "images_per_s", "memory_bytes", "energy_per_image_j",
            "interpolated", "between", "broken"}
    assert all(keys <= set(r) for r in rows)
    first, second = rows
    assert first["model"] == "beta" and first["passes"] is True and first["broken"] == []
    assert first["interpolated"] is True and first["between"] == [2, 10]
    assert first["latency_s"] == pytest.approx(0.03) and first["memory_bytes"] == pytest.approx(200 * MB)
    assert first["energy_per_image_j"] == pytest.approx(0.8)
    assert second["model"] == "gamma" and second["passes"] is False
    assert second["broken"] == ["memory 2.00 GiB > 1.00 GiB", "latency 200.0 ms > 50.0 ms", "no top-1 published"]
    assert second["interpolated"] is False and second["between"] is None and second["top1"] is None


def test_without_a_machine_the_answer_is_given_for_each(tmp_path, synthetic):
    from dnnbench import api

    results = api.open(synthetic.make_db(tmp_path / "m.db", edge=True))
    answer = results.recommend(max_memory="1GB", max_latency="300ms", batch_size=1)
    text = str(answer)
    assert "2 machines measured; the answer for each" in text
    assert text.index("== on edge:") < text.index("== on m1:")
    best = answer.best_per_machine
    assert set(best) == {"m1", "edge"}
    # edge is slower: a model that meets the limit on m1 may not on edge, never the other way round
    on = {m: {r["model"] for r in answer if r["machine"] == m and r["passes"]} for m in ("m1", "edge")}
    assert on["edge"] <= on["m1"] and on["edge"] != on["m1"]
    only = results.recommend(max_memory="1GB", max_latency="300ms", batch_size=1, machine="edge")
    assert "machines measured" not in str(only) and {r["machine"] for r in only} == {"edge"}
