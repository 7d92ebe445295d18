"""Interleaved pairs (`run --versus`): two workers that take turns on the machine, their rows in the
``pairs`` table, and `compare` reading them as the comparison's own paired measurements."""

from __future__ import annotations

import json
import math
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import dnnbench
from dnnbench.analysis.compare import interleaved
from dnnbench.comparing import pair_sides
from dnnbench.errors import UserError
from dnnbench.runner.pairs import PairConfig, interpreter_sides
from dnnbench.setup import Setup
from dnnbench.store import SCHEMA_VERSION, Store
from dnnbench.worker import pair as pair_worker

from clitool import cli  # noqa: E402

DATA = Path(__file__).parent / "data"
SMALL, AGAIN, SLOWED = (f"{DATA / 'pair_models.py'}:{f}" for f in ("small", "small_again", "small_with_extra_work"))
FAULTY = DATA / "faulty_models.py"


def _row(round_no: int, ratio: float | None, half: float = 0.01, **over) -> dict:
    if ratio is None:  # a round that failed
        return {**_row(round_no, 1.0), "pairs": None, "ratio": None, "ratio_low": None, "ratio_high": None, **over}
    row = {"run_id": 1, "round": round_no, "model": "resnet18", "input_size": 224, "machine": "lab", "device": "cpu",
           "backend": "eager", "precision": "fp32", "threads": 2, "layout": "nchw", "batch_size": 1,
           "new_model": "resnet18", "new_input_size": 224, "new_backend": "onnxruntime", "new_precision": "fp32",
           "new_threads": 2, "new_layout": "nchw", "status": "ok", "pairs": 12, "ratio": ratio,
           "ratio_low": ratio * (1 - half), "ratio_high": ratio * (1 + half), "base_median_s": 0.010,
           "new_median_s": 0.010 * ratio, "base_blocks": [0.010] * 12, "new_blocks": [0.010 * ratio] * 12}
    return {**row, **over}


# ---- the statistics of interleaved rounds ---------------------------------------------------------------


def test_the_rounds_are_the_repetitions_of_an_interleaved_ratio():
    found = interleaved([_row(1, 1.04), _row(2, 1.06), _row(3, 1.05)])
    assert found.interleaved and found.paired and found.rounds == 3
    assert found.value == pytest.approx(math.exp(sum(map(math.log, (1.04, 1.06, 1.05))) / 3))
    assert found.low < 1.05 < found.high and found.low > 1.0  # three rounds agreeing within 1%: shown slower
    one = interleaved([_row(1, 1.05, half=0.02)])  # one round: its own blocks' interval, said as one round
    assert (one.rounds, one.low, one.high) == (1, pytest.approx(1.029), pytest.approx(1.071))
    assert interleaved([_row(1, None, status="error")]) is None


def test_a_round_that_failed_is_left_out_of_the_ratio():
    found = interleaved([_row(1, 1.10), _row(2, None, status="error"), _row(3, 1.12)])
    assert found.rounds == 2


def test_pairs_are_grouped_by_their_two_sides_over_rounds_and_runs():
    rows = [_row(1, 1.0), _row(2, 1.0, run_id=2), _row(1, 1.0, new_backend="openvino"), _row(1, 1.0, batch_size=8)]
    sides = pair_sides(rows)
    assert len(sides) == 3
    base, new = next((b, n) for b, n in sides if n["backend"] == "onnxruntime" and b["batch_size"] == 1)
    assert len(base["interleaved_rows"]) == 2 and base["interleaved_rows"] is new["interleaved_rows"]
    assert (base["backend"], new["backend"], base["run_id"]) == ("eager", "onnxruntime", 2)


def test_compare_takes_the_pairs_over_the_cells_of_the_same_two_setups(tmp_path, synthetic):
    db = synthetic.make_db(tmp_path / "s.db", setups=True)
    with Store(db) as store:
        for k, ratio in enumerate((1.20, 1.21, 1.19), 1):
            store.put_pair(_row(k, ratio, machine=store.cells()[0]["machine"]))
    found = dnnbench.compare(db, base_where="backend=eager", new_where="backend=onnxruntime")
    row = next(r for r in found if r["model"] == "resnet18" and r["batch_size"] == 1)
    assert row["interleaved"] and row["rounds"] == 3 and row["ratio"] == pytest.approx(1.20, rel=0.01)
    assert row["verdict"] == "slower" and "in turns" in str(found)


