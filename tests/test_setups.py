"""The setup, the one identity of a measurement: machines kept apart, older files migrated with every
figure kept and attributed to the machine their runs recorded, failed cells retried per setup."""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
from pathlib import Path

import pytest

from dnnbench.errors import UserError
from dnnbench.runner import RunConfig, Sweep
from dnnbench.setup import CELL_KEY, Setup, cell_key, machine_id
from dnnbench.store import (_FIGURES_V1, _FIGURES_V2, _FIGURES_V3, _KEY_V1, APPLICATION_ID, SCHEMA_VERSION, Store,
                            _migrate_0_to_1, _migrate_1_to_2, _migrate_2_to_3)
from dnnbench.zoo import get
from clitool import cli  # noqa: E402

FAULTY = str(Path(__file__).parent / "data" / "faulty_models.py")
EPYC = {"cpu_model": "AMD EPYC 9B14 96-Core Processor", "cpu_count": 2, "memory_bytes": 24 * 2**30}
XEON = {"cpu_model": "Intel(R) Xeon(R) Platinum 8481C CPU @ 2.70GHz", "cpu_count": 2, "memory_bytes": 24 * 2**30}


def test_the_machine_id_is_readable_stable_and_tells_machines_apart():
    assert machine_id(EPYC) == machine_id(dict(EPYC))
    assert machine_id(EPYC).startswith("amd-epyc-9b14-2c-24g-")
    assert machine_id(XEON).startswith("intel-xeon-platinum-2c-24g-")
    assert machine_id({**EPYC, "cpu_count": 4}) != machine_id(EPYC)
    assert machine_id({**EPYC, "memory_bytes": 24 * 2**30 + 5 * 2**20}) == machine_id(EPYC)  # the same GiB
    assert "h200" in machine_id({**EPYC, "gpu": "NVIDIA H200"})
    assert machine_id({}) == "unknown"


def test_a_setup_is_one_value_and_a_cell_key_is_made_of_it():
    s = Setup(machine="lab1", device="cpu", backend="onnxruntime", precision="int8", threads=2)
    row = {"model": "m", "input_size": 224, **s.to_dict(), "batch_size": 8}
    assert Setup.of(row) == s and cell_key(row) == ("m", 224, *s.key(), 8)
    assert CELL_KEY == ("model", "input_size", *Setup.FIELDS, "batch_size")
    assert Setup.of({"device": "cpu", "threads": 2}) == Setup(device="cpu", threads=2)  # absent: defaults
    assert s.label() == "cpu, onnxruntime, int8, 2 threads" and s.label(machine=True).endswith(" on lab1")
    with pytest.raises(UserError, match="layout"):
        Setup(layout="nhwc")
    with pytest.raises(UserError, match="threads"):
        Setup(threads=0)
    assert Setup().threads is None and Setup().resolved().threads >= 1  # None: the cores this process may use


def cell(machine: str, batch: int = 1, median: float = 0.01, status: str = "ok", **setup) -> dict:
    return {"model": "m", "input_size": 32, **Setup(machine=machine, threads=2, **setup).to_dict(), "batch_size": batch,
            "status": status, "latency_median_s": median, "latency_samples": [median] * 6, "samples": 6}


def test_two_machines_never_pool_their_samples_in_one_cell(tmp_path):
    with Store(tmp_path / "two.db") as store:
        run = store.start_run([], {}, {})
        assert store.put_cell(run, cell("lab1", median=0.010), rounds=3)
        assert store.put_cell(run, cell("lab2", median=0.020), rounds=3)  # rounds would pool these, were they one
        cells = {c["machine"]: c for c in store.cells(with_samples=True)}
    assert set(cells) == {"lab1", "lab2"}
    assert cells["lab1"]["latency_median_s"] == 0.010 and cells["lab2"]["latency_median_s"] == 0.020
    assert cells["lab1"]["samples"] == cells["lab2"]["samples"] == 6


def test_a_cell_without_its_machine_is_refused(tmp_path):
    with Store(tmp_path / "x.db") as store:
        run = store.start_run([], {}, {})
        with pytest.raises(ValueError, match="machine"):
            store.put_cell(run, {**cell("lab1"), "machine": None})


