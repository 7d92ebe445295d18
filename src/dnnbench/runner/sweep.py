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
import os
import random
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ..errors import UserError
from ..launch import IMPORT_LIMIT_S, Job, Launcher, describe_exit, log_tail  # noqa: F401 - describe_exit, log_tail: re-exported
from ..measure import memory
from ..measure.latency import Drift
from ..setup import CELL_KEY, fingerprint, machine_id
from ..store import Store, StoreWriteError
from ..store.usual import Against
from ..units import format_bytes
from ..worker import LATENCY, PROBE, RESTART
from .lock import machine_lock
from .plan import ModelJob, RunConfig, above, keys, plan

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
    files: list[str] | None = None  # the files a deployment of the setup ships, while the worker's folder lasts


@dataclass
class SweepResult:
    run_id: int
    measured: list[dict] = field(default_factory=list)
    already: int = 0
    interrupted: bool = False
    order_seed: int | None = None
    drift: Drift | None = None  # how far the run's cells moved between rounds (None under two rounds)
    usual: Against | None = None  # the run's cells against this machine's usual times (None: not checked)


class Sweep:
    def __init__(self, store: Store, config: RunConfig, argv: list[str] | None = None,
                 on_event: Event | None = None, environment: dict | None = None,
                 launcher: Launcher | None = None, fork: bool = True, idle_power_w: float | None = None):
        """``launcher``: the one that starts the workers (one started early, so that its server imports
        torch while the caller plans); by default a launcher of its own, preloaded unless ``fork`` is
        False (then every worker is a fresh interpreter)."""
        self.store = store
        self.config = config
        self.argv = argv or []
        self.on_event = on_event or (lambda kind, data: None)
        self.environment = environment
        self._round = 1
        self._futile = 0  # waits for a quiet machine in a row that ended with it still busy
        self._static_done: set[str] = set()
        self._interrupted = lambda: False
        self._own_launcher = launcher is None
        self.launcher = launcher or Launcher(config.threads, preload=fork, on_note=self._note)
        self.launcher.on_note = self._note
        self._idle_w = idle_power_w
        self._said_lasting = False
        self._preloads = ["models"]  # the servers the sweep's workers fork from (`_preload`)

    def _note(self, text: str) -> None:
        self.on_event("note", {"text": text})

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
                    self._preloads = sorted({_preload(e.name) for e in entries})
                    for preload in self._preloads:  # a server imports while the sweep checks the machine
                        self.launcher.warm(preload)
                    result = self._measure(entries, already)
                finally:
                    self.close()
            # counted again at the end: another sweep on this file may have measured cells meanwhile
            # (while this one waited for the machine, or between its jobs)
            result.already = self._taken_from_store(wanted, result)
            return result

    def _taken_from_store(self, wanted: list[tuple], result: SweepResult) -> int:
        """The cells asked for that are complete in the store and hold no round this sweep measured."""
        from ..setup import cell_key

        mine = {cell_key(m) for m in result.measured if m.get("stored")}
        counts = self.store.round_counts(self.config.rounds)
        return sum(1 for k in wanted if counts.get(k, 0) >= self.config.rounds and k not in mine)

    def close(self) -> None:
        """End the launcher's server, where the sweep made its own (it also ends with this process)."""
        if self._own_launcher:
            self.launcher.close()

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
            self._settle(result)
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
        self._settle(result)
        self.store.finish_run(run_id, "complete")
        return result

    def _settle(self, result: SweepResult) -> None:
        """The intervals of the cells this run gave a second round or more, from the drift of them all."""
        if self.config.rounds >= 2:
            result.drift = self.store.settle_drift(result.run_id)
            if result.drift is not None:
                self.on_event("drift", result.drift.to_dict())
        self._against_usual(result)

    def _against_usual(self, result: SweepResult) -> None:
        """Check the cells this run settled against this machine's usual time for each (the median of their
        earlier runs, kept across databases: `store.usual`), store that usual time with them, and record
        their medians (not a disturbed cell's: the machine's usual is not what others made of it)."""
        from ..measure.device import software
        from ..store import usual

        cells = self.store.cells_of_run(result.run_id)
        if not cells:
            return
        try:
            found = usual.check(cells, usual.stamp(software()), self.store.run_uid(result.run_id))
        except UserError as exc:
            self._note(f"{exc}; the cells were not checked against this machine's earlier runs")
            return
        self.store.put_usual(found)
        result.usual = usual.against([{**c, **f} for c, f in zip(cells, found, strict=True)])
        self.on_event("usual", result.usual.to_dict())

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
        spec = {"device": config.device, "threads": config.threads,
                "precisions": sorted({s.precision for s in config.setups})}
        found = None
        worker = self.launcher.start(Job(PROBE, spec, config.threads, preload=self._preloads[0]))
        try:
            for record in worker.records(idle_limit=IMPORT_LIMIT_S + 300):
                if record["type"] == "environment":
                    found = record
        except TimeoutError:
            pass
        finally:
            rc = worker.end()
        if found is None:
            self.on_event("note", {"text": f"the machine's software and peak FLOP/s could not be read "
                                           f"({worker.exit_words(rc)}): the efficiency figure will be missing"})
            worker.log.close()
            return {**machine_environment(config.device), "device": config.device, "threads": config.threads}
        worker.log.close()
        found.pop("type")
        return found

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
            if self._futile == 2 and not self._said_lasting:  # said once, with the ways out
                self._said_lasting = True
                cores = max(1, self.config.threads - 1)
                self._note(f"the machine stays busy ({cell.get('contention') or 0:.0%} of the cores taken by other "
                           "processes): measuring on without waiting, each disturbed cell flagged. Ways out: end the "
                           "other processes and measure again into a new --db, or measure on the cores they leave "
                           f"free, as a setup of its own (--threads {cores})")

    def _run_worker(self, job: ModelJob, result: SweepResult) -> _Outcome:
        """Run one worker to its end, recording each cell it sends. Its temporary files (the weights
        file, a backend's exported or compiled model: hundreds of MB) go to a folder of its own, removed
        however it ends, a kill included."""
        scratch = tempfile.mkdtemp(prefix="dnnbench-worker-")
        try:
            out = self._watch_worker(job, result, scratch)
            if self._round == 1 and out.files:
                self._restart(job, out.files, scratch, result)
            return out
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _restart(self, job: ModelJob, files: list[str], scratch: str, result: SweepResult) -> None:
        """The setup started from its files alone in a fresh process, twice (the runtime's caches empty,
        then warm), each under the cell limit; the figures given to the cells this worker measured."""
        cells = [r for r in result.measured if r.get("stored") and r["status"] == "ok" and r["round"] == 1
                 and r["model"] == job.model and r["input_size"] == job.input_size
                 and r["batch_size"] in job.batch_sizes and r["backend"] == job.setup.backend
                 and r["precision"] == job.setup.precision]
        if not cells:
            return
        self.on_event("stage", {"model": job.model, "stage": "restart"})
        spec = {**job.spec(static=False), "files": files, "batch_size": job.batch_sizes[0],
                "cache": tempfile.mkdtemp(prefix="cache-", dir=scratch)}
        figures: dict = {}
        for name in ("restart_cold_s", "restart_warm_s"):
            seconds, reason = self._one_restart(job, spec, scratch)
            if seconds is None:
                figures["restart_reason"] = reason
                break
            figures[name] = seconds
        self.store.put_restart([{k: c[k] for k in CELL_KEY} for c in cells], figures)
        for cell in cells:
            cell.update(figures)

    def _one_restart(self, job: ModelJob, spec: dict, scratch: str) -> tuple[float | None, str | None]:
        """(seconds, None) of one start of a fresh process from the setup's files, or (None, why not)."""
        # forked like the latency workers: the clock starts after the imports, which a fresh interpreter
        # would only make slower to reach
        worker = self.launcher.start(Job(RESTART, spec, job.config.threads, scratch, preload=_preload(job.model)))
        found, why = None, None
        try:
            for record in worker.records(idle_limit=IMPORT_LIMIT_S + job.config.cell_timeout_s):
                if record["type"] == "restart":
                    found, why = record.get("seconds"), record.get("reason")
                elif record["type"] == "fatal":
                    why = f"the restart from its files failed: {record['error']}"
                if self._interrupted():
                    raise KeyboardInterrupt
        except TimeoutError as exc:
            why = f"the restart from its files {exc}; stopped"
        finally:
            rc = worker.end()
        try:
            if found is None and why is None:
                why = f"the restart from its files ended ({worker.exit_words(rc)})"
            return found, why
        finally:
            worker.log.close()

    def _watch_worker(self, job: ModelJob, result: SweepResult, scratch: str) -> _Outcome:
        """Start the job's worker and watch it to its end: its records stored as they arrive, its
        memory and time held to their limits, and how it ended said in words."""
        self.on_event("worker", {"model": job.model, "batch_sizes": list(job.batch_sizes), "round": self._round})
        oom_before = memory.oom_kills()
        stored = self.store.round_counts(job.config.rounds)
        spec = job.spec(static=job.model not in self._static_done, busy=self._busy_spec(),
                        peaks_known=[b for b in job.batch_sizes if stored.get(job.key(b), 0) >= 1])
        # a user's model file imports what it likes, maybe not torchvision: forked from the server without
        # it, or the server's torchvision would count in its memory
        worker = self.launcher.start(Job(LATENCY, spec, job.config.threads, scratch, preload=_preload(job.model)))
        state = _WorkerState(_Watch(job.config, time.monotonic()))
        try:
            ended = self._follow(job, worker, state, result)
        finally:
            rc = worker.end()
        try:
            out = ended or self._ending(job, worker, state, rc, oom_before)
            out.files = state.files
            return out
        finally:
            worker.log.close()

    def _follow(self, job: ModelJob, worker, state: _WorkerState, result: SweepResult) -> _Outcome | None:
        """Read the worker's records until its channel ends; an outcome where the records or the
        watchdog decided it (None: its exit decides)."""
        config = job.config
        while not worker.closed:
            exited = worker.poll() is not None
            messages = worker.read(0 if exited else 0.02)
            for message in messages:
                ended = self._on_record(job, message, worker, state, result)
                if ended is not None:
                    return ended
            if exited and not messages:
                break  # gone, and said all it will say (a descendant may still hold the channel open)
            if self._interrupted():
                raise KeyboardInterrupt
            rss = memory.rss_bytes(worker.pid) or 0
            state.peak_seen = max(state.peak_seen, rss)
            if config.max_memory and rss > config.max_memory:
                state.killed = ("oom", f"resident set reached {above(rss, config.max_memory)}; the worker was stopped")
            else:
                state.killed = state.watch.overdue(time.monotonic())
            if state.killed:
                return _Outcome(state.done, state.watch.current, *state.killed, state.cold)
        worker.settle()
        return None

    def _on_record(self, job: ModelJob, message: dict, worker, state: _WorkerState,
                   result: SweepResult) -> _Outcome | None:
        kind = message.pop("type")
        now, watch = time.monotonic(), state.watch
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
            state.files = message.pop("artifact_files", None)
            state.cold = message
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
            self._record(job, batch, {**state.cold, **message}, result)
            state.done.append(batch)
            watch.finished()
            if message["status"] == "oom":  # the worker stops; larger batches are skipped
                return _Outcome(state.done, batch, "oom", message["error"], state.cold)
        elif kind == "fatal":
            status = "oom" if message.get("oom") else "error"
            what = _STAGES.get(message.get("stage"), "building or loading the model")
            return _Outcome(state.done, None, status, f"{what} failed: {message['error']}", state.cold)
        return None

    def _ending(self, job: ModelJob, worker, state: _WorkerState, rc: int, oom_before) -> _Outcome:
        """The outcome of a worker whose exit decides it: a clean end, or a death in words."""
        current, watch = state.watch.current, state.watch
        if worker.finished and current is None and watch.stage_name is None:
            return _Outcome(state.done, None, None, None, state.cold)
        where = f"during batch size {current}" if current is not None else \
            f"during {_STAGES.get(watch.stage_name, 'its start')}"
        if worker.parent_died or worker.channel_lost:  # the launcher's words say which
            return _Outcome(state.done, current, "crashed", f"the worker ended {where}: {worker.exit_words(rc)}",
                            state.cold)
        if worker.stopped:  # its channel ended without its end record, and it did not exit by itself
            return _Outcome(state.done, current, "crashed", f"the worker closed its record channel to dnnbench "
                            f"{where} without ending (a model that closes descriptors it did not open), and was "
                            "stopped", state.cold)
        if rc in (-signal.SIGKILL, -signal.SIGTERM, -signal.SIGHUP):
            status, what = _killed(rc, oom_before, state.peak_seen, job.config.max_memory)
        elif rc == 0:
            status, what = "crashed", f"the worker exited (status 0) {where}: the model's code ended the process"
        else:
            status, what = "crashed", f"the worker died ({describe_exit(rc)}) {where}"
        printed = log_tail(worker.log)
        error = f"{what}; it printed: {printed}" if printed else what
        return _Outcome(state.done, current, status, error, state.cold)  # current None: died before its first cell


