"""The sweep: runs one worker process per model, watches it, and commits every record it sends the
moment it arrives.

The watchdog, per worker:
- resident set above ``max_memory`` (polled every 20 ms, and checked again from the worker's own
  peak): the worker is killed, the batch size is recorded ``oom`` and the larger ones are skipped
  as ``oom``;
- a batch size running past the cell timeout: killed, ``timeout``, larger ones skipped as ``timeout``;
- a worker that dies by itself (abort, segfault): the batch size is recorded ``crashed`` with the
  last lines it printed, and a fresh worker measures the remaining batch sizes; a worker killed by
  SIGKILL that the sweep did not send is most likely the kernel's out-of-memory killer, so ``oom``.
Ctrl-C kills the worker and returns; every cell measured so far is already committed.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable

from ..measure import memory
from ..store import Store
from ..units import format_bytes
from .plan import RESULT_FD_ENV, ModelJob, RunConfig, plan

Event = Callable[[str, dict], None]


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


class Sweep:
    def __init__(self, store: Store, config: RunConfig, argv: list[str] | None = None,
                 on_event: Event | None = None, environment: dict | None = None):
        self.store = store
        self.config = config
        self.argv = argv or []
        self.on_event = on_event or (lambda kind, data: None)
        self.environment = environment
        self._round = 1

    # ------------------------------------------------------------------------------------------

    def run(self, entries) -> SweepResult:
        from ..measure.energy import idle_power, open_meter
        from ..measure.static import static_figures

        config = self.config
        if config.retry_failed:
            for entry in entries:
                self.store.delete_cells("model = ? AND input_size = ? AND status != 'ok'",
                                        (entry.name, entry.input_size))
        counts = self.store.round_counts(config.rounds)
        keys = [ModelJob(e.name, e.input_size, (), config).key(b) for e in entries for b in config.batch_sizes]
        total = sum(config.rounds - min(counts.get(k, 0), config.rounds) for k in keys)
        already = sum(1 for k in keys if counts.get(k, 0) >= config.rounds)
        pending = plan(entries, config, counts, config.rounds)
        self.on_event("plan", {"cells": total, "already": already, "models": len(pending), "rounds": config.rounds})

        environment = dict(self.environment or self._environment())
        meter, reason = open_meter(config.device)
        if meter is None:
            environment["energy"] = {"source": None, "reason": reason}
            self.on_event("note", {"text": f"energy not measured: {reason}"})
        else:
            environment["energy"] = {"source": meter.source, "scope": meter.scope,
                                     "idle_power_w": idle_power(meter) if pending else None}
        run_id = self.store.start_run(self.argv, config.as_dict(), environment)
        result = SweepResult(run_id, already=already)
        self._idle_w = environment["energy"].get("idle_power_w")

        for entry in entries:  # the figures the analysis joins with (cheap: meta device)
            try:
                self.store.put_model(static_figures(entry).as_dict())
            except Exception as exc:  # the worker will record the model's failure as its cells
                self.on_event("note", {"text": f"{entry.name}: static figures unavailable: {exc}"})
        try:
            # round by round, model by model: the rounds of one cell are minutes apart, in fresh processes
            for round_no in range(1, config.rounds + 1):
                for job in plan(entries, config, self.store.round_counts(config.rounds), round_no):
                    # another sweep on this file may have measured some meanwhile
                    fresh = self.store.round_counts(config.rounds)
                    missing = tuple(b for b in job.batch_sizes if fresh.get(job.key(b), 0) < round_no)
                    if len(missing) < len(job.batch_sizes):
                        self.on_event("skip", {"model": job.model, "cells": len(job.batch_sizes) - len(missing)})
                    if missing:
                        self._run_job(ModelJob(job.model, job.input_size, missing, config), result, round_no)
        except KeyboardInterrupt:
            result.interrupted = True
            self.store.finish_run(run_id, "interrupted")
            raise
        self.store.finish_run(run_id, "complete")
        return result

    def _environment(self) -> dict:
        from ..measure.device import environment, peak_flops

        env = environment(self.config.device, self.config.threads)
        env.update(peak_flops(self.config.device, self.config.threads))
        return env

    # ------------------------------------------------------------------------------------------

    def _record(self, job: ModelJob, batch: int, fields: dict, result: SweepResult) -> None:
        c = job.config
        row = {"model": job.model, "input_size": job.input_size, "device": c.device, "backend": c.backend,
               "precision": c.precision, "threads": c.threads, "batch_size": batch,
               "idle_power_w": self._idle_w, "round": self._round, **fields}
        stored = self.store.put_cell(result.run_id, row, rounds=c.rounds)
        row["stored"] = stored
        result.measured.append(row)
        self.on_event("cell", row)

    def _run_job(self, job: ModelJob, result: SweepResult, round_no: int = 1) -> None:
        self._round = round_no
        remaining = list(job.batch_sizes)
        while remaining:
            out = self._run_worker(ModelJob(job.model, job.input_size, tuple(remaining), job.config), result)
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
            if out.status == "crashed":  # maybe this batch size only: a fresh worker tries the rest
                continue
            for b in remaining:  # oom or timeout: larger batches need more memory and more time
                why = f"skipped: batch size {out.failed} already ended in {out.status} ({out.error})"
                self._record(job, b, {**out.cold, "status": out.status, "error": why}, result)
            return

    def _run_worker(self, job: ModelJob, result: SweepResult) -> _Outcome:
        """Run one worker to its end, recording each cell it sends."""
        config = job.config
        env = dict(os.environ)
        threads = str(config.threads)
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads)
        read_fd, write_fd = os.pipe()
        env[RESULT_FD_ENV] = str(write_fd)
        log = tempfile.TemporaryFile()
        self.on_event("worker", {"model": job.model, "batch_sizes": list(job.batch_sizes), "round": self._round})
        proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "dnnbench.run.worker"],
                                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, pass_fds=(write_fd,),
                                env=env, start_new_session=False)
        os.close(write_fd)
        try:
            proc.stdin.write(json.dumps(job.spec()).encode())
            proc.stdin.close()
        except BrokenPipeError:
            pass

        done: list[int] = []
        cold: dict = {}
        current: int | None = None
        current_since = spawned = time.monotonic()
        killed: tuple[str, str] | None = None  # (status, message) when the sweep killed the worker
        buffer = b""
        peak_seen = 0
        try:
            while True:
                ready, _, _ = select.select([read_fd], [], [], 0.02)
                if ready:
                    chunk = os.read(read_fd, 1 << 20)
                    if not chunk:
                        break
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for line in lines:
                        message = json.loads(line)
                        kind = message.pop("type")
                        if kind == "cold":
                            cold = message
                        elif kind == "start":
                            current, current_since = message["batch_size"], time.monotonic()
                            self.on_event("start", {"model": job.model, "batch_size": current})
                        elif kind == "cell":
                            batch = message.pop("batch_size")
                            self._record(job, batch, {**cold, **message}, result)
                            done.append(batch)
                            current = None
                            if message["status"] == "oom":  # the worker stops; larger batches are skipped
                                proc.wait()
                                return _Outcome(done, batch, "oom", message["error"], cold)
                        elif kind == "fatal":
                            status = "oom" if message.get("oom") else "error"
                            proc.wait()
                            return _Outcome(done, None, status, f"could not build or load the model: {message['error']}",
                                            cold)
                rss = memory.rss_bytes(proc.pid) or 0
                peak_seen = max(peak_seen, rss)
                now = time.monotonic()
                if config.max_memory and rss > config.max_memory:
                    killed = ("oom", f"resident set reached {format_bytes(rss)}, above --max-memory "
                                     f"{format_bytes(config.max_memory)}; the worker was stopped")
                elif current is not None and now - current_since > config.cell_timeout_s:
                    killed = ("timeout", f"batch size {current} ran longer than the cell limit of "
                                         f"{config.cell_timeout_s:g} s; the worker was stopped")
                elif current is None and not done and now - spawned > config.startup_timeout_s:
                    killed = ("timeout", f"building, loading and the first pass took longer than "
                                         f"{config.startup_timeout_s:g} s; the worker was stopped")
                if killed:
                    proc.kill()
                    break
        except KeyboardInterrupt:
            proc.kill()
            proc.wait()
            raise
        finally:
            os.close(read_fd)
        rc = proc.wait()
        if killed:
            return _Outcome(done, current, killed[0], killed[1], cold)
        if current is None and rc == 0:
            return _Outcome(done, None, None, None, cold)
        printed = _tail(log)
        if rc == -signal.SIGKILL:
            status, what = "oom", (f"the worker was killed by SIGKILL at {format_bytes(peak_seen)} resident, most "
                                   "likely by the kernel's out-of-memory killer")
        else:
            status, what = "crashed", f"the worker died ({_describe(rc)})"
        error = f"{what}; it printed: {printed}" if printed else what
        return _Outcome(done, current, status, error, cold)  # current None: died building or loading


def _describe(rc: int) -> str:
    if rc < 0:
        try:
            return f"signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"signal {-rc}"
    return f"exit status {rc}"


def _tail(log, limit: int = 600) -> str:
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