def test_pairs_merge_once(tmp_path):
    source, into = tmp_path / "a.db", tmp_path / "all.db"
    with Store(source) as store:
        for k in (1, 2):
            store.put_pair(_row(k, 1.1))
    assert dnnbench.merge([source], into).pairs == 2
    again = dnnbench.merge([source], into)
    assert again.pairs == 0 and "0 interleaved pair row(s) added" in str(again)
    with Store(into, create=False) as store:
        assert [r["round"] for r in store.pairs()] == [1, 2] and store.pairs()[0]["base_blocks"] == [0.010] * 12


def test_a_schema_10_file_gains_the_interpreter_columns_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.db"
    with Store(path) as store:
        store.put_pair(_row(1, 1.1, new_python="/b/bin/python", base_software={"torch": "2.14.1"},
                            new_software={"torch": "2.15.0"}))
    with sqlite3.connect(path) as db:  # as a release of schema 10 left it
        for column in ("new_python", "base_software", "new_software"):
            db.execute(f"ALTER TABLE pairs DROP COLUMN {column}")
        db.execute("PRAGMA user_version = 10")
    with Store(path, create=False) as store:  # read as it is
        (row,) = store.pairs()
        assert row["ratio"] == 1.1 and row["new_python"] is None and row["new_software"] is None
    with Store(path) as store:  # migrated
        store.put_pair(_row(2, 1.2, new_python="/b/bin/python", new_software={"torch": "2.15.0"}))
        old, new = store.pairs()
        assert old["new_software"] is None and new["new_software"] == {"torch": "2.15.0"}
        assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


# ---- the turns -----------------------------------------------------------------------------------------


class _Turns:
    """A fake side and baton that write down who ran when."""

    def __init__(self, ratio: float):
        self.order, self.ratio, self.per_block = [], ratio, 3

    def block(self):  # the leader's side
        self.order.append("A")
        return [0.010, 0.011, 0.010]

    def send(self, **message):
        assert message == {"block": True}

    def receive(self):
        self.order.append("B")
        return {"times": [0.010 * self.ratio] * 3}


def test_the_sides_take_turns_a_b_b_a_until_the_interval_is_narrow():
    turns = _Turns(1.25)
    watch = type("Watch", (), {"own": (1,), "cores": 1})()
    found = pair_worker._paired_blocks(turns, turns, target=0.01, budget=60.0, watch=watch)
    assert "".join(turns.order[:8]) == "ABBAABBA"
    assert found["pairs"] == pair_worker.MIN_PAIRS and found["stop_reason"] == "precise"  # no spread: stops at once
    assert found["ratio"] == pytest.approx(1.25) and found["ratio_low"] == pytest.approx(1.25)


def test_a_versus_that_names_nothing_new_or_an_unknown_field_is_one_clear_error():
    with pytest.raises(UserError, match="is the base setup itself"):
        PairConfig(setup=Setup(threads=1), versus={"backend": "eager"})
    with pytest.raises(UserError, match="changes one or more of model, backend"):
        PairConfig(setup=Setup(threads=1), versus={"device": "cuda"})
    with pytest.raises(UserError, match="unknown backend 'tensorrt'"):
        PairConfig(setup=Setup(threads=1), versus={"backend": "tensorrt"})
    with pytest.raises(UserError, match="no such interpreter; give the path of another environment's python"):
        PairConfig(setup=Setup(threads=1), versus={"python": "/no/such/bin/python"})
    assert PairConfig(setup=Setup(threads=1), versus={"python": sys.executable}).new_setup == Setup(threads=1).resolved()


def test_the_sides_of_two_interpreters_are_told_apart_by_the_versions_that_differ():
    base = {"executable": "/a/bin/python", "python": "3.12.3", "torch": "2.14.1", "onnxruntime": "1.22.0"}
    rows = [_row(1, 1.0, base_software=base, new_software={**base, "executable": "/b/bin/python", "torch": "2.15.0"})]
    assert interpreter_sides(rows) == ({"torch": "2.14.1"}, {"torch": "2.15.0"})
    same = [_row(1, 1.0, base_software=base, new_software={**base, "executable": "/b/bin/python"})]
    assert interpreter_sides(same) == ({"executable": "/a/bin/python"}, {"executable": "/b/bin/python"})
    # a new side that never reported (it could not start) is its executable
    assert interpreter_sides([_row(1, None, status="error", base_software=base,
                                   new_software={"executable": "/b/bin/python"})])[1] == {"executable": "/b/bin/python"}


