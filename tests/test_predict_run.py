"""`dnnbench predict` end to end: real profiling workers, real kernels timed, a real SQLite file."""

import json
import sqlite3

import pytest

import dnnbench
from dnnbench.errors import UserError
from dnnbench.store import Store
from clitool import cli  # noqa: E402

SIZE = 64  # small inputs: every kernel times in milliseconds
CALIBRATION = {"squeezenet1_1": 4e-3, "mobilenet_v3_small": 3e-3, "shufflenet_v2_x0_5": 2.5e-3, "resnet18": 9e-3,
               "mnasnet0_5": 3.5e-3}


def database(path):
    with Store(path) as store:
        run = store.start_run(["run"], {}, {"cpu_model": "test CPU"})
        for name, latency in CALIBRATION.items():
            store.put_cell(run, {"model": name, "input_size": SIZE, "machine": "m1", "device": "cpu",
                                 "backend": "eager", "precision": "fp32", "threads": 1, "batch_size": 1,
                                 "status": "ok", "latency_median_s": latency, "images_per_s": 1 / latency,
                                 "time_per_image_s": latency})
    return path


def count(path, table):
    with sqlite3.connect(path) as db:
        return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_kernels_are_timed_once_and_kept(tmp_path):
    db = database(tmp_path / "p.db")
    res = dnnbench.open(db)
    # on_busy="measure": the suite's own load must not make it wait or time a kernel again
    first = res.predict(["mnasnet0_75", "resnet18"], batch_size=1, input_size=SIZE, progress=False, on_busy="measure")
    kernels, profiles = count(db, "kernels"), count(db, "profiles")
    assert kernels > 50 and profiles == 6  # the calibration's five and mnasnet0_75
    new, measured = first
    assert new["model"] == "mnasnet0_75" and new["low_s"] <= new["latency_s"] <= new["high_s"]
    assert new["timed_share"] == pytest.approx(1.0) and new["calibrated_on"] == 5 and new["coverage"] == 4 / 6
    assert measured["measured_latency_s"] == 9e-3 and "error" in measured
    assert "measured: predicted without itself" in str(first)
    # asked again: nothing profiled or timed anew, the same answer
    again = res.predict(["mnasnet0_75", "resnet18"], batch_size=1, input_size=SIZE, progress=False, on_busy="measure")
    assert count(db, "kernels") == kernels and count(db, "profiles") == profiles
    assert again.to_dicts() == first.to_dicts()
    # a zoo's models are estimated from the timed kernels, and say how much
    zoo = res.predict(["regnet_x_400mf"], batch_size=1, input_size=SIZE, progress=False, time_targets=False,
                      on_busy="measure")
    assert 0 <= zoo[0]["timed_share"] < 1 and "of its kernel time" in str(zoo)
    assert count(db, "kernels") == kernels
    # the report says how many kernel times an earlier dnnbench took otherwise it left out
    from dnnbench.report import build_report

    with sqlite3.connect(db) as con:
        con.execute("UPDATE kernels SET stamp = NULL WHERE rowid IN (SELECT rowid FROM kernels LIMIT 3)")
    with Store(db) as store:
        page = build_report(store, tmp_path / "report").read_text()
    assert "3 kernel times an earlier dnnbench took in another way were left out" in page


def test_a_database_that_cannot_be_written_still_answers_and_is_left_as_it_was(tmp_path, monkeypatch):
    import hashlib

    import dnnbench.store

    db = database(tmp_path / "r.db")
    before = hashlib.sha256(db.read_bytes()).hexdigest()

    def read_only(path):  # what opening a read-only file (or folder) for writing says
        raise UserError(f"{path} is read-only")

    # as for an ordinary user's read-only file: root writes through chmod, and here setpriv cannot start workers
    monkeypatch.setattr(dnnbench.store, "_check_writable_location", read_only)
    answer = dnnbench.open(db).predict("mnasnet0_75", batch_size=1, input_size=SIZE, method="features", progress=False)
    assert answer[0]["latency_s"] > 0
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.db"]


def test_what_cannot_be_predicted_says_why(tmp_path):
    db = database(tmp_path / "e.db")
    res = dnnbench.open(db)
    with pytest.raises(UserError, match=r"at least 4 models measured at batch size 8 .* \(batch sizes measured: 1\)"):
        res.predict("resnet50", batch_size=8, progress=False)
    with pytest.raises(UserError, match="unknown model"):
        res.predict("resnet5", progress=False)
    with pytest.raises(UserError, match="name the models to predict"):
        res.predict(batch_size=1, progress=False)
    with pytest.raises(UserError, match="unknown method"):
        res.predict("resnet50", method="magic", progress=False)


