"""Profiles and kernel tables for `dnnbench predict`: run the profiling workers, keep what they find.

`profiles()` gives each model's kernels at a batch size: from the database where the same library
versions recorded them, else from the profiles dnnbench ships for these versions (`shipped`), else
recorded by worker processes (two at a time: building models on the
meta device is single-threaded Python) and stored as each arrives. `kernel_times()` times the kernels
no run has timed on this machine, device, thread count and precision (or an earlier dnnbench, or
other library versions, timed otherwise: `runtime_kernels.stamp`), in one worker holding the
measuring lock (as a sweep does: two timings never share the machine), and stores them in batches, so
an interrupted call keeps what it timed.
"""

from __future__ import annotations

import contextlib
import os
import time

from ..backends import runtime_kernels
from ..errors import UserError
from ..launch import IMPORT_LIMIT_S, Job, Launcher
from ..measure.device import DTYPE_NAMES
from ..worker import KERNELS
from . import shipped

PROFILE_FORMAT = 3  # raise when the recorder's output changes: stored profiles are then recorded again
# eager has no int8 kernels (pt2e int8 runs as int8 only once compiled): an int8 setup's kernels are timed
# in fp32, and its calibration on int8 cells absorbs the difference
DTYPES = {**DTYPE_NAMES, "int8": "float32"}
PARALLEL = 2
STORE_EVERY = 50  # kernel times stored per transaction


def versions() -> str:
    """The libraries a profile depends on, as one string (a profile of other versions is recorded again)."""
    found = [f"format={PROFILE_FORMAT}"]
    found += [f"{package}={version}" for package, version in shipped.libraries().items() if version]
    return ";".join(found)


# a worker that sends nothing for this long hangs (a model's constructor, a kernel that never returns):
# building one model on the meta device takes seconds; timing one kernel at most a second, plus the
# waits for a quiet machine
SILENCE_LIMIT_S = IMPORT_LIMIT_S + 180.0
# waits for a quiet machine in a row that ended with it still busy, over this process's kernel workers:
# a load that lasts is waited for twice, then measured and flagged (as a sweep does across its workers)
_FUTILE = [0]


def _run(jobs: list[dict], on_record) -> list[tuple[int, str]]:
    """Run the ``jobs`` in parallel workers, calling ``on_record`` for each record (with ``job``: its
    index) in this thread; returns (job index, error) of the workers that died or hung."""
    started = []
    with Launcher() as launcher:
        try:
            for job in jobs:
                started.append(launcher.start(Job(KERNELS, job, int(job.get("threads", 1)))))
            return _follow(started, on_record)
        finally:
            for worker in started:
                worker.close()


def _follow(workers: list, on_record) -> list[tuple[int, str]]:
    errors = []
    heard = [time.monotonic()] * len(workers)
    live = set(range(len(workers)))
    while live:
        for i in sorted(live):
            worker = workers[i]
            exited = worker.poll() is not None
            got = worker.read(0 if exited else 0.05 / len(live))
            for record in got:
                heard[i] = time.monotonic()
                if record["type"] not in ("end", "stage"):
                    on_record({**record, "job": i})
            if worker.closed or (exited and not got):
                live.discard(i)
                worker.settle()
                rc = worker.end()
                if not worker.finished or worker.status:
                    errors.append((i, f"the profiling worker died ({worker.exit_words(rc)})"))
            elif time.monotonic() - heard[i] > SILENCE_LIMIT_S:
                live.discard(i)
                worker.end()
                errors.append((i, f"the profiling worker sent nothing for {SILENCE_LIMIT_S:.0f} s and was stopped "
                                  "(a model that hangs in its constructor, or a kernel that never returns)"))
    return errors