# ---- real pairs of workers ----------------------------------------------------------------------------


@pytest.mark.process
def test_a_model_against_itself_with_extra_work_is_shown_slower_in_turns(tmp_path):
    db = tmp_path / "pairs.db"
    out = cli("run", SMALL, "--versus", f"model={SLOWED}", "--input-size", "32", "--threads", "1", "--rounds", "2",
              "--max-seconds-per-cell", "2", "--on-busy", "measure", "--db", db)
    assert out.returncode == 0, out.stderr
    assert "in turns" in out.stdout and "slower" in out.stdout
    with sqlite3.connect(db) as con:
        con.row_factory = sqlite3.Row
        rows = [dict(r) for r in con.execute("SELECT * FROM pairs ORDER BY round")]
    assert [r["round"] for r in rows] == [1, 2] and all(r["status"] == "ok" for r in rows)
    for r in rows:
        blocks = json.loads(r["base_blocks"])
        assert r["pairs"] == len(blocks) >= pair_worker.MIN_PAIRS and r["ratio"] > 1.2  # the matrix product
        assert r["base_max_rel_error"] is None and r["new_max_rel_error"] is None  # eager fp32: the reference
    assert [r["round"] for r in dnnbench.open(db).pairs] == [1, 2]
    again = cli("compare", db, "--base", f"model={SMALL}", "--new", f"model={SLOWED}", "--json")
    (row,) = json.loads(again.stdout)["cells"]
    assert row["interleaved"] and row["rounds"] == 2 and row["verdict"] == "slower"


@pytest.mark.process
def test_a_side_that_cannot_be_built_ends_the_pair_with_its_error(tmp_path):
    out = cli("run", SMALL, "--versus", f"model={FAULTY}:fails_to_build", "--input-size", "32", "--threads", "1",
              "--rounds", "1", "--on-busy", "measure", "--db", tmp_path / "p.db")
    assert out.returncode == 4, out.stderr  # nothing compared
    assert "new: " in out.stderr and "Traceback" not in out.stderr
    with Store(tmp_path / "p.db", create=False) as store:
        (row,) = store.pairs()
    assert row["status"] == "error" and row["error"].startswith("new: ")


@pytest.mark.process
def test_the_new_side_runs_in_another_interpreter_and_reports_its_libraries(tmp_path):
    # a second environment that sees this one's libraries (a .pth file): the other side of an upgrade
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", tmp_path / "env"], check=True)
    other = tmp_path / "env" / "bin" / "python"
    ours = next(p for p in sys.path if p.endswith("site-packages") and Path(p, "torch").is_dir())
    theirs = subprocess.run([other, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    Path(theirs, "ours.pth").write_text(ours + "\n")
    db = tmp_path / "p.db"
    out = cli("run", SMALL, "--versus", f"python={other}", "--input-size", "32", "--threads", "1", "--rounds", "2",
              "--max-seconds-per-cell", "1", "--on-busy", "measure", "--db", db)
    assert out.returncode == 0, out.stderr
    assert f"in {other}" in out.stderr
    with Store(db, create=False) as store:
        rows = store.pairs()
    assert [r["status"] for r in rows] == ["ok", "ok"] and {r["new_python"] for r in rows} == {str(other)}
    for r in rows:
        assert r["base_software"]["executable"] == sys.executable and r["new_software"]["executable"] == str(other)
        assert r["new_software"]["torch"] == r["base_software"]["torch"] is not None
    assert "in turns" in out.stdout and f"executable={other}" in out.stdout
    again = cli("compare", db, "--base", f"executable={sys.executable}", "--new", f"executable={other}", "--json")
    (cell,) = json.loads(again.stdout)["cells"]
    assert cell["interleaved"] and cell["rounds"] == 2, again.stderr


@pytest.mark.process
def test_an_interpreter_without_torch_ends_the_pair_with_its_import_error(tmp_path):
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", bare], check=True)
    out = cli("run", SMALL, "--versus", f"python={bare / 'bin' / 'python'}", "--input-size", "32", "--threads", "1",
              "--rounds", "1", "--on-busy", "measure", "--db", tmp_path / "p.db")
    assert out.returncode == 4, out.stderr  # nothing compared
    with Store(tmp_path / "p.db", create=False) as store:
        (row,) = store.pairs()
    assert row["status"] == "error" and row["error"].startswith("new: ") and "No module named" in row["error"]
