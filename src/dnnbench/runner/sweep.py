"""The sweep: runs one worker process per model, watches it, and commits every record it sends the
moment it arrives. No model code runs in this process: building a model, counting its operations
and running it all happen in workers.

The watchdog, per worker (in a process group of its own, ended whole):
- resident set above ``max_memory`` (polled every 20 ms, and checked again from the worker's own
  peak): the worker is killed, the batch size is recorded ``oom`` and the larger ones are skipped
  as ``oom``;
- a start-up stage (imports, build, load, first pass) or a batch size running past its limit
  (``RunConfig.cell_limit_s``: ``--timeout``, or by default one that grows with the model's pass
  time): killed, ``timeout``, larger ones skipped as ``timeout``;
- a worker that dies by itself (abort, segfault, exit): the batch size is recorded ``crashed`` with
  the last lines it printed, and a fresh worker measures the remaining batch sizes; a SIGKILL that
  the sweep did not send is ``oom`` only if the kernel counted an out-of-memory kill (or the worker
  was at the memory cap), else ``killed``.
Ctrl-C kills the worker and returns; every cell measured so far is already committed.

The models of each round are visited in a random order (recorded with the run): drift in the
machine's speed then hits every model alike, instead of always the last ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ..errors import UserError
from ..measure import memory
from ..setup import fingerprint, machine_id
from ..store import Store, StoreWriteError
from ..units import format_bytes
from .forkserver import ForkServer, Unavailable
from .lock import machine_lock
from .plan import IMPORT_LIMIT_S, RESULT_FD_ENV, ModelJob, RunConfig, above, keys, plan

Event = Callable[[str, dict], None]

_STAGES = {  # what a worker is doing before its first cell, as the errors say it
    "imports": "the imports of torch and dnnbench", "build": "building the model",
    "static": "building the model to count its operations", "load": "loading its weights",
    "prepare": "preparing the backend (export, compile, quantize)", "first pass": "the first forward pass"}
PREPARE_LIMIT_S = 900.0  # compiling or quantizing a large model on a small machine: minutes, not a hang
_RETRY_HINT = "allow more with --timeout S, then run the same command with --retry-failed"


class MachineBusy(UserError):
    """The machine was busy and ``--on-busy stop`` was asked for."""

    def __init__(self, message: str):
        super().__init__(message, status=3)


@dataclass
class _Outcome:
    """How a worker ended: the batch sizes it recorded; the one that failed (None: before any, so the
    failure is every remaining batch size's) with its status and message; its cold-start figures."""

    done: list[int]
    failed: int | None
    status: str | None
    error: str | None
    cold: dict


@dataclass
class SweepResult:
    run_id: int
    measured: list[dict] = field(default_factory=list)
    already: int = 0
    interrupted: bool = False
    order_seed: int | None = None


class Sweep:
    def __init__(self, store: Store, config: RunConfig, argv: list[str] | None = None,
                 on_event: Event | None = None, environment: dict | None = None,
                 fork_server: bool | ForkServer = True):
        self.store = store
        self.config = config
        self.argv = argv or []
        self.on_event = on_event or (lambda kind, data: None)
        self.environment = environment
        self._round = 1
        self._futile = 0  # waits for a quiet machine in a row that ended with it still busy
        self._static_done: set[str] = set()
        self._interrupted = lambda: False
        # start workers from a fork server (False: each a fresh process; a ForkServer: that one, started early)
        self._fork = bool(fork_server)
        self._server: ForkServer | None = fork_server if isinstance(fork_server, ForkServer) else None

    # ------------------------------------------------------------------------------------------

    def run(self, entries) -> SweepResult:
        config = self.config = self._on_this_machine(self.config)
        if config.retry_failed:
            for entry in entries:
                for setup in config.setups:
                    self.store.delete_failed(entry.name, entry.input_size, setup)
        counts = self.store.round_counts(config.rounds)
        wanted = keys(entries, config)
        total = sum(config.rounds - min(counts.get(k, 0), config.rounds) for k in wanted)
        already = sum(1 for k in wanted if counts.get(k, 0) >= config.rounds)
        pending = plan(entries, config, counts, config.rounds)
        todo: dict[tuple, int] = {}  # (model, batch size): cell rounds still to measure, over the setups
        for k in wanted:
            todo[(k[0], k[-1])] = todo.get((k[0], k[-1]), 0) + config.rounds - min(counts.get(k, 0), config.rounds)
        self.on_event("plan", {"cells": total, "already": already, "models": len(pending), "rounds": config.rounds,
                               "machine": config.setups[0].machine,
                               "setups": [s.runtime() for s in config.setups],
                               "macs": self._macs(entries), "todo": {k: n for k, n in todo.items() if n}})
        if not pending:
            run_id = self.store.start_run(self.argv, config.to_dict(), dict(self.environment or {}))
            self.store.finish_run(run_id, "complete")
            return SweepResult(run_id, already=already)
        with _ctrl_c_as_a_flag() as interrupted:
            self._interrupted = interrupted
            with machine_lock(lambda holder: self.on_event("note", {
                    "text": f"another dnnbench sweep is measuring on this machine ({holder}); waiting for it to "
                            "finish, then measuring only the cells still missing"}), interrupted):
                try:
                    self._fork_server()  # imports while the sweep checks the machine and plans
                    return self._measure(entries, already)
                finally:
                    self.close()

    def close(self) -> None:
        """End the fork server (it also ends with this process)."""
        if self._server is not None:
            self._server.close()
            self._server = None

    def _measure(self, entries, already: int) -> SweepResult:
        from ..measure import busy
        from ..measure.energy import idle_power, open_meter

        config = self.config
        load, procs = busy.busiest_others(1.0)
        warning = busy.summary(load, procs, busy.cores_needed(config.device, config.threads))
        if config.device.startswith("cuda"):
            gpu = busy.gpu_others(int(config.device.split(":")[1]))
            if gpu and gpu[0]:
                warning = (warning + "; " if warning else "") + (
                    f"{gpu[0]} other process(es) use {config.device} ({format_bytes(gpu[1])})")
        if warning:
            if config.on_busy == "stop":
                raise MachineBusy(f"{warning}: nothing measured (--on-busy stop); close them and run again, "
                                  "or use --on-busy wait")
            self.on_event("busy", {"text": warning, "on_busy": config.on_busy})
        environment = dict(self.environment or self._environment())
        environment["load_at_start"] = load.to_dict() if load else None
        meter, reason = open_meter(config.device)
        if meter is None:
            environment["energy"] = {"source": None, "reason": reason}
            self.on_event("note", {"text": f"energy not measured: {reason}"})
        else:
            environment["energy"] = {"source": meter.source, "scope": meter.scope, "idle_power_w": idle_power(meter)}
        seed = random.SystemRandom().randrange(2**31)
        run_id = self.store.start_run(self.argv, {**config.to_dict(), "order_seed": seed}, environment)
        result = SweepResult(run_id, already=already, order_seed=seed)
        self._idle_w = environment["energy"].get("idle_power_w")
        try:
            # round by round: the rounds of one cell are minutes apart, in fresh processes; within a
            # round the models in a random order, so that drift in the machine's speed hits all alike
            for round_no in range(1, config.rounds + 1):
                jobs = round_order(plan(entries, config, self.store.round_counts(config.rounds), round_no), seed,
                                   round_no)
                for job in jobs:
                    if self._interrupted():
                        raise KeyboardInterrupt
                    # another sweep on this file may have measured some meanwhile
                    fresh = self.store.round_counts(config.rounds)
                    missing = tuple(b for b in job.batch_sizes if fresh.get(job.key(b), 0) < round_no)
                    if len(missing) < len(job.batch_sizes):
                        self.on_event("skip", {"model": job.model, "cells": len(job.batch_sizes) - len(missing)})
                    if missing:
                        self._run_job(job.but(missing), result, round_no)
        except KeyboardInterrupt:
            result.interrupted = True
            self.store.finish_run(run_id, "interrupted")
            raise
        except MachineBusy:
            self.store.finish_run(run_id, "stopped: machine busy")
            raise
        except StoreWriteError:
            try:
                self.store.finish_run(run_id, "stopped: database not writable")
            except StoreWriteError:
                pass
            raise
        self.store.finish_run(run_id, "complete")
        return result

    def _on_this_machine(self, config: RunConfig) -> RunConfig:
        """``config`` with its machine named (``--machine``, else this machine's fingerprint id), and
        the name recorded in the store: a name that already names another machine there is refused."""
        from ..measure.device import machine_environment

        env = machine_environment(config.device)
        machine = config.setups[0].machine or machine_id(env)
        self.store.register_machine(machine, fingerprint(env))
        return config.on(machine)

    def _macs(self, entries) -> dict:
        """The operations of each model already known to the database (for the progress ETA)."""
        known = {(m["model"], m["input_size"]): m.get("macs") for m in self.store.models()}
        return {e.name: known.get((e.name, e.input_size)) for e in entries}

    def _environment(self) -> dict:
        """The machine and software, and the peak FLOP/s of each precision of the run, measured by a
        worker: the sweep runs no operator (and a worker forked from the server starts in milliseconds)."""
        from ..measure.device import machine_environment

        config = self.config
        spec = {"probe": {"device": config.device, "threads": config.threads,
                          "precisions": sorted({s.precision for s in config.setups})}}
        log = tempfile.TemporaryFile()
        read_fd, write_fd = os.pipe()
        proc = self._start_worker(self._worker_env(tempfile.gettempdir()), log, write_fd, spec)
        os.close(write_fd)
        found, buffer = None, b""
        deadline = time.monotonic() + IMPORT_LIMIT_S + 300
        try:
            while found is None and time.monotonic() < deadline:
                ready, _, _ = select.select([read_fd], [], [], 0.5)
                chunk = os.read(read_fd, 1 << 20) if ready else b""
                if ready and not chunk:
                    break
                buffer += chunk
                for line in buffer.split(b"\n")[:-1]:
                    message = json.loads(line)
                    if message.get("type") == "environment":
                        found = message
                buffer = buffer.rsplit(b"\n", 1)[-1]
        finally:
            _end_group(proc)
            os.close(read_fd)
        if found is None:
            why = log_tail(log) or "it printed nothing"
            self.on_event("note", {"text": f"the machine's software and peak FLOP/s could not be read ({why}): the "
                                           "efficiency figure will be missing"})
            return {**machine_environment(config.device), "device": config.device, "threads": config.threads}
        found.pop("type")
        return found

    # ---- starting workers ----------------------------------------------------------------------

    def _worker_env(self, scratch: str) -> dict:
        return worker_environment(self.config.threads, scratch)

    def _fork_server(self) -> ForkServer | None:
        """The running fork server, started on first use; None where it is off or could not start."""
        if self._fork and self._server is None:
            try:
                self._server = ForkServer(worker_environment(self.config.threads))
            except OSError as exc:
                self._no_fork_server(str(exc))
        return self._server

    def _no_fork_server(self, why: str) -> None:
        self.close()
        self._fork = False
        self.on_event("note", {"text": f"workers start as fresh processes, each importing torch itself: the fork "
                                       f"server is unavailable ({why})"})

    def _start_worker(self, env: dict, log, result_fd: int, spec: dict, fork: bool = True):
        """A worker for ``spec``: forked from the fork server (ready in milliseconds), else a fresh
        process (which imports the libraries itself); either way in a process group of its own. A
        user's model file imports what it likes, maybe not torchvision: its workers start fresh
        (``fork`` False), or the server's torchvision would count in their memory."""
        server = self._fork_server() if fork else None
        if server is not None:
            stdin_r, stdin_w = os.pipe()
            try:
                proc = server.launch(env, stdin_r, log.fileno(), result_fd)
            except Unavailable as exc:
                os.close(stdin_w)
                self._no_fork_server(str(exc))
            else:
                _write_spec(stdin_w, spec)
                return proc
            finally:
                os.close(stdin_r)
        proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "dnnbench.runner.worker"],
                                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, pass_fds=(result_fd,),
                                env={**env, RESULT_FD_ENV: str(result_fd)}, **_OWN_GROUP)
        try:
            proc.stdin.write(json.dumps(spec).encode())
            proc.stdin.close()
        except BrokenPipeError:  # it died at once: its exit says why
            pass
        return proc

    # ------------------------------------------------------------------------------------------

    def _record(self, job: ModelJob, batch: int, fields: dict, result: SweepResult) -> None:
        row = {"model": job.model, "input_size": job.input_size, **job.setup.to_dict(), "batch_size": batch,
               "idle_power_w": self._idle_w, "round": self._round, **fields}
        stored = self.store.put_cell(result.run_id, row, rounds=job.config.rounds)
        row["stored"] = stored
        result.measured.append(row)
        self.on_event("cell", row)

    def _run_job(self, job: ModelJob, result: SweepResult, round_no: int = 1) -> None:
        self._round = round_no
        remaining = list(job.batch_sizes)
        while remaining:
            out = self._run_worker(job.but(remaining), result)
            remaining = [b for b in remaining if b not in out.done]
            if out.status is None:
                if not remaining:
                    return
                out = _Outcome(out.done, None, "crashed", "the worker exited before measuring this batch size", out.cold)
            if out.failed is None:  # building or loading failed: the same outcome for every batch size
                for b in remaining:
                    self._record(job, b, {**out.cold, "status": out.status, "error": out.error}, result)
                return
            if out.failed in remaining:
                self._record(job, out.failed, {**out.cold, "status": out.status, "error": out.error}, result)
                remaining.remove(out.failed)
            if out.status in ("crashed", "killed"):  # maybe this batch size only: a fresh worker tries the rest
                continue
            for b in remaining:  # oom or timeout: larger batches need more memory and more time
                why = f"skipped: batch size {out.failed} already ended in {out.status} ({out.error})"
                self._record(job, b, {**out.cold, "status": out.status, "error": why}, result)
            return

    def _busy_spec(self) -> dict:
        # the count of waits in vain goes from worker to worker: a load that lasts is waited for twice
        # in the whole sweep, then measured (and flagged), until a cell finds the machine quiet again
        return {**self.config.busy_spec(), "futile": self._futile, "sweep": os.getpid()}

    def _count_waits(self, cell: dict) -> None:
        if cell.get("status") != "ok" or cell.get("disturbed") is None:
            return
        if not cell["disturbed"]:
            self._futile = 0
        elif (cell.get("busy_wait_s") or 0) > 0:
            self._futile += 1

    def _run_worker(self, job: ModelJob, result: SweepResult) -> _Outcome:
        """Run one worker to its end, recording each cell it sends. Its temporary files (the weights
        file, a backend's exported or compiled model: hundreds of MB) go to a folder of its own, removed
        however it ends, a kill included."""
        scratch = tempfile.mkdtemp(prefix="dnnbench-worker-")
        try:
            return self._watch_worker(job, result, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _watch_worker(self, job: ModelJob, result: SweepResult, scratch: str) -> _Outcome:
        config = job.config
        read_fd, write_fd = os.pipe()
        log = tempfile.TemporaryFile()
        self.on_event("worker", {"model": job.model, "batch_sizes": list(job.batch_sizes), "round": self._round})
        oom_before = memory.oom_kills()
        spec = job.spec(static=job.model not in self._static_done, busy=self._busy_spec())
        from ..zoo.registry import is_user_model

        proc = self._start_worker(self._worker_env(scratch), log, write_fd, spec, fork=not is_user_model(job.model))
        os.close(write_fd)

        watch = _Watch(config, time.monotonic())
        done: list[int] = []
        cold: dict = {}
        killed: tuple[str, str] | None = None  # (status, message) when the sweep killed the worker
        buffer = b""
        peak_seen = 0
        try:
            while True:
                exited = proc.poll() is not None
                ready, _, _ = select.select([read_fd], [], [], 0 if exited else 0.02)
                chunk = os.read(read_fd, 1 << 20) if ready else b""
                if not chunk and (exited or ready):
                    break  # end of the pipe, or the worker is gone and said all it will say
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    message = json.loads(line)
                    kind = message.pop("type")
                    now = time.monotonic()
                    if kind == "stage":
                        watch.stage(message["stage"], now)
                    elif kind == "static":
                        self.store.put_model(message)
                        self._static_done.add(job.model)
                        self.on_event("static", {"model": job.model, "macs": message.get("macs")})
                    elif kind == "static_failed":
                        self._static_done.add(job.model)
                        self.on_event("note", {"text": f"{job.model}: operations not counted: {message['error']}"})
                    elif kind == "cold":
                        cold = message
                        watch.stage(None, now)
                    elif kind == "start":
                        watch.start(message["batch_size"], now)
                        self.on_event("start", {"model": job.model, "batch_size": message["batch_size"]})
                    elif kind == "pass":
                        watch.passed(message["batch_size"], message["seconds"])
                    elif kind == "wait":
                        self.on_event("wait", {"model": job.model, **message})
                    elif kind == "busy":
                        raise MachineBusy(f"{job.model} batch {message['batch_size']}: {message['load']}: "
                                          "stopped (--on-busy stop); every cell measured before is kept. Close "
                                          "them and run the same command again, or use --on-busy wait")
                    elif kind == "cell":
                        batch = message.pop("batch_size")
                        self._count_waits(message)
                        self._record(job, batch, {**cold, **message}, result)
                        done.append(batch)
                        watch.finished()
                        if message["status"] == "oom":  # the worker stops; larger batches are skipped
                            proc.wait()
                            return _Outcome(done, batch, "oom", message["error"], cold)
                    elif kind == "fatal":
                        status = "oom" if message.get("oom") else "error"
                        proc.wait()
                        what = _STAGES.get(message.get("stage"), "building or loading the model")
                        return _Outcome(done, None, status, f"{what} failed: {message['error']}", cold)
                if self._interrupted():
                    raise KeyboardInterrupt
                rss = memory.rss_bytes(proc.pid) or 0
                peak_seen = max(peak_seen, rss)
                if config.max_memory and rss > config.max_memory:
                    killed = ("oom", f"resident set reached {above(rss, config.max_memory)}; the worker was stopped")
                else:
                    killed = watch.overdue(time.monotonic())
                if killed:
                    break
        except KeyboardInterrupt:
            _end_group(proc)
            raise
        finally:
            _end_group(proc)
            os.close(read_fd)
        rc = proc.wait()
        current = watch.current
        if killed:
            return _Outcome(done, current, killed[0], killed[1], cold)
        if rc == 0 and current is None and watch.stage_name is None:
            return _Outcome(done, None, None, None, cold)
        printed = log_tail(log)
        where = f"during batch size {current}" if current is not None else \
            f"during {_STAGES.get(watch.stage_name, 'its start')}"
        if rc in (-signal.SIGKILL, -signal.SIGTERM, -signal.SIGHUP):
            status, what = _killed(rc, oom_before, peak_seen, config.max_memory)
        elif rc == 0:
            status, what = "crashed", f"the worker exited (status 0) {where}: the model's code ended the process"
        else:
            status, what = "crashed", f"the worker died ({describe_exit(rc)}) {where}"
        error = f"{what}; it printed: {printed}" if printed else what
        return _Outcome(done, current, status, error, cold)  # current None: died before its first cell


def worker_environment(threads: int, scratch: str | None = None) -> dict:
    """A worker's environment: this process's, with the thread variables of the run's thread count
    and TMPDIR ``scratch`` (the worker's own folder) where given."""
    n = str(threads)
    env = dict(os.environ, OMP_NUM_THREADS=n, MKL_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n)
    if scratch is not None:
        env["TMPDIR"] = scratch
    return env


def round_order(jobs: list, seed: int, round_no: int) -> list:
    """The jobs of round ``round_no`` in the random order that the run's ``seed`` fixes (a run can be
    replayed in the order it was measured)."""
    jobs = list(jobs)
    random.Random(seed * 1000 + round_no).shuffle(jobs)
    return jobs


@contextlib.contextmanager
def _ctrl_c_as_a_flag():
    """While the sweep runs, Ctrl-C sets a flag that the sweep checks every 20 ms and between cells,
    instead of raising wherever the interpreter happens to be: a KeyboardInterrupt raised inside a
    callback or a destructor is printed and swallowed, and the sweep would go on."""
    flag = [False]
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def handler(signum, frame):
        flag[0] = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: flag[0]
    finally:
        signal.signal(signal.SIGINT, previous)


# The worker gets a process group of its own (ended whole), but stays in the sweep's session: with
# the kernel's autogroup scheduling, a new session is a new scheduling group, which shares the CPUs
# with other sessions' groups rather than thread by thread; against one busy process elsewhere, a
# 2-thread MobileNet-v2 then ran 27x slower than the same process in the user's own session.
_OWN_GROUP = {"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}


class _Watch:
    """The limit the worker is held to now: per start-up stage, then per batch size (scaled to the
    time of one pass once the worker reports it)."""

    def __init__(self, config: RunConfig, now: float):
        self.config = config
        self.stage_name: str | None = "imports"
        self.since = now
        self.limit = max(IMPORT_LIMIT_S, config.cell_timeout_s)
        self.current: int | None = None
        self.passes: dict[int, float] = {}  # batch size -> seconds of one pass

    def stage(self, name: str | None, now: float) -> None:
        self.stage_name, self.since = name, now
        # imports and a backend's preparation are library work that --timeout (meant for the model) does not cut
        floor = {"imports": IMPORT_LIMIT_S, "prepare": PREPARE_LIMIT_S}.get(name, 0.0)
        self.limit = max(floor, self.config.cell_timeout_s)

    def start(self, batch: int, now: float) -> None:
        self.current, self.since = batch, now
        self.limit = self.config.cell_limit_s(self._estimate(batch))

    def passed(self, batch: int, seconds: float) -> None:
        self.passes[batch] = seconds
        self.limit = self.config.cell_limit_s(seconds)

    def finished(self) -> None:
        self.current = None

    def _estimate(self, batch: int) -> float | None:
        """One pass at ``batch``, scaled from the largest batch timed so far (time grows at most
        linearly with the batch on a saturated device)."""
        if not self.passes:
            return None
        b0 = max(self.passes)
        return self.passes[b0] * max(1.0, batch / b0)

    def overdue(self, now: float) -> tuple[str, str] | None:
        if now - self.since <= self.limit:
            return None
        if self.current is not None:
            return ("timeout", f"batch size {self.current} ran longer than its limit of {self.limit:,.0f} s; the "
                               f"worker was stopped ({_RETRY_HINT})")
        if self.stage_name is not None:
            return ("timeout", f"{_STAGES.get(self.stage_name, self.stage_name)} took longer than "
                               f"{self.limit:,.0f} s; the worker was stopped ({_RETRY_HINT})")
        return None


def _killed(rc: int, oom_before: int | None, peak_seen: int, max_memory: int | None) -> tuple[str, str]:
    """``oom`` only with evidence of memory exhaustion (the kernel counted an OOM kill since the
    worker started, or it was at the cap); otherwise someone else ended it: ``killed``."""
    name = describe_exit(rc)
    after = memory.oom_kills()
    counted = oom_before is not None and after is not None and after > oom_before
    at_cap = bool(max_memory) and peak_seen >= 0.9 * max_memory
    if rc == -signal.SIGKILL and (counted or at_cap):
        return "oom", (f"the worker was killed by the kernel's out-of-memory killer at {format_bytes(peak_seen)} "
                       "resident")
    return "killed", (f"the worker was killed from outside dnnbench ({name}, at {format_bytes(peak_seen)} resident; "
                      "the kernel recorded no out-of-memory kill); measure it again with --retry-failed")


def _write_spec(fd: int, spec: dict) -> None:
    """The job on the worker's stdin (a worker that died at once leaves a broken pipe: its exit says why)."""
    data = json.dumps(spec).encode()
    try:
        while data:
            data = data[os.write(fd, data):]
    except BrokenPipeError:
        pass
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def _end_group(proc) -> None:
    """Kill the worker's whole process group: a child it forked must not outlive it (it would hold
    the result pipe open, or keep using the machine)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def describe_exit(rc: int) -> str:
    """How a process ended, in words: ``signal SIGKILL`` or ``exit status 1``."""
    if rc < 0:
        try:
            return f"signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"signal {-rc}"
    return f"exit status {rc}"


def log_tail(log, limit: int = 600) -> str:
    """What the worker printed, in one line: its last lines before a fatal error, the error, and the
    innermost frame of faulthandler's traceback (its list of extension modules is left out)."""
    log.seek(0)
    lines = [line.strip() for line in log.read().decode(errors="replace").splitlines() if line.strip()]
    fatal = next((i for i, line in enumerate(lines) if line.startswith("Fatal Python error")), None)
    if fatal is None:
        return " | ".join(lines[-8:])[-limit:]
    before = lines[max(0, fatal - 3):fatal]
    frame = next((line for line in lines[fatal + 1:] if line.startswith("File ")), None)
    keep = [*before, lines[fatal]] + ([f"at {frame}"] if frame else [])
    return " | ".join(keep)[-limit:]