def test_a_model_file_is_profiled_in_a_worker_and_its_crash_is_a_row(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\ndef net():\n    os.abort()\n")
    db = database(tmp_path / "u.db")
    answer = dnnbench.open(db).predict([f"{bad}:net", "mnasnet0_75"], batch_size=1, input_size=SIZE,
                                       method="features", progress=False)
    assert "died" in answer[0]["problem"] and answer[1]["latency_s"] > 0
    assert "not profiled" in str(answer)


def test_the_command_prints_the_table_and_json(tmp_path):
    db = database(tmp_path / "c.db")
    out = cli("predict", "mnasnet0_75", "--db", str(db), "--batch-size",
                          "1", "--input-size", str(SIZE), "--method", "features", "--json", check=True)
    rows = json.loads(out.stdout)
    assert rows[0]["model"] == "mnasnet0_75" and rows[0]["method"] == "features" and rows[0]["machine"] == "m1"


def test_recommend_measure_measures_in_workers_and_accounts_for_every_candidate(tmp_path):
    candidates = ["mnasnet0_5", "squeezenet1_1", "shufflenet_v2_x0_5", "mobilenet_v3_small", "resnet18"]
    db = tmp_path / "m.db"
    # on_busy="measure": the suite's own load must not make it wait (tests/test_busy.py tests the waiting)
    answer = dnnbench.Results(db).recommend("8GB", "20ms", models=candidates, measure=True, quick=True,
                                            progress=False, on_busy="measure")
    steps = {s.name: s for s in answer.steps}
    assert sorted(steps) == sorted(candidates) and all(s.why for s in answer.steps)
    measured = [s.name for s in answer.steps if s.action == "measured"]
    # four spread over operations calibrate the predictor first: the smallest and the largest among them
    assert "shufflenet_v2_x0_5" in measured and "resnet18" in measured and len(measured) >= 4
    assert {r["model"] for r in answer} == set(measured)  # the answer is among the measured candidates only
    if answer.best is not None:
        assert steps[answer.best["model"]].passes and answer.best["latency_s"] <= 0.020
        better = [r for r in answer if r["top1"] > answer.best["top1"]]
        assert not any(r["passes"] for r in better)
    assert "Measured" in str(answer) and "candidates to decide the answer" in str(answer)


def test_kernels_are_timed_inside_real_passes_in_a_worker_and_a_crash_is_that_model_s_error(tmp_path):
    from dnnbench.profiling import in_model, profiles
    from dnnbench.setup import Setup

    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\ndef net():\n    os.abort()\n")
    wanted = [("squeezenet1_1", SIZE, 2), (f"{bad}:net", SIZE, 1), ("mnasnet0_5", SIZE, 1)]
    found, errors = in_model(wanted, Setup(threads=1).resolved(), busy={"on_busy": "measure"}, passes=2)
    assert list(errors) == [wanted[1]] and "died" in errors[wanted[1]]
    recorded, _ = profiles([wanted[0]])
    squeeze = found[wanted[0]]
    assert set(squeeze["seconds"]) == set(recorded[wanted[0]]["calls"])  # the profile's kernels, by the same keys
    assert all(s > 0 for s in squeeze["seconds"].values()) and squeeze["disturbed"] in (True, False)
    assert found[wanted[2]]["seconds"]  # the model after the crash was timed by a fresh worker


def test_the_inside_method_corrects_kernels_by_real_passes_of_the_calibration_models(tmp_path):
    db = database(tmp_path / "i.db")
    answer = dnnbench.open(db).predict("mnasnet0_75", batch_size=1, input_size=SIZE, method="inside",
                                       progress=False, on_busy="measure")
    row = answer[0]
    assert row["method"] == "inside" and row["low_s"] <= row["latency_s"] <= row["high_s"]
    assert row["calibrated_on"] == 5 and "busy" in row
    assert "corrected to its time inside a model" in str(answer)
    # the passes are kept: asked again, or by auto, no calibration model runs again
    assert count(db, "in_model") == 5
    with sqlite3.connect(db) as con:
        stamps = con.execute("SELECT measured_at FROM in_model ORDER BY model").fetchall()
    again = dnnbench.open(db).predict("mnasnet0_75", batch_size=1, input_size=SIZE, method="inside",
                                      progress=False, on_busy="measure")
    assert again.to_dicts() == answer.to_dicts()
    auto = dnnbench.open(db).predict("mnasnet0_75", batch_size=1, input_size=SIZE, progress=False, on_busy="measure")
    assert auto[0]["method"] in ("kernels", "inside", "features", "ops")
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT measured_at FROM in_model ORDER BY model").fetchall() == stamps


def test_kernels_inside_a_pass_in_bfloat16_are_keyed_as_the_profile_records_them():
    from dnnbench.profiling import in_model, profiles
    from dnnbench.setup import Setup

    wanted = [("squeezenet1_1", SIZE, 1)]
    found, errors = in_model(wanted, Setup(threads=1, precision="bf16").resolved(), busy={"on_busy": "measure"},
                             passes=2)
    recorded, _ = profiles(wanted)
    assert not errors and set(found[wanted[0]]["seconds"]) == set(recorded[wanted[0]]["calls"])


def test_auto_weighs_inside_only_where_its_passes_are_affordable(tmp_path, monkeypatch, capsys):
    import dnnbench.profiling

    db = database(tmp_path / "a.db")
    monkeypatch.setattr(dnnbench.profiling, "IN_MODEL_BUDGET_S", 0.0)
    answer = dnnbench.open(db).predict("mnasnet0_75", batch_size=1, input_size=SIZE, progress=False, on_busy="measure")
    assert answer[0]["method"] != "inside" and count(db, "in_model") == 0
    assert "auto does not weigh inside" in capsys.readouterr().err
    monkeypatch.setattr(dnnbench.profiling, "IN_MODEL_BUDGET_S", 60.0)
    dnnbench.open(db).predict("mnasnet0_75", batch_size=1, input_size=SIZE, progress=False, on_busy="measure")
    assert count(db, "in_model") == 5  # affordable: the calibration's passes are taken, and kept


def test_a_kernel_time_taken_otherwise_than_today_is_taken_again_and_one_taken_alike_is_kept(tmp_path):
    import torchvision

    from dnnbench.backends import runtime_kernels as rk
    from dnnbench.measure.kernels import profile
    from dnnbench.measure.profile import replayable
    from dnnbench.profiling import kernel_times
    from dnnbench.setup import Setup

    import torch

    found = profile(torchvision.models.squeezenet1_1(), torch.zeros(1, 3, SIZE, SIZE))
    keys = [k for k in found.calls if replayable(k)][:3]
    setup = Setup(threads=1).resolved().on("m1")
    today = rk.stamp(keys[0])
    assert today.startswith(f"eager={rk.FORMATS['eager']};torch=") and rk.stamp("openvino-int8|" + keys[0]) != today
    absurd = 1.0  # no kernel of a 64-pixel squeezenet takes a second
    with Store(tmp_path / "k.db") as store:
        store.put_kernels(setup.machine, setup.device, setup.threads, "float32", [
            {"key": keys[0], "seconds": absurd, "calls": 3, "stamp": None},  # stored before kernels were stamped
            {"key": keys[1], "seconds": absurd, "calls": 3, "stamp": today.replace(
                f"eager={rk.FORMATS['eager']}", f"eager={rk.FORMATS['eager'] - 1}")},  # an earlier way of timing
            {"key": keys[2], "seconds": absurd, "calls": 3, "stamp": today}])  # taken as today: kept
        times = kernel_times(keys, setup, store, busy={"on_busy": "measure"})
        stored = store.kernels(setup.machine, setup.device, setup.threads, "float32")
    assert times[keys[2]]["seconds"] == absurd
    for key in keys[:2]:
        assert times[key]["seconds"] < 0.1 and stored[key]["seconds"] == times[key]["seconds"]
        assert stored[key]["stamp"] == today


def test_a_worker_times_eager_kernels_in_the_order_spread_draws_not_as_asked():
    import torchvision

    from dnnbench.launch import InlineLauncher, Job
    from dnnbench.measure.kernels import profile, spread
    from dnnbench.measure.profile import replayable
    from dnnbench.worker import KERNELS

    import torch

    found = profile(torchvision.models.squeezenet1_1(), torch.zeros(1, 3, SIZE, SIZE))
    keys = [k for k in found.calls if replayable(k)][:12]  # in the model's order
    worker = InlineLauncher().start(Job(KERNELS, {"time": keys, "busy": {"on_busy": "measure"}}))
    records = list(worker.records())
    started = [r["key"] for r in records if r["type"] == "start"]
    assert started == spread(keys) != keys
    assert sorted(r["key"] for r in records if r["type"] == "kernel" and r["seconds"]) == sorted(keys)