def profiles(wanted: list[tuple[str, int, int]], store=None, progress=None) -> tuple[dict, dict]:
    """({(model, input size, batch): profile dict}, {(model, input size, batch): error}) for ``wanted``
    (registry names or model files, their input sizes and batch sizes): from ``store`` (a `Store`, may be
    None or read-only) where recorded with these versions, else from the profiles dnnbench ships
    (`shipped`) where they are for the versions installed, else recorded now and stored there.
    ``progress(done, total)`` after each model."""
    from ..zoo.registry import is_user_model

    stamp = versions()
    found: dict = {}
    if store is not None:
        cached = store.profiles(stamp)
        found = {k: cached[k] for k in wanted if k in cached and not is_user_model(k[0])}
    missing = [k for k in dict.fromkeys(wanted) if k not in found]
    writable = [store is not None and not store.readonly]
    if missing:
        served = shipped.lookup(missing, PROFILE_FORMAT)
        if served and writable[0]:  # kept as recorded ones are: the report predicts from the database's
            try:
                store.put_profiles(served, stamp)
            except UserError:  # a full disk or read-only file: the profiles still serve this call
                writable[0] = False
        found.update(served)
        missing = [k for k in missing if k not in found]
    errors: dict = {}
    if progress:
        progress(len(found), len(found) + len(missing))
    if not missing:
        return found, errors
    current: dict[int, tuple] = {}  # job index -> the model it is profiling

    def on_record(record: dict) -> None:
        if record["type"] == "start":
            current[record["job"]] = next(k for k in missing if k[0] == record["name"] and k[2] == record["batch"]
                                          and (record["input_size"] is None or k[1] == record["input_size"]))
            return
        key = current[record["job"]]
        if record["type"] == "profile":
            found[key] = record["profile"]
            if writable[0] and not is_user_model(key[0]):
                try:
                    store.put_profile(*key, stamp, record["profile"])
                except UserError:  # a full disk or read-only file: the profile still serves this call
                    writable[0] = False
        else:
            errors[key] = record["error"]
        if progress:
            progress(len(found) + len(errors), len(wanted))

    while True:  # a worker that dies takes its model with it, and the rest of its share is profiled again
        left = [k for k in missing if k not in found and k not in errors]
        if not left:
            break
        chunks = [left[i::PARALLEL] for i in range(min(PARALLEL, len(left)))]
        current.clear()
        died = _run([{"profile": [{"name": n, "input_size": s, "batch": b} for n, s, b in chunk]} for chunk in chunks],
                    on_record)
        for index, error in died:
            errors[current.get(index, chunks[index][0])] = error
        if not died:
            for key in left:
                if key not in found and key not in errors:
                    errors[key] = "the profiling worker recorded nothing"
    return found, errors


def kernel_times(keys: list[str], setup, store=None, progress=None, work: dict | None = None,
                 busy: dict | None = None, on_wait=None) -> dict[str, dict]:
    """{kernel key: {seconds, calls, contention, error}} on ``setup``'s machine, device, threads and
    precision: those ``store`` holds that were timed on a quiet machine as today's dnnbench and libraries
    time them (`stored_kernels`), and the rest timed now by one
    worker holding the measuring lock, under the sweep's busy rules (``busy``: ``on_busy``, ``wait_s``,
    ``retries``; default: wait). ``work`` {key: [MACs, bytes]} lets the worker time again a kernel
    whose time is impossible for its work (one that repeats it is kept as its cost,
    `worker.kernels.implausible`); one still impossible is kept out (seconds None, its error
    says why), so it is estimated from the others and timed again by the next call. A kernel timed while
    others disturbed the machine is stored with its contention, counts as ``disturbed``, and is timed
    again by a later call that waits for quiet (``on_busy`` wait). ``on_wait(text)`` hears of each wait
    for a quiet machine."""
    from ..runner.lock import machine_lock

    dtype = DTYPES[setup.precision]
    # a kernel stored from a busy machine is timed again where the caller waits for quiet (wait), and
    # used as it is, flagged, where it only records the load (measure, stop)
    retime = (busy or {}).get("on_busy", "wait") == "wait"
    table = _KernelTable(store, setup, dtype, progress, on_wait, retime)
    missing = [k for k in dict.fromkeys(keys) if k not in table.timed]
    table.missing = len(missing)
    if progress:
        progress(0, len(missing))
    if not missing:
        return table.timed
    if setup.device != "cpu":
        raise UserError(f"kernels are timed on the CPU only, not {setup.device}: predict with --method features "
                        "or ops on this setup")
    work = work or {}
    spec = {"dtype": dtype, "busy": _busy_spec(busy)}
    with machine_lock():
        try:
            while True:  # a kernel that kills its worker is recorded as failed, and the rest timed by another
                left = [k for k in missing if k not in table.timed]
                if not left:
                    break
                table.current = None
                job = {**spec, "time": left, "threads": setup.threads, "work": {k: work[k] for k in left if k in work}}
                died = _run([job], table.on_record)
                if not died:
                    break
                table.keep({"key": table.current or left[0], "seconds": None, "calls": 0, "error": died[0][1]})
        finally:
            table.flush()
    return table.timed


