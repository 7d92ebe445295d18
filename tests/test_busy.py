"""A busy machine is seen, said and handled: the load of other processes from the kernel's counters,
synthetic loads started by the tests (processes that spin), and the three --on-busy policies.
No test asserts a time or that the machine is quiet: only that a load the test made is seen."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from dnnbench.measure import busy
from dnnbench.measure.busy import Load
from dnnbench.runner import RunConfig, Sweep
from dnnbench.runner.sweep import MachineBusy
from dnnbench.setup import Setup
from dnnbench.store import Store
from dnnbench.zoo import get
from clitool import cli  # noqa: E402

FAULTY = str(Path(__file__).parent / "data" / "faulty_models.py")
ENV = {"peak_flops": 1.0, "cpu_model": "test"}


@contextmanager
def spinners(n: int, seconds: float = 600):
    """``n`` processes that each keep one core busy for at most ``seconds`` (shell loops: ``sh`` in the
    process table), started through a shell that exits at once, so that they are not our descendants
    (a sweep does not count its own descendants as others)."""
    pids = []
    for _ in range(n):
        out = subprocess.run(["sh", "-c", f"timeout {seconds} sh -c 'while :; do :; done' >/dev/null 2>&1 & echo $!"],
                             capture_output=True, text=True, check=True)
        pids.append(int(out.stdout))
    try:
        time.sleep(0.2)
        yield pids
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)  # timeout passes it on to its loop
                time.sleep(0.05)
            except ProcessLookupError:
                pass


def test_excess_counts_only_the_cores_our_threads_need():
    load = Load(cores=1.0, share=0.5, steal=0.0, seconds=1.0, allowed=2)
    assert load.excess(threads=2) == pytest.approx(0.5) and load.disturbed(2)
    assert load.excess(threads=1) == 0.0 and not load.disturbed(1)  # the other core was free for it
    assert Load(0.1, 0.05, 0.0, 1.0, 2).disturbed(2) is False
    assert Load(0.0, 0.0, 0.08, 1.0, 2).disturbed(1)  # the hypervisor's steal counts whatever the threads


def test_our_own_processes_are_not_counted():
    ticks0 = busy.process_ticks(os.getpid())
    everything = busy.Window(own_pids=())
    others = busy.Window(own_pids=(os.getpid(),))
    end = time.monotonic() + 1.0
    while time.monotonic() < end:  # this process spins: whatever share of a core it gets is ours
        pass
    all_load, other_load = everything.end(), others.end()
    ours = (busy.process_ticks(os.getpid()) - ticks0) / os.sysconf("SC_CLK_TCK") / all_load.seconds
    assert ours > 0.2
    assert all_load.cores - other_load.cores == pytest.approx(ours, abs=0.1)


def test_another_process_is_seen_and_named():
    with spinners(1):
        load, procs = busy.busiest_others(1.0)
    assert load.cores >= 0.5  # the spinner and whatever else runs: at least half a core
    assert any(name == "sh" and cores >= 0.3 for name, cores in procs)  # a share of a core, even on a busy machine
    text = busy.summary(load, procs, threads=load.allowed)
    assert text.startswith("the machine is busy:") and f"of {load.allowed} cores" in text


def config(**kw) -> RunConfig:
    base = dict(batch_sizes=(1, 2), setups=(Setup(threads=2),), quick=True, rounds=1, target_ci=0.05, max_seconds_per_cell=0.3)
    return RunConfig(**{**base, **kw})


def sweep(tmp_path, events, **kw):
    entries = [get(f"{FAULTY}:tiny", 32)]
    with Store(tmp_path / "b.db") as store:
        Sweep(store, config(**kw), on_event=lambda k, d: events.append((k, d)), environment=ENV).run(entries)
        return {c["batch_size"]: c for c in store.cells()}


def test_measure_flags_the_cells_a_load_disturbed(tmp_path):
    events = []
    with spinners(2):
        cells = sweep(tmp_path, events, on_busy="measure")
    assert any(k == "busy" for k, _ in events)  # the warning before the sweep
    for c in cells.values():
        assert c["status"] == "ok" and c["disturbed"] == 1 and c["contention"] >= 0.25
        assert c["busy_attempts"] == 1 and c["busy_wait_s"] == 0  # measure: no waiting, no second attempt
    assert not any(k == "wait" for k, _ in events)


def test_wait_waits_for_the_load_to_end_then_measures(tmp_path):
    events = []

    class Events(list):  # the load ends 2 s after the worker starts waiting for it
        def append(self, item):
            super().append(item)
            if item[0] == "wait" and len([k for k, _ in self if k == "wait"]) == 1:
                threading.Timer(2.0, stop_load).start()

    events = Events()
    with spinners(2) as pids:
        def stop_load():
            for pid in pids:
                os.kill(pid, signal.SIGTERM)

        cells = sweep(tmp_path, events, on_busy="wait", busy_wait_s=30)
    waits = [d for k, d in events if k == "wait"]
    assert waits and "other processes used" in waits[0]["load"]
    assert sum(c["busy_wait_s"] for c in cells.values()) > 0
    assert all(c["status"] == "ok" for c in cells.values())


def test_wait_gives_up_on_a_load_that_lasts_and_flags_the_cells(tmp_path):
    events = []
    with spinners(2):
        cells = sweep(tmp_path, events, on_busy="wait", busy_wait_s=2, batch_sizes=(1, 2, 4))
    assert all(c["status"] == "ok" and c["disturbed"] == 1 for c in cells.values())
    # two futile waits, then measured without waiting: never more than 2 x 2 s of the limit
    assert sum(c["busy_wait_s"] for c in cells.values()) < 2 * 2 + 3


def test_stop_measures_nothing_on_a_busy_machine(tmp_path):
    with spinners(2):
        with pytest.raises(MachineBusy, match="nothing measured"):
            sweep(tmp_path, [], on_busy="stop")
        out = cli("run", f"{FAULTY}:tiny", "--input-size", "32",
                              "--batch-sizes", "1", "--quick", "--db", str(tmp_path / "s.db"), "--on-busy", "stop")
    last = out.stderr.strip().splitlines()[-1]
    assert out.returncode == 3 and last.startswith("dnnbench: error: the machine is busy") and "Traceback" not in out.stderr
    with Store(tmp_path / "b.db") as store:
        assert store.cells() == []


def test_the_models_of_a_round_are_visited_in_a_recorded_random_order(tmp_path):
    from dnnbench.runner.sweep import round_order

    names = [f"m{i}" for i in range(8)]
    orders = {tuple(round_order(names, seed, r)) for seed in range(3) for r in (1, 2, 3)}
    assert all(sorted(o) == names for o in orders) and len(orders) > 1  # 9 draws of 40,320 orders
    assert round_order(names, 7, 2) == round_order(names, 7, 2)  # the seed replays the order
    events = []
    entries = [get(f"{FAULTY}:{n}", 32) for n in ("tiny", "slow", "chatty")]
    with Store(tmp_path / "o.db") as store:
        Sweep(store, config(batch_sizes=(1,), on_busy="measure"), on_event=lambda k, d: events.append((k, d)),
              environment=ENV).run(entries)
        (run,) = store.runs()
    seed = run["config"]["order_seed"]
    visited = [d["model"] for k, d in events if k == "worker"]
    assert visited == [e.name for e in round_order(entries, seed, 1)]


# ---- CUDA: the judgement, with NVML's answer given (the GPU itself is exercised where one is present) ----


def test_a_cuda_pass_needs_one_core_so_a_cpu_hog_on_another_core_does_not_disturb_it():
    assert busy.cores_needed("cuda:0", 16) == 1 and busy.cores_needed("cpu", 16) == 16
    one_of_16 = Load(cores=1.0, share=1 / 16, steal=0.0, seconds=1.0, allowed=16)
    assert one_of_16.disturbed(busy.cores_needed("cpu", 16))  # 6% of the cores all 16 threads need
    assert not one_of_16.disturbed(busy.cores_needed("cuda:0", 16))  # 15 cores were free for the launcher


def test_another_process_on_the_gpu_flags_the_cell_and_is_timed_again(monkeypatch):
    from dnnbench.measure.latency import TimingPolicy
    from dnnbench.worker.latency import BusyWatch

    monkeypatch.setattr(busy, "gpu_others", lambda index, own=(): (1, 874 << 20))
    events = []
    watch = BusyWatch({"on_busy": "wait", "wait_s": 1.5, "retries": 1}, 16, "cuda:0",
                      lambda kind, **d: events.append((kind, d)))
    timing = watch.time_cell(1, lambda: sum(range(1000)), TimingPolicy(target_ci=0.5, max_seconds=0.05, min_seconds=0.05), None, (), None)
    fields = timing.busy_fields()
    assert fields["gpu_other_processes"] == 1 and fields["disturbed"] == 1 and timing.attempts == 2
    waits = [d for k, d in events if k == "wait"]
    assert waits and "1 other process used the GPU" in waits[0]["load"]
    # the host's own steal during this test is real and varies: judge the GPU part alone
    assert busy.cause({**fields, "contention": 0.0, "steal": 0.0}) == "1 other process used the GPU"



# ---- kernel timing (predict) under the same rules ------------------------------------------------


def _kernel_keys(n: int = 12) -> list[str]:
    from dnnbench.launch import InlineLauncher, Job
    from dnnbench.measure.profile import replayable
    from dnnbench.worker import KERNELS

    worker = InlineLauncher().start(Job(KERNELS, {"profile": [{"name": "squeezenet1_1", "input_size": 64, "batch": 1}]}))
    (profile,) = [r["profile"] for r in worker.records() if r["type"] == "profile"]
    return [k for k in profile["calls"] if replayable(k)][:n]


def test_kernels_timed_on_a_busy_machine_are_flagged_and_timed_again_once_it_is_quiet(tmp_path):
    from dnnbench.profiling import busy_share, kernel_times

    keys = _kernel_keys()
    setup = Setup(threads=2).resolved().on("m1")
    with Store(tmp_path / "k.db") as store:
        with spinners(2):
            busy = kernel_times(keys, setup, store, busy={"on_busy": "measure"})
        assert all(busy[k]["disturbed"] and busy[k]["contention"] > 0.05 for k in keys)
        assert busy_share(dict.fromkeys(keys, 1), busy) == 1.0  # a prediction on them says BUSY
        reused = kernel_times(keys, setup, store, busy={"on_busy": "measure"})  # measure: kept, still flagged
        assert all(reused[k]["disturbed"] for k in keys)
        quiet = kernel_times(keys, setup, store, busy={"on_busy": "wait"})  # wait: timed again, the load gone
        assert all(quiet[k]["contention"] < busy[k]["contention"] for k in keys)
        assert busy_share(dict.fromkeys(keys, 1), quiet) < 1.0


def test_a_kernel_time_impossible_for_its_work_is_recognised_unless_timed_again_alike():
    from dnnbench.worker.kernels import CALL_FLOOR_S, IMPLAUSIBLE, implausible

    speed = (1e11, 2e10)  # FLOP/s, bytes/s
    work = [10_000_000, 640_000]  # the 1x1 convolution of the issue: 10 M MACs, 0.64 MB
    need = max(2 * work[0] / speed[0], work[1] / speed[1])
    assert not implausible(CALL_FLOOR_S + IMPLAUSIBLE * need * 0.99, work, speed)
    assert implausible(0.032, work, speed)  # 32 ms: 160x its need on this machine
    assert not implausible(None, work, speed) and not implausible(1.0, None, speed)
    # timed again alike, it is the kernel's own cost (a slow library path), not a preemption's
    assert not implausible(0.032, work, speed, again=0.040) and implausible(0.032, work, speed, again=0.1)