def test_a_machine_name_already_given_to_another_machine_is_refused(tmp_path):
    with Store(tmp_path / "n.db") as store:
        store.register_machine("lab1", {"cpu": "A", "cores": 2, "memory_gib": 24, "gpu": None})
        store.register_machine("lab1", {"cpu": "A", "cores": 2, "memory_gib": 24, "gpu": None})  # the same: fine
        with pytest.raises(UserError, match="already names another machine.*give this one another --machine"):
            store.register_machine("lab1", {"cpu": "B", "cores": 8, "memory_gib": 64, "gpu": None})
        assert set(store.machines()) == {"lab1"}


def schema_3_file(path: Path) -> None:
    """A database as dnnbench wrote it at schema 3: two runs on two machines, one cell each, same key."""
    db = sqlite3.connect(path, isolation_level=None)
    for migrate in (_migrate_0_to_1, _migrate_1_to_2, _migrate_2_to_3):
        migrate(db)
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute("PRAGMA user_version = 3")
    columns = ["run_id", *_KEY_V1, *(c for c, _ in _FIGURES_V1 + _FIGURES_V2 + _FIGURES_V3), "measured_at"]
    for run_id, env, batch in ((1, EPYC, 1), (2, XEON, 2)):
        db.execute("INSERT INTO runs (run_id, started_at, environment) VALUES (?, '2026-01-01', ?)",
                   (run_id, json.dumps(env)))
        row = {"run_id": run_id, "model": "m", "input_size": 32, "device": "cpu", "backend": "eager",
               "precision": "fp32", "threads": 2, "batch_size": batch, "status": "ok", "latency_median_s": 0.01 * run_id,
               "latency_samples": json.dumps([0.01 * run_id] * 6), "samples": 6, "rounds": 1,
               "round_medians": json.dumps([0.01 * run_id]), "contention": 0.02, "disturbed": 0,
               "measured_at": "2026-01-01"}
        db.execute(f"INSERT INTO cells ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                   [row.get(c) for c in columns])
    db.close()


def test_a_schema_3_file_is_rebuilt_with_every_figure_attributed_to_its_runs_machine(tmp_path):
    path = tmp_path / "old.db"
    schema_3_file(path)
    with Store(path, create=False) as store:  # read as it is: the machines come from the runs
        before = store.cells(with_samples=True)
    assert {c["machine"] for c in before} == {machine_id(EPYC), machine_id(XEON)}
    with Store(path) as store:
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        after = store.cells(with_samples=True)
        assert set(store.machines()) == {machine_id(EPYC), machine_id(XEON)}
        index = store.db.execute("SELECT sql FROM sqlite_master WHERE name = 'cells_key'").fetchone()[0]
    assert "machine" in index and "layout" in index
    strip = lambda rows: sorted((dict(r, id=None) for r in rows), key=lambda r: r["run_id"])  # noqa: E731
    assert strip(after) == strip(before)  # every figure, the samples too
    assert {(c["machine"], c["batch_size"], c["latency_median_s"]) for c in after} == {
        (machine_id(EPYC), 1, 0.01), (machine_id(XEON), 2, 0.02)}


def config(**kw) -> RunConfig:
    base = dict(batch_sizes=(1,), setups=(Setup(threads=2),), quick=True, rounds=1, target_ci=0.05, max_seconds_per_cell=0.2,
                on_busy="measure")
    return RunConfig(**{**base, **kw})


def test_retry_failed_deletes_only_the_failed_cells_of_the_setup_being_run(tmp_path):
    entry = get(f"{FAULTY}:tiny", 32)
    with Store(tmp_path / "r.db") as store:
        sweep = Sweep(store, config(setups=(Setup(machine="lab1", threads=2),)), environment={"peak_flops": 1.0})
        sweep.run([entry])
        run = store.start_run([], {}, {})
        failed = {**cell("lab1", batch=2, status="error"), "model": entry.name}
        store.put_cell(run, failed)  # this setup's failed cell: retried
        store.put_cell(run, {**failed, "machine": "lab2"})  # another machine's: kept
        store.put_cell(run, {**failed, "precision": "bf16"})  # another precision's: kept
        retry = config(setups=(Setup(machine="lab1", threads=2),), batch_sizes=(1, 2), retry_failed=True)
        Sweep(store, retry, environment={"peak_flops": 1.0}).run([entry])
        cells = {(c["machine"], c["precision"], c["batch_size"]): c["status"] for c in store.cells()}
    assert cells == {("lab1", "fp32", 1): "ok", ("lab1", "fp32", 2): "ok", ("lab2", "fp32", 2): "error",
                     ("lab1", "bf16", 2): "error"}


def test_run_names_the_machine_and_export_carries_the_setup(tmp_path):
    db = tmp_path / "m.db"
    run = cli("run", f"{FAULTY}:tiny", "--input-size", "32",
                          "--batch-sizes", "1", "--quick", "--on-busy", "measure", "--machine", "lab1",
                          "--db", str(db))
    assert run.returncode == 0, run.stderr
    out = cli("export", "--format", "json", "--db", str(db))
    (row,) = json.loads(out.stdout)
    assert (row["machine"], row["device"], row["backend"], row["precision"], row["layout"]) == (
        "lab1", "cpu", "eager", "fp32", "nchw")


def test_every_setup_of_a_run_becomes_its_own_cells_with_its_preparation_and_correctness(tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    entry = get(f"{FAULTY}:tiny", 32)
    setups = (Setup(machine="lab1", threads=2), Setup(machine="lab1", threads=2, backend="onnxruntime"))
    temp = tmp_path / "temp"  # this sweep's own, as tests beside it fill the shared one at the same time
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    with Store(tmp_path / "s.db") as store:
        Sweep(store, config(setups=setups), environment={"peak_flops": 1.0}).run([entry])
        cells = {c["backend"]: c for c in store.cells()}
    assert [p.name for p in temp.iterdir()] == []  # the exported model and the weights file went with their worker
    assert set(cells) == {"eager", "onnxruntime"} and all(c["status"] == "ok" for c in cells.values())
    ort, eager = cells["onnxruntime"], cells["eager"]
    assert ort["cold_prepare_s"] > 0 and ort["max_rel_error"] < 1e-3 and ort["top1_agreement"] == 1.0
    assert eager["max_rel_error"] is None and eager["top1_agreement"] is None  # the reference itself
    # each started again from its files alone (weights.pt, model.onnx), caches cold and then warm
    for cell in cells.values():
        assert cell["restart_cold_s"] > 0 and cell["restart_warm_s"] > 0 and cell["restart_reason"] is None, cell
        assert cell["artifact_bytes"] > 0


@pytest.mark.parametrize("backend", ["executorch", "litert", "coreml"])
def test_a_model_that_does_not_convert_is_its_cells_one_line_and_the_rest_are_measured(tmp_path, backend):
    pytest.importorskip({"executorch": "executorch", "litert": "ai_edge_litert", "coreml": "coremltools"}[backend])
    db = tmp_path / "c.db"
    out = cli("run", f"{FAULTY}:does_not_export", f"{FAULTY}:tiny", "--input-size", "32", "--batch-sizes", "1",
              "--quick", "--on-busy", "measure", "--backend", backend, "--db", str(db))
    assert out.returncode == 1, out.stderr  # a model failed; the other was measured
    with Store(db, create=False) as store:
        cells = {c["model"].rsplit(":", 1)[-1]: c for c in store.cells()}
    failed = cells["does_not_export"]
    assert failed["status"] == "error" and "\n" not in failed["error"], failed["error"]
    assert failed["error"].startswith("preparing the backend (export, compile, quantize) failed: the model does "
                                      f"not convert for {backend}: torch.export cannot trace it"), failed["error"]
    assert cells["tiny"]["status"] == ("untimed" if backend == "coreml" else "ok")
    assert cells["tiny"]["artifact_bytes"] > 0


def test_core_ml_off_macos_converts_stores_its_package_and_says_why_it_is_not_timed(tmp_path):
    pytest.importorskip("coremltools")
    if sys.platform == "darwin":
        pytest.skip("a Mac times Core ML")
    db = tmp_path / "c.db"
    out = cli("run", f"{FAULTY}:tiny", "--input-size", "32", "--batch-sizes", "1,2", "--quick", "--on-busy", "measure",
              "--backend", "coreml", "--precision", "fp32,int8", "--db", str(db))
    assert out.returncode == 0, out.stderr
    assert "untimed: Core ML runs models on macOS only" in out.stdout and "converted but not timed" in out.stdout
    with Store(db, create=False) as store:
        cells = store.cells()
    assert len(cells) == 4 and {c["status"] for c in cells} == {"untimed"}
    by = {(c["precision"], c["batch_size"]): c for c in cells}
    assert by["fp32", 1]["artifact_bytes"] == by["fp32", 2]["artifact_bytes"] > 0  # the first batch size's package
    assert by["int8", 1]["artifact_bytes"] <= by["fp32", 1]["artifact_bytes"]  # int8 weights, where large enough
    assert all(c["cold_prepare_s"] > 0 and c["latency_median_s"] is None for c in cells)


def test_a_combination_this_device_cannot_run_is_refused_before_anything_is_measured(tmp_path):
    db = tmp_path / "f.db"
    out = cli("run", f"{FAULTY}:tiny", "--input-size", "32",
                          "--batch-sizes", "1", "--quick", "--backend", "onnxruntime", "--precision", "fp16",
                          "--db", str(db))
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "cannot run fp16 on cpu" in out.stderr and "Traceback" not in out.stderr
    assert not db.exists()


# ---- setups compared ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def setups_db(tmp_path_factory, synthetic):
    return synthetic.make_db(tmp_path_factory.mktemp("setups") / "s.db", setups=True)


def test_setups_are_named_by_the_words_of_their_fields():
    from dnnbench.setup import select

    ort32, ort8 = Setup(backend="onnxruntime", threads=2), Setup(backend="onnxruntime", precision="int8", threads=2)
    eager = Setup(threads=2, layout="channels_last")
    assert select([ort32, ort8, eager], "onnxruntime,int8") == [ort8]
    assert select([ort32, ort8, eager], "ONNXRuntime") == [ort32, ort8]
    assert select([ort32, ort8, eager], "channels-last, 2 threads") == [eager]
    assert select([ort32, ort8, eager], "openvino") == []


def test_each_setup_is_held_against_eager_fp32_and_the_wrong_one_is_never_best(setups_db, synthetic):
    from dnnbench.analysis.data import load
    from dnnbench.analysis.setups import best_setups, speedups

    with Store(setups_db, create=False) as store:
        measured = load(store)
    ups = speedups(measured)
    # one per model with other setups, other setup and batch size; none for eager fp32 itself
    assert len(ups) == len(synthetic.SETUP_MODELS) * len(synthetic.SETUPS) * len(synthetic.BATCHES)
    for u in ups:
        factor = next(f for b, p, f, _ in synthetic.SETUPS if (b, p) == (u.setup.backend, u.setup.precision))
        assert u.ratio.value == pytest.approx(1 / factor)
        assert u.verdict == ("faster" if factor < 1 else "slower")
        assert (u.wrong is not None) == (u.setup.runtime() == "compile bf16")  # int8 is not judged by agreement
    best = {(b.model, b.batch_size): b for b in best_setups(measured)}
    assert len(best) == len(synthetic.MODELS) * len(synthetic.BATCHES)
    fast = best[("resnet18", 8)]
    assert fast.setup.runtime() == "onnxruntime int8" and fast.speedup.value == pytest.approx(4)
    assert fast.runner_up.runtime() == "onnxruntime fp32" and fast.clear and fast.candidates == 3  # bf16 left out
    alone = best[("vgg16", 1)]
    assert alone.setup == alone.setup.baseline() and alone.runner_up is None and alone.candidates == 1


def test_a_setup_stored_by_a_later_version_reads_though_this_one_cannot_run_it():
    from dnnbench.setup import Setup

    stored = Setup.of({"machine": "board", "device": "cpu", "backend": "executorch", "precision": "int4", "threads": 4})
    assert (stored.backend, stored.precision) == ("executorch", "int4")