def _busy_spec(busy: dict | None) -> dict:
    """The busy rules of a timing worker: the caller's (default: wait), this process counted as ours, and
    the waits in vain so far."""
    return {"on_busy": "wait", "wait_s": 30.0, "retries": 1, **(busy or {}), "parent": os.getpid(),
            "futile": _FUTILE[0]}


def in_model(wanted: list[tuple[str, int, int]], setup, store=None, busy: dict | None = None, progress=None,
             passes: int = 5) -> tuple[dict, dict]:
    """({(model, input size, batch): {"seconds": {kernel key: seconds of one call inside the model},
    "disturbed", "contention"}}, {(model, input size, batch): error}) for ``wanted``: those ``store``
    holds for ``setup``'s machine, device, threads and precision (timed on a quiet machine, unless the
    caller only records the load), and the rest timed now and stored: each model run for real by one
    worker holding the measuring lock, in the precision its kernels are timed alone in, and each of its
    kernels timed where it runs (`measure.kernels.in_model_times`), under the busy rules (``busy`` as
    `kernel_times`'s)."""
    from ..runner.lock import machine_lock
    from ..zoo.registry import is_user_model

    if setup.device != "cpu":
        raise UserError(f"kernels are timed on the CPU only, not {setup.device}")
    dtype, stamp = DTYPES[setup.precision], versions()
    retime = (busy or {}).get("on_busy", "wait") == "wait"
    stored = store.in_model(setup.machine, setup.device, setup.threads, dtype, stamp) if store is not None else {}
    found: dict = {k: row for k in wanted if (row := stored.get(k)) and not (retime and row["disturbed"])}
    errors: dict = {}
    current: list = [None]
    writable = [store is not None and not store.readonly]

    def on_record(record: dict) -> None:
        if record["type"] == "start":
            current[0] = next(k for k in wanted if k[0] == record["name"] and k[2] == record["batch"]
                              and (record["input_size"] is None or k[1] == record["input_size"]))
        elif record["type"] == "in_model":
            found[current[0]] = row = {k: record[k] for k in ("seconds", "disturbed", "contention")}
            if writable[0] and not is_user_model(current[0][0]):
                try:
                    store.put_in_model(setup.machine, setup.device, setup.threads, dtype, stamp, current[0], row)
                except UserError:  # a full disk or read-only file: the times still serve this call
                    writable[0] = False
        elif record["type"] == "error":
            errors[current[0]] = record["error"]
        if progress and record["type"] in ("in_model", "error"):
            progress(len(found) + len(errors), len(wanted))

    if progress:
        progress(len(found), len(wanted))
    spec = {"passes": passes, "dtype": dtype, "busy": _busy_spec(busy)}
    if all(k in found for k in wanted):
        return found, errors
    with machine_lock():
        while True:  # a model that kills its worker is recorded as failed, and the rest run by another
            left = [k for k in dict.fromkeys(wanted) if k not in found and k not in errors]
            if not left:
                break
            current[0] = None
            job = {**spec, "threads": setup.threads,
                   "in_model": [{"name": n, "input_size": size, "batch": b} for n, size, b in left]}
            died = _run([job], on_record)
            if not died:
                for key in left:
                    if key not in found:
                        errors.setdefault(key, "the in-model timing worker recorded nothing")
                break
            errors[current[0] or left[0]] = died[0][1]
    return found, errors


def stored_kernels(store, setup, libraries: bool = True, left_out: list | None = None) -> dict[str, dict]:
    """{kernel key: {seconds, calls, contention, error}} that ``store`` holds for ``setup``'s machine,
    device, threads and precision, taken as today's dnnbench and libraries take them (`runtime_kernels.stamp`):
    one an earlier version timed otherwise is left out (its key appended to ``left_out`` where it holds a
    time), so that it is timed again. With ``libraries`` False, only the way dnnbench took it is
    compared: for a reader (the report) that times nothing and may run where a runtime is not
    installed, or in other versions, than where `predict` timed it."""
    rows = store.kernels(setup.machine, setup.device, setup.threads, DTYPES[setup.precision])
    kept = {k: r for k, r in rows.items() if runtime_kernels.stamped_today(r.pop("stamp"), k, libraries)}
    if left_out is not None:
        left_out.extend(k for k, r in rows.items() if k not in kept and r["seconds"])
    return kept


