"""`dnnbench merge`: databases measured apart made into one, idempotent, cells kept apart by machine,
rounds pooled, conflicts resolved by the documented rule and counted; the sources never written."""

import hashlib
import json
import shutil
import sqlite3

import pytest

from dnnbench import api
from dnnbench.cli import main
from dnnbench.errors import UserError
from dnnbench.merging import decide
from dnnbench.setup import cell_key
from dnnbench.store import Store

FP = {"cpu": "test CPU", "cores": 2, "memory_gib": 24, "gpu": None}
PI = {"cpu": "Cortex-A72", "cores": 4, "memory_gib": 8, "gpu": None}


def cell(model, batch, median, machine="laptop", status="ok", **extra):
    samples = [median * (1 + (i - 10) * 1e-3) for i in range(21)] if median else []
    row = {"model": model, "input_size": 224, "machine": machine, "device": "cpu", "backend": "eager",
           "precision": "fp32", "threads": 2, "batch_size": batch, "status": status}
    if status == "ok":
        row.update(latency_samples=samples, samples=21, latency_median_s=median, latency_ci_low_s=median * 0.99,
                   latency_ci_high_s=median * 1.01, images_per_s=batch / median, time_per_image_s=median / batch,
                   mem_peak_bytes=10**8, stop_reason="converged")
    else:
        row["error"] = "resident set above --max-memory"
    row.update(extra)
    return row


def put(path, cells, rounds=3):
    """One run storing ``cells`` into ``path`` (its machines registered)."""
    with Store(path) as store:
        for machine, print_ in (("laptop", FP), ("pi", PI)):
            store.register_machine(machine, print_)
        run = store.start_run(["run"], {}, {"cpu_model": "test CPU"})
        for c in cells:
            store.put_cell(run, c, rounds=rounds)
            store.put_model({"name": c["model"], "input_size": 224, "params": 1000, "macs": 10**6})
        store.finish_run(run, "complete")


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def by_key(path):
    with Store(path, create=False) as store:
        return {cell_key(c): c for c in store.cells(with_samples=True)}


@pytest.fixture
def three(tmp_path):
    """a.db and b.db share a first round of (x, 1) and each added a second of its own (a conflict); b.db
    is a copy of a.db that went on to measure a second round of (y, 1) (a later version); c.db measured
    (z, 1) apart from a.db (pooled) and (w, 1) where a.db ran out of memory (a conflict, measured wins);
    the pi's cells sit beside the laptop's."""
    a, b, c = tmp_path / "a.db", tmp_path / "b.db", tmp_path / "c.db"
    put(a, [cell("x", 1, 0.010), cell("y", 1, 0.020), cell("x", 1, 0.030, machine="pi")])
    shutil.copy(a, b)
    put(a, [cell("x", 1, 0.011), cell("z", 1, 0.040), cell("w", 1, None, status="oom")])
    put(b, [cell("x", 1, 0.012), cell("y", 1, 0.021)])
    put(c, [cell("z", 1, 0.042), cell("w", 1, 0.050)])
    return a, b, c


def test_merging_twice_adds_nothing_and_never_writes_the_sources(three, tmp_path):
    a, b, c = three
    before = [digest(p) for p in three]
    into = tmp_path / "all.db"
    first = api.merge([a, b, c], into)
    assert first.cells == {"added": 5, "same": 1, "updated": 1, "pooled": 1, "conflict": 2}
    assert first.runs == 4  # a's two, b's own (its first is a's), c's
    assert len(first.conflicts) == 2
    once = by_key(into)
    again = api.merge([a, b, c], into)
    assert again.cells["added"] == again.cells["pooled"] == again.cells["updated"] == again.runs == 0
    assert by_key(into) == once
    assert [digest(p) for p in three] == before

    cells = {(k[0], k[2]): v for k, v in once.items()}
    assert len(once) == 5  # x, y, z, w on the laptop and x on the pi: every cell once, machines apart
    assert cells[("x", "pi")]["latency_median_s"] == 0.030
    # y: b.db's later version holds both rounds
    assert cells[("y", "laptop")]["rounds"] == 2
    # z: the two databases' rounds pooled, as the sweep pools a later round
    z = cells[("z", "laptop")]
    assert z["rounds"] == 2 and z["samples"] == 42 and sorted(z["round_medians"]) == [0.040, 0.042]
    assert 0.040 < z["latency_median_s"] < 0.042
    # w: measured beats out of memory; x: a's and b's second rounds conflict, both have 2 rounds: the later kept
    assert cells[("w", "laptop")]["status"] == "ok"
    assert cells[("x", "laptop")]["round_medians"] == [0.010, 0.012]


