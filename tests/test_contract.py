"""The one launcher and worker contract, against hostile model files: whatever a model does to its
process, its parent, its descriptors or the machine's process table, the caller survives, says what
happened in one line, and nothing the model started outlives its worker. Real processes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import dnnbench
from dnnbench.launch import InlineLauncher, Job, Launcher
from dnnbench.runner import RunConfig, Sweep
from dnnbench.setup import Setup
from dnnbench.store import Store
from dnnbench.zoo import get

FAULTY = str(Path(__file__).parent / "data" / "faulty_models.py")
ENV = {"peak_flops": 1.0, "cpu_model": "test"}

pytestmark = pytest.mark.process


def _sweep(tmp_path, name: str, batch_sizes=(1, 2, 4)):
    cfg = RunConfig(batch_sizes=batch_sizes, setups=(Setup(threads=2),), quick=True, rounds=1, target_ci=0.05,
                    max_seconds_per_cell=0.3, on_busy="measure")
    with Store(tmp_path / "t.db") as store:
        Sweep(store, cfg, environment=ENV).run([get(f"{FAULTY}:{name}", 32)])
        return {c["batch_size"]: c for c in store.cells()}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_model_that_kills_its_parent_kills_the_launchers_server_not_the_sweep(tmp_path):
    cells = _sweep(tmp_path, "kills_its_parent_at_2")
    assert cells[1]["status"] == "ok" and cells[4]["status"] == "ok"  # a fresh worker measured the rest
    assert cells[2]["status"] == "crashed" and "parent process" in cells[2]["error"], cells[2]["error"]


def test_a_daemon_a_model_double_forks_does_not_outlive_its_worker(tmp_path, monkeypatch):
    marker = tmp_path / "daemon.pid"
    monkeypatch.setenv("DNNBENCH_TEST_MARKER", str(marker))
    cells = _sweep(tmp_path, "starts_a_daemon_at_1", batch_sizes=(1,))
    assert cells[1]["status"] == "ok"
    pid = int(marker.read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "the daemon outlived the sweep"


def test_a_model_that_closes_its_descriptors_is_said_so_not_killed_from_outside(tmp_path):
    cells = _sweep(tmp_path, "closes_its_descriptors_at_2")
    assert cells[1]["status"] == "ok"
    assert cells[2]["status"] == "crashed" and "record channel" in cells[2]["error"], cells[2]["error"]
    assert "from outside" not in cells[2]["error"]


@pytest.mark.parametrize("name, words", [("exits_in_constructor", "sys.exit(0)"),
                                         ("aborts_in_constructor", "SIGABRT")])
def test_inspect_of_a_file_that_exits_or_aborts_is_an_error_and_the_caller_goes_on(name, words):
    found = dnnbench.inspect([f"{FAULTY}:{name}", f"{FAULTY}:tiny"], errors="skip", progress=False)
    assert [r.name for r in found] == [f"{FAULTY}:tiny"]
    (failure,) = found.failures
    assert words in failure, failure


def test_inspect_of_a_file_that_hangs_is_stopped(monkeypatch):
    from dnnbench.runner import static

    monkeypatch.setattr(static, "LIMIT_S", 15.0)
    with pytest.raises(dnnbench.UserError, match="stopped"):
        dnnbench.inspect(f"{FAULTY}:hangs_in_constructor", progress=False)


def test_profiling_a_model_that_hangs_in_its_constructor_ends_with_its_error(monkeypatch):
    import dnnbench.profiling as profiling

    monkeypatch.setattr(profiling, "SILENCE_LIMIT_S", 15.0)
    found, errors = profiling.profiles([(f"{FAULTY}:hangs_in_constructor", 32, 1), (f"{FAULTY}:tiny", 32, 1)])
    assert (f"{FAULTY}:tiny", 32, 1) in found
    assert "sent nothing" in errors[(f"{FAULTY}:hangs_in_constructor", 32, 1)]


def test_every_worker_of_a_launcher_has_the_server_as_parent_and_its_own_group():
    from dnnbench.worker import STATIC

    with Launcher() as launcher:
        worker = launcher.start(Job(STATIC, {"model": f"{FAULTY}:tiny", "input_size": 32}))
        with open(f"/proc/{worker.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ppid, group, session = int(fields[1]), int(fields[2]), int(fields[3])
        assert ppid == launcher.server().proc.pid != os.getpid()
        assert group == worker.pid and session == os.getsid(0)  # its own group, the caller's session
        records = list(worker.records(idle_limit=120))
        worker.end()
        worker.log.close()
        assert worker.finished and worker.status == 0
    assert [r["type"] for r in records][-2:] == ["static", "end"]


def test_the_inline_launcher_runs_a_scenario_in_this_process():
    """The fast lane for a scenario's logic: the same records, no process."""
    from dnnbench.worker import KERNELS

    worker = InlineLauncher().start(Job(KERNELS, {"profile": [{"name": "squeezenet1_1", "input_size": 64,
                                                               "batch": 1}]}))
    records = list(worker.records())
    kinds = [r["type"] for r in records]
    assert kinds == ["start", "profile", "end"]
    assert records[1]["profile"]["calls"] and worker.finished