class _KernelTable:
    """The kernel times of one setup: those stored on a quiet machine, and the worker's records as they
    come, stored in batches (an interrupted call keeps what it timed)."""

    def __init__(self, store, setup, dtype: str, progress, on_wait, retime: bool = True):
        from ..measure.busy import DISTURBED_SHARE

        self.store, self.setup, self.dtype, self.progress, self.on_wait = store, setup, dtype, progress, on_wait
        stored = stored_kernels(store, setup) if store is not None else {}
        for row in stored.values():
            row["disturbed"] = (row.get("contention") or 0) > DISTURBED_SHARE
        self.timed = {k: r for k, r in stored.items() if not (retime and r["disturbed"])}
        self.already, self.missing = len(self.timed), 0
        self.pending: list[dict] = []
        self.writable = store is not None and not store.readonly
        self.current: str | None = None  # the kernel being timed: a worker that dies took it down

    def flush(self) -> None:
        if self.writable and self.pending:
            try:
                self.store.put_kernels(self.setup.machine, self.setup.device, self.setup.threads, self.dtype,
                                       self.pending)
            except UserError:  # a full disk or read-only file: the times still serve this call
                self.writable = False
        self.pending.clear()

    def keep(self, record: dict) -> None:
        if record.get("implausible"):  # not its time: estimated now, timed again next time
            record = {**record, "error": f"timed at {record['seconds']:.3g} s, beyond what its work can take "
                                         "here: estimated from the other kernels instead", "seconds": None}
        else:
            self.pending.append({**record, "stamp": runtime_kernels.stamp(record["key"])})
        self.timed[record["key"]] = {**{k: record.get(k) for k in ("seconds", "calls", "contention", "error")},
                                     "disturbed": bool(record.get("disturbed"))}
        if len(self.pending) >= STORE_EVERY:
            self.flush()

    def on_record(self, record: dict) -> None:
        kind = record["type"]
        if kind == "start":
            self.current = record["key"]
        elif kind == "wait" and self.on_wait:
            self.on_wait(f"timing kernels: the machine is busy ({record['load']}); waiting up to "
                         f"{record['limit_s']:.0f} s for it to be quiet")
        elif kind == "busy":
            from ..runner.sweep import MachineBusy

            raise MachineBusy(f"timing kernels: {record['load']}: stopped (--on-busy stop); every kernel timed "
                              "before is kept. Close them and run the same command again, or use --on-busy wait")
        elif kind == "futile":
            _FUTILE[0] = record["count"]
        elif kind == "kernel":
            self.keep(record)
            if self.progress:
                self.progress(len(self.timed) - self.already, self.missing)