def test_the_merged_database_reads_like_any_other(three, tmp_path):
    into = tmp_path / "all.db"
    api.merge(three, into)
    results = api.open(into)
    assert {c["machine"] for c in results.cells} == {"laptop", "pi"}
    assert len(results.runs) == 4
    with Store(into, create=False) as store:
        assert store.machines() == {"laptop": FP, "pi": PI}


def test_one_machine_name_for_two_machines_is_refused_before_writing(tmp_path):
    a, b, into = tmp_path / "a.db", tmp_path / "b.db", tmp_path / "all.db"
    put(a, [cell("x", 1, 0.01)])
    with Store(b) as store:
        store.register_machine("laptop", {**FP, "cores": 8})
    with pytest.raises(UserError, match="different machine 'laptop'"):
        api.merge([a, b], into)
    assert not into.exists() or not by_key(into)


def test_a_source_is_never_the_target(tmp_path):
    a = tmp_path / "a.db"
    put(a, [cell("x", 1, 0.01)])
    with pytest.raises(UserError, match="never writes what it reads"):
        api.merge([a], a)
    with pytest.raises(UserError, match="does not exist"):
        api.merge([tmp_path / "nope.db"], tmp_path / "all.db")


def test_the_command_line_says_what_it_did(three, tmp_path, capsys):
    into = tmp_path / "all.db"
    assert main(["merge", *map(str, three), "--into", str(into), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cells"]["conflict"] == 2 and out["into"] == str(into)
    assert main(["merge", *map(str, three), "--into", str(into)]) == 0
    text = capsys.readouterr().out
    assert "0 cell(s) added" in text and "2 conflict(s)" in text and "measured over failed" in text


def test_cells_stored_before_rounds_were_named_are_never_pooled():
    old = {**cell("x", 1, 0.01), "round_runs": None, "measured_at": "2026-01-01"}
    other = {**cell("x", 1, 0.02), "round_runs": None, "measured_at": "2026-02-01"}
    assert decide(old, dict(old))[0] == "same"
    action, kept = decide(old, other)
    assert action == "conflict" and kept is other  # same rounds: the later


def test_an_old_database_merges_once(tmp_path):
    """A schema 6 file read as it is: its runs get the uid its migration would give, so merging the
    file and then its migrated copy adds nothing the second time."""
    a, into = tmp_path / "a.db", tmp_path / "all.db"
    put(a, [cell("x", 1, 0.01)])
    db = sqlite3.connect(a)
    db.execute("DROP INDEX runs_uid")
    db.execute("ALTER TABLE runs DROP COLUMN uid")
    for column in ("round_runs", "latency_p90_high_s", "latency_p99_high_s"):  # schema 7 and 9's
        db.execute(f"ALTER TABLE cells DROP COLUMN {column}")
    db.execute("DROP TABLE serving")  # schema 8's
    db.execute("DROP TABLE pairs")  # schema 10 and 11's
    db.execute("PRAGMA user_version = 6")
    db.commit()
    db.close()
    assert api.merge([a], into).cells["added"] == 1
    with Store(a, create=False) as store:
        old_uid = store.runs()[0]["uid"]
    with Store(a) as store:  # migrated to 7
        assert store.runs()[0]["uid"] == old_uid
    again = api.merge([a], into)
    assert again.cells["same"] == 1 and again.runs == 0


def test_a_database_merged_mid_sweep_and_again_when_done_takes_the_later_rounds(tmp_path):
    """Both rounds of one sweep carry its run: the copy taken between them is an earlier version."""
    source, partial, into = tmp_path / "board.db", tmp_path / "board-midway.db", tmp_path / "all.db"
    with Store(source) as store:
        store.register_machine("laptop", FP)
        run = store.start_run(["run"], {}, {"cpu_model": "test CPU"})
        store.put_cell(run, cell("x", 1, 0.010), rounds=2)
        with sqlite3.connect(partial) as copy:  # as a board's database is brought back mid-sweep
            store.db.backup(copy)
        store.put_cell(run, cell("x", 1, 0.012), rounds=2)
        store.finish_run(run, "complete")
    assert api.merge([partial], into).cells["added"] == 1
    again = api.merge([source], into)
    assert again.cells["updated"] == 1 and again.cells["same"] == 0
    [x] = by_key(into).values()
    assert x["rounds"] == 2 and x["round_medians"] == [0.010, 0.012]
    assert api.merge([partial], into).cells["same"] == 1  # the earlier copy again: nothing to do


def test_a_cell_of_an_older_database_names_its_run_once_for_all_its_rounds():
    done = {**cell("x", 1, 0.01), "rounds": 2, "round_runs": ["r1"]}
    midway = {**cell("x", 1, 0.01), "rounds": 1, "round_runs": ["r1"]}
    assert decide(midway, done)[0] == "updated" and decide(done, midway)[0] == "same"


def test_profiles_kernel_times_and_in_model_times_are_merged(tmp_path):
    from dnnbench.merging import merge

    source, target = tmp_path / "a.db", tmp_path / "b.db"
    put(source, [cell("resnet18", 1, 0.01)])
    put(target, [cell("resnet50", 1, 0.03)])
    with Store(source) as store:
        store.put_profile("resnet18", 224, 1, "v1", {"calls": {"k": 2}, "specs": {"k": ["other", 0, 1, 4]}})
        store.put_kernels("laptop", "cpu", 2, "float32", [{"key": "k", "seconds": 1e-4, "calls": 9,
                                                             "stamp": "eager=2;torch=2.14.1"}])
        store.put_in_model("laptop", "cpu", 2, "float32", "v1", ("resnet18", 224, 1),
                           {"seconds": {"k": 2e-4}, "contention": 0.0, "disturbed": False})
    merge([source], target)
    merge([source], target)  # idempotent
    with Store(target) as store:
        assert store.profiles("v1") == {("resnet18", 224, 1): {"calls": {"k": 2}, "specs": {"k": ["other", 0, 1, 4]}}}
        assert store.kernels("laptop", "cpu", 2, "float32")["k"] == {
            "seconds": 1e-4, "calls": 9, "contention": None, "error": None, "stamp": "eager=2;torch=2.14.1"}
        assert store.in_model("laptop", "cpu", 2, "float32", "v1") == {
            ("resnet18", 224, 1): {"seconds": {"k": 2e-4}, "contention": 0.0, "disturbed": False}}


def test_a_stamped_kernel_time_replaces_an_unstamped_one_and_an_older_source_s_merge_without_a_stamp(tmp_path):
    import sqlite3

    from dnnbench.merging import merge

    old, new, target = tmp_path / "old.db", tmp_path / "new.db", tmp_path / "t.db"
    for path in (old, new, target):
        put(path, [cell("resnet18", 1, 0.01)])
    row = {"seconds": 1e-4, "calls": 9}
    with Store(old) as store:
        store.put_kernels("laptop", "cpu", 2, "float32", [{"key": "a", **row}, {"key": "b", **row}])
    db = sqlite3.connect(old)  # as schema 16 left it: no stamp
    db.execute("ALTER TABLE kernels DROP COLUMN stamp")
    db.execute("PRAGMA user_version = 16")
    db.commit()
    db.close()
    with Store(new) as store:
        store.put_kernels("laptop", "cpu", 2, "float32", [{"key": "a", "seconds": 2e-4, "calls": 5, "stamp": "eager=2"}])
    merge([old], target)
    merge([new], target)
    merge([old], target)  # an unstamped time never replaces a stamped one
    with Store(target) as store:
        got = store.kernels("laptop", "cpu", 2, "float32")
    assert got["a"]["seconds"] == 2e-4 and got["a"]["stamp"] == "eager=2"
    assert got["b"]["seconds"] == 1e-4 and got["b"]["stamp"] is None