@dataclass
class _WorkerState:
    """What the sweep knows of the worker it watches."""

    watch: _Watch
    done: list[int] = field(default_factory=list)
    cold: dict = field(default_factory=dict)
    files: list[str] | None = None
    killed: tuple[str, str] | None = None  # (status, message) when the sweep stopped the worker
    peak_seen: int = 0


def _preload(model: str) -> str:
    """The server a model's worker forks from: a user's model file imports what it likes, maybe not
    torchvision, so its server has not imported it (its torchvision would count in the worker's memory)."""
    from ..zoo.registry import is_user_model

    return "torch" if is_user_model(model) else "models"


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


def sweep_and_read(store: Store, config: RunConfig, entries, argv: list[str], stream, progress: bool,
                   launcher: Launcher | None = None) -> tuple[SweepResult, RunConfig, list[dict]]:
    """Run a sweep of ``entries`` into ``store`` with its progress on ``stream``: (its result, the config it
    ran, with the machine named, and the stored cells of what it was asked for, old and new)."""
    from ..export import rows
    from ..setup import Setup
    from .progress import RunPrinter

    printer = RunPrinter(config, stream, progress=progress)
    sweep = Sweep(store, config, argv=argv, on_event=printer.event, launcher=launcher)
    try:
        result = sweep.run(entries)
    finally:
        printer.close()
    wanted = {(e.name, e.input_size) for e in entries}
    setups = set(sweep.config.setups)
    cells = [c for c in rows(store) if (c["model"], c["input_size"]) in wanted
             and Setup.of(c) in setups and c["batch_size"] in config.batch_sizes]
    return result, sweep.config, cells