def predict(store, calibrating: list, entries: list, named: list, setup, batch: int, method: str,
            time_named: bool = True, on_busy: str = "wait", steps=None, say=None) -> dict:
    """`dnnbench predict`: profile the ``calibrating`` models (measured in ``setup`` at ``batch``) and the
    ``entries``; with the kernels, inside and auto methods (on the CPU; auto where the setup's runtime
    has no kernels of its own to time), time the kernels of the calibration and of ``named`` (where
    ``time_named``) under the busy rules, and with inside and auto (on eager), the calibration models'
    kernels inside real passes of them (`in_model`), to correct every kernel's time alone; with the
    runtime method, and auto on its setups, the runtime's own kernels; calibrate and predict (`analysis.predictor.predict_models`), each row with ``busy``
    where its kernels or the calibration's were timed on a busy machine. ``steps(what, unit)`` gives a
    progress context; ``say`` hears of waits. UserError when the calibration cannot be made."""
    from ..analysis import predictor

    steps = steps or (lambda what, unit: contextlib.nullcontext(None))
    wanted = [_key(m, batch) for m in calibrating] + [_key(e, batch) for e in entries]
    with steps("profile", "model") as step:
        got, failed = profiles(wanted, store, progress=step)
    timed = rows = corrected = None
    inside_busy = False
    prefix = runtime_kernels.prefix(setup)
    auto = auto_kernels(setup) if method == predictor.AUTO else None
    timing = method in ("kernels", "inside") or auto == "eager"
    if timing:
        rows = _time_kernels(store, got, calibrating + (named if time_named else []), setup, batch, on_busy,
                             steps, say)
        timed = {k: r["seconds"] for k, r in rows.items() if r["seconds"]}
    # auto weighs inside on eager setups only: it corrects eager kernels to an eager pass (on onnxruntime
    # fp32 it put 4% and 25% of the targets within ±10%, benchmarks/predict_accuracy.py)
    if timing and (method == "inside" or (method == predictor.AUTO and setup.backend == "eager"
                                          and _passes_affordable(store, calibrating, setup, batch, say))):
        corrected, inside_busy = _inside_times(store, got, calibrating, setup, batch, timed, on_busy, steps, say)
    runtime = runtime_rows = None
    if method == "runtime" or auto == "runtime":
        if not prefix:
            raise UserError(f"--method runtime times a runtime's own kernels ({runtime_kernels.described()}): "
                            f"this setup is {setup.backend} {setup.precision} on {setup.device}; use --method auto")
        runtime_rows = _time_kernels(store, got, calibrating + (named if time_named else []), setup, batch, on_busy,
                                     steps, say, runtime=prefix)
        runtime_rows = runtime_kernels.by_eager_key(runtime_rows, prefix)
        runtime = {k: r["seconds"] for k, r in runtime_rows.items() if r["seconds"]}
    try:
        result = predictor.predict_models(calibrating, got, failed, timed, batch, method,
                                          [(e.name, e.input_size) for e in entries], inside=corrected,
                                          runtime=runtime, kernels_of=runtime_kernels.kernels)
    except ValueError as exc:
        raise UserError(f"cannot calibrate on the models measured at batch size {batch}: {exc}") from exc
    chosen = result["calibration"].method
    if chosen == "runtime":
        _mark_busy(result["rows"], calibrating, {k: runtime_kernels.kernels(p)[0] for k, p in got.items()},
                   runtime_rows, batch)
    elif rows is not None and chosen in predictor.TIMED_METHODS:
        _mark_busy(result["rows"], calibrating, {k: p["calls"] for k, p in got.items()}, rows, batch,
                   inside_busy and chosen == "inside")
    return result


def auto_kernels(setup) -> str | None:
    """The kernels auto weighs on ``setup``, where they can be timed (the CPU): ``runtime``, its runtime's
    own where they are timed (`runtime_kernels.prefix`), else ``eager``; None off the CPU. Eager kernels
    sum what a fusing runtime does not run: on onnxruntime and openvino (fp32 and int8, batch 1 and 16)
    they put 4% to 17% of 24 new models within ±10%, the runtime's own 25% to 79%, and auto chose those
    every time (benchmarks/predict_accuracy.py), while timing both made the first `predict --all` at
    batch 16 on openvino take 116 s. Asked for (--method kernels, inside), they are timed all the same."""
    if setup.device != "cpu":
        return None
    return "runtime" if runtime_kernels.prefix(setup) else "eager"


# auto weighs inside where the calibration models' passes not yet stored take at most this long (they
# are stored: a later call takes none); ``--method inside`` takes them whatever they cost
IN_MODEL_BUDGET_S = 60.0
# seconds of passes per second of a model's measured latency: 2 warm and 5 timed passes, each kernel
# recorded and timed (about 1.4x a plain pass on the calibration zoo)
IN_MODEL_COST = 10.0


def _passes_affordable(store, calibrating: list, setup, batch: int, say) -> bool:
    """Whether auto can afford the in-model passes of the ``calibrating`` models that ``store`` lacks."""
    stored = store.in_model(setup.machine, setup.device, setup.threads, DTYPES[setup.precision], versions()) \
        if store is not None else {}
    cost = IN_MODEL_COST * sum(float(m.ok[batch]["latency_median_s"]) for m in calibrating
                               if _key(m, batch) not in stored)
    if cost > IN_MODEL_BUDGET_S:
        if say:
            say(f"auto does not weigh inside: the passes of the calibration models would take about {cost:.0f} s; "
                "predict once with --method inside to take them (they are kept)")
        return False
    return True


