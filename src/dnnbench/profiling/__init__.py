"""Profiles and kernel tables for `dnnbench predict`: run the profiling workers, keep what they find.

`profiles()` gives each model's kernels at a batch size: from the database where the same library
versions recorded them, else recorded by worker processes (two at a time: building models on the
meta device is single-threaded Python) and stored as each arrives. `kernel_times()` times the kernels
no run has timed on this machine, device, thread count and precision, in one worker holding the
measuring lock (as a sweep does: two timings never share the machine), and stores them in batches, so
an interrupted call keeps what it timed.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
from importlib import metadata

from ..errors import UserError
from ..runner.sweep import describe_exit, log_tail
from .worker import PROFILE_FD_ENV

PROFILE_FORMAT = 1  # raise when the recorder's output changes: stored profiles are then recorded again
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "int8": "float32"}
PARALLEL = 2
STORE_EVERY = 50  # kernel times stored per transaction


def versions() -> str:
    """The libraries a profile depends on, as one string (a profile of other versions is recorded again)."""
    found = [f"format={PROFILE_FORMAT}"]
    for package in ("torch", "torchvision", "timm", "pretrainedmodels"):
        try:
            found.append(f"{package}={metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pass
    return ";".join(found)


def _worker(job: dict, records: queue.Queue, index: int = 0) -> None:
    """Run one profiling worker on ``job``, putting each record on ``records`` (with ``job``: ``index``),
    then an ``end`` record with the error that ended the worker, or None: always, whatever fails here."""
    error = None
    try:
        error = _work(job, records, index)
    except BaseException as exc:  # noqa: BLE001 - the waiting thread must hear of it, whatever it is
        error = f"the profiling worker could not run: {type(exc).__name__}: {exc}"
    finally:
        records.put({"kind": "end", "error": error, "job": index})


def _work(job: dict, records: queue.Queue, index: int) -> str | None:
    read_fd, write_fd = os.pipe()
    log = tempfile.TemporaryFile()
    try:
        proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "dnnbench.profiling.worker"],
                                stdin=subprocess.PIPE, stdout=log, stderr=log, pass_fds=(write_fd,), text=True,
                                env={**os.environ, **_threads(job), PROFILE_FD_ENV: str(write_fd)},
                                start_new_session=True)
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    try:
        proc.stdin.write(json.dumps(job))
        proc.stdin.close()
        with os.fdopen(read_fd) as lines:
            for line in lines:
                records.put({**json.loads(line), "job": index})
        rc = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if rc == 0:
        return None
    tail = log_tail(log)  # as the sweep says it: the fatal line and faulthandler's innermost frame
    return f"the profiling worker died ({describe_exit(rc)}){': ' + tail if tail else ''}"


def _threads(job: dict) -> dict:
    n = str(job.get("threads", 1))
    return {"OMP_NUM_THREADS": n, "MKL_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n}


def _run(jobs: list[dict], on_record) -> list[tuple[int, str]]:
    """Run the ``jobs`` in parallel workers, calling ``on_record`` for each record in this thread;
    returns (job index, error) of the workers that died."""
    records: queue.Queue = queue.Queue()
    threads = [threading.Thread(target=_worker, args=(job, records, i), daemon=True) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    errors, ended = [], 0
    while ended < len(threads):
        record = records.get()
        if record["kind"] == "end":
            ended += 1
            if record["error"]:
                errors.append((record["job"], record["error"]))
        else:
            on_record(record)
    return errors


def profiles(wanted: list[tuple[str, int, int]], store=None, progress=None) -> tuple[dict, dict]:
    """({(model, input size, batch): profile dict}, {(model, input size, batch): error}) for ``wanted``
    (registry names or model files, their input sizes and batch sizes): from ``store`` (a `Store`, may be
    None or read-only) where recorded with these versions, else recorded now and stored there.
    ``progress(done, total)`` after each model."""
    from ..zoo.registry import is_user_model

    stamp = versions()
    found: dict = {}
    if store is not None:
        cached = store.profiles(stamp)
        found = {k: cached[k] for k in wanted if k in cached and not is_user_model(k[0])}
    missing = [k for k in dict.fromkeys(wanted) if k not in found]
    errors: dict = {}
    if progress:
        progress(len(found), len(found) + len(missing))
    if not missing:
        return found, errors
    writable = [store is not None and not store.readonly]
    current: dict[int, tuple] = {}  # job index -> the model it is profiling

    def on_record(record: dict) -> None:
        if record["kind"] == "start":
            current[record["job"]] = next(k for k in missing if k[0] == record["name"] and k[2] == record["batch"]
                                          and (record["input_size"] is None or k[1] == record["input_size"]))
            return
        key = current[record["job"]]
        if record["kind"] == "profile":
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


def kernel_times(keys: list[str], setup, store=None, progress=None) -> dict[str, dict]:
    """{kernel key: {seconds, calls, contention, error}} on ``setup``'s machine, device, threads and
    precision: those ``store`` holds, and the rest timed now by one worker holding the measuring lock."""
    from ..runner.lock import machine_lock

    dtype = DTYPES[setup.precision]
    timed = store.kernels(setup.machine, setup.device, setup.threads, dtype) if store is not None else {}
    missing = [k for k in dict.fromkeys(keys) if k not in timed]
    if progress:
        progress(0, len(missing))
    if not missing:
        return timed
    if setup.device != "cpu":
        raise UserError(f"kernels are timed on the CPU only, not {setup.device}: predict with --method features "
                        "or ops on this setup")
    pending: list[dict] = []
    writable = [store is not None and not store.readonly]
    current: list = [None]
    already = len(timed)

    def flush() -> None:
        if writable[0] and pending:
            try:
                store.put_kernels(setup.machine, setup.device, setup.threads, dtype, pending)
            except UserError:
                writable[0] = False
        pending.clear()

    def keep(record: dict) -> None:
        timed[record["key"]] = {k: record.get(k) for k in ("seconds", "calls", "contention", "error")}
        pending.append(record)
        if len(pending) >= STORE_EVERY:
            flush()

    def on_record(record: dict) -> None:
        if record["kind"] == "start":
            current[0] = record["key"]
            return
        keep(record)
        if progress:
            progress(len(timed) - already, len(missing))

    with machine_lock():
        try:
            while True:  # a kernel that kills its worker is recorded as failed, and the rest timed by another
                left = [k for k in missing if k not in timed]
                if not left:
                    break
                current[0] = None
                died = _run([{"time": left, "threads": setup.threads, "dtype": dtype}], on_record)
                if not died:
                    break
                keep({"key": current[0] or left[0], "seconds": None, "calls": 0, "error": died[0][1]})
        finally:
            flush()
    return timed