def _time_kernels(store, got: dict, models: list, setup, batch: int, on_busy: str, steps, say,
                  runtime: str | None = None) -> dict:
    """`kernel_times` of every replayable kernel of ``models``' profiles; with ``runtime`` (a prefix of
    `backends.runtime_kernels`), of those the setup's runtime runs as one, timed in it (keys prefixed)."""
    from ..measure.profile import replayable

    profiled = [got[k] for k in (_key(m, batch) for m in models) if k in got]
    keys = [k for p in profiled for k in p["calls"] if replayable(k)]
    work = {k: [spec[1], spec[3]] for p in profiled for k, spec in p["specs"].items()}
    if runtime:  # the runtime's kernels: its layers with their epilogues
        found = [runtime_kernels.kernels(p) for p in profiled]
        keys = [runtime_kernels.runtime_key(k, runtime) for calls, _ in found for k in calls]
        work = {runtime_kernels.runtime_key(k, runtime): [s.macs, s.bytes] for _, specs in found
                for k, s in specs.items()}
    with steps(f"time {setup.backend}'s kernels" if runtime else "time kernels", "kernel") as step:
        return kernel_times(keys, setup, store, progress=step, work=work, busy={"on_busy": on_busy}, on_wait=say)


def _inside_times(store, got: dict, calibrating: list, setup, batch: int, timed: dict, on_busy: str, steps,
                  say) -> tuple[dict, bool]:
    """(every timed kernel's time alone corrected to its time inside a model, by fits on the calibration
    models' kernels timed inside real passes of them; whether those passes were disturbed)."""
    from ..analysis import predictor

    keys = [k for k in (_key(m, batch) for m in calibrating) if k in got]
    with steps("time kernels inside the calibration models", "model") as step:
        found, lost = in_model(keys, setup, store, busy={"on_busy": on_busy}, progress=step)
    for (name, _, _), error in lost.items():
        if say:
            say(f"{name} could not be run to time its kernels inside it ({error}); the correction rests on "
                f"the other {len(found)} calibration models")
    runs = [(got[k]["calls"], row["seconds"]) for k, row in found.items()]
    specs = predictor.specs_of(got.values())
    corrected = predictor.inside_models(timed, specs, predictor.in_model_fits(timed, runs, specs))
    return corrected, any(row["disturbed"] for row in found.values())


BUSY_SHARE = 0.02  # of a prediction's kernel time, timed while others disturbed the machine: it says so


def _mark_busy(rows: list[dict], calibrating: list, calls: dict, kernels: dict, batch: int,
               inside_busy: bool = False) -> None:
    """Each prediction's ``busy_share`` (its own kernels' time taken on a busy machine) and ``busy``: its
    kernels, or the calibration's, rest more than BUSY_SHARE on such times, or (``inside_busy``) the
    correction to in-model times rests on passes others disturbed. ``calls``: {(name, input size,
    batch): the kernels summed, {key: calls}}; ``kernels``: their `kernel_times` rows."""
    shares = [busy_share(calls[k], kernels) for m in calibrating if (k := (m.model, m.input_size, batch)) in calls]
    calibration = max(shares, default=0.0)
    for row in rows:
        found = calls.get((row["model"], row["input_size"], batch))
        if found is None or "problem" in row:
            continue
        row["busy_share"] = busy_share(found, kernels)
        row["busy"] = row["busy_share"] > BUSY_SHARE or calibration > BUSY_SHARE or inside_busy


def _key(m, batch: int):
    """(name, input size, batch) of a measured model or a registry entry."""
    return (getattr(m, "model", None) or m.name, m.input_size, batch)


def busy_share(calls: dict, rows: dict) -> float:
    """The share of a profile's timed kernel time (``calls`` by key) that was timed while other
    processes disturbed the machine (``rows``: `kernel_times`'s answer)."""
    total = busy = 0.0
    for key, n in calls.items():
        row = rows.get(key)
        if row and row.get("seconds"):
            total += n * row["seconds"]
            busy += n * row["seconds"] if row.get("disturbed") else 0.0
    return busy / total if total else 0.0
