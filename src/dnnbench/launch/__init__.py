"""The one seam that starts processes: every process dnnbench starts to run or time a model (a sweep's
worker, the environment probe, an evaluation, a profile, kernel timing, inspecting a user's model
file, a cluster node's sweep) is a `Job` given to `Launcher.start`, which returns a `Worker`.

One policy for all of them, the sweep's:
- every worker is a child of the launcher's server (`forkserver`), never of the caller: a model that
  kills its parent (``os.kill(os.getppid(), SIGKILL)``) kills the server, which the launcher replaces,
  not the sweep; the server is the child subreaper of the workers, so a daemon that a model
  double-forks into a session of its own comes back to it and is killed when a worker ends;
- a process group of its own, ended whole; the caller's session (with the kernel's autogroup
  scheduling, a new session is a new scheduling group, which shares the CPUs with other sessions'
  groups rather than thread by thread: against one busy process elsewhere, a 2-thread MobileNet-v2
  ran 27x slower in a new session than in the user's own);
- the thread variables of the job's thread count, and its own temporary folder where given;
- the worker contract (`dnnbench.worker`): parent-death signal, Ctrl-C ignored, denormals flushed,
  records as JSON lines ``{"type": ...}`` on a pipe of its own, ``end`` last; whatever it prints
  goes to a log, whose tail (`log_tail`) says why it died, in the words of `describe_exit`.

A job that names a preloaded server (``preload``: ``models`` for a registry model in a sweep, ``torch``
for a user's model file, which may not import torchvision) is forked from it, ready in milliseconds;
any other (an evaluation, whose data loader forks processes of its own; a profile; kernel timing) is
a fresh interpreter exec'd by the bare server. `InlineLauncher` runs a scenario in this process, for tests of its logic.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

from ..worker import CHANNEL_LOST, RECORD_FD_ENV

# the folder that holds the dnnbench package: first on the path of a worker in another interpreter
_OUR_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMPORT_LIMIT_S = 120.0  # importing torch and dnnbench on a busy machine: our code, not the model's
END_GRACE_S = 5.0  # a worker whose channel closed without its end record: time to exit before it is stopped


@dataclass(frozen=True)
class Job:
    """What a worker does (``scenario``: a module of `dnnbench.worker`, with its ``spec``), with how
    many threads, and where its temporary files go (None: the default folder). ``preload``: the
    libraries of the server it may be forked from (``models``, ``torch``; None: a fresh interpreter).
    ``python``: the interpreter of a fresh worker (None: this one); a job that names one is never
    forked, and its worker runs this dnnbench's code (its folder first on PYTHONPATH) with that
    interpreter's libraries."""

    scenario: str
    spec: dict = field(default_factory=dict)
    threads: int = 1
    scratch: str | None = None
    preload: str | None = None
    python: str | None = None

    def payload(self) -> bytes:
        return json.dumps({"scenario": self.scenario, "spec": self.spec, "threads": self.threads}).encode()


def worker_environment(threads: int, scratch: str | None = None) -> dict:
    """A worker's environment: this process's, with the thread variables of ``threads`` and TMPDIR
    ``scratch`` (the worker's own folder) where given."""
    n = str(threads)
    env = dict(os.environ, OMP_NUM_THREADS=n, MKL_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n)
    env.pop(RECORD_FD_ENV, None)
    if scratch is not None:
        env["TMPDIR"] = scratch
    return env


def describe_exit(rc: int) -> str:
    """How a process ended, in words: ``signal SIGKILL`` or ``exit status 1``."""
    if rc < 0:
        try:
            return f"signal {signal.Signals(-rc).name}"
        except ValueError:
            return f"signal {-rc}"
    return f"exit status {rc}"


def log_tail(log, limit: int = 600) -> str:
    """What a worker printed, in one line: its last lines before a fatal error, the error, and the
    innermost frame of faulthandler's traceback (its list of extension modules is left out)."""
    log.seek(0)
    data = log.read()
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    fatal = next((i for i, line in enumerate(lines) if line.startswith("Fatal Python error")), None)
    if fatal is None:
        return " | ".join(lines[-8:])[-limit:]
    before = lines[max(0, fatal - 3):fatal]
    frame = next((line for line in lines[fatal + 1:] if line.startswith("File ")), None)
    keep = [*before, lines[fatal]] + ([f"at {frame}"] if frame else [])
    return " | ".join(keep)[-limit:]


class Worker:
    """A started job, seen from the launcher's side: its records, its exit, its log.

    ``read(timeout)`` returns the records that arrived (an empty list when none did); ``closed`` once
    its channel reached its end; ``finished`` once it sent ``end``. ``end()`` kills its whole group
    (``stopped`` then says the launcher ended it) and returns its exit code."""

    def __init__(self, proc, read_fd: int, log, scratch: str | None):
        self.proc, self.pid = proc, proc.pid
        self._fd, self.log, self.scratch = read_fd, log, scratch
        self._buffer = b""
        self.closed = self.finished = self.stopped = False
        self.status: int | None = None  # the scenario's own status, from its end record
        self.garbled = 0  # lines on the channel that were not records (written by the model into our pipe)

    def poll(self) -> int | None:
        return self.proc.poll()

    @property
    def parent_died(self) -> bool:
        """The server it was forked from died while it ran (a model that killed its parent, or the OOM killer)."""
        return bool(getattr(self.proc, "parent_died", False))

    def wait(self, timeout: float | None = None) -> int:
        return self.proc.wait(timeout)

    def read(self, timeout: float) -> list[dict]:
        if self.closed:
            return []
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return []
        chunk = os.read(self._fd, 1 << 20)
        if not chunk:
            self.closed = True
            return []
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        records = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                self.garbled += 1
                continue
            if not isinstance(record, dict) or "type" not in record:
                self.garbled += 1
                continue
            if record["type"] == "end":
                self.finished, self.status = True, record.get("status")
            records.append(record)
        return records

    def records(self, idle_limit: float | None = None, tick: float = 0.5):
        """Each record as it comes, to the end of the channel; `TimeoutError` when none came for
        ``idle_limit`` seconds (the caller ends the worker). A channel that closed without the end
        record waits up to END_GRACE_S for the worker's exit."""
        quiet_since = time.monotonic()
        while not self.closed:
            got = self.read(tick)
            if got:
                quiet_since = time.monotonic()
                yield from got
            elif idle_limit is not None and time.monotonic() - quiet_since > idle_limit:
                raise TimeoutError(f"it sent nothing for {idle_limit:,.0f} s")
        self.settle()

    def settle(self) -> None:
        """After the channel closed: a worker that said its end is stopped at once (its exit is a
        teardown nobody waits for); one that did not gets END_GRACE_S to exit by itself."""
        if not self.finished:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(END_GRACE_S)

    def end(self) -> int:
        """Kill the worker's whole group (a child it forked must neither hold the channel open nor
        outlive it), close the channel, and return the exit code."""
        if self.proc.poll() is None:
            self.stopped = not self.finished  # a worker that said its end is only spared its teardown
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)  # the worker, and what it forked even after it exited
        rc = None
        with contextlib.suppress(subprocess.TimeoutExpired):
            rc = self.proc.wait(timeout=10)
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        return rc if rc is not None else -signal.SIGKILL

    def interrupt(self, timeout: float) -> None:
        """Ctrl-C for the worker's group (a scenario that takes it ends its work and says so), then
        ``timeout`` seconds to end before it is killed."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout)

    @property
    def channel_lost(self) -> bool:
        """It exited saying its record channel was closed under it (by the model)."""
        return self.proc.poll() == CHANNEL_LOST and not self.finished

    def exit_words(self, rc: int) -> str:
        """Why it ended, for an error message: its exit, and what it printed."""
        if self.parent_died:
            what = (f"its parent process (dnnbench's launcher) was killed while it ran ({describe_exit(rc)}); "
                    "a model that kills its parent process does this")
        elif rc == CHANNEL_LOST and not self.finished:
            what = "it closed its record channel to dnnbench (a model that closes descriptors it did not open)"
        else:
            what = describe_exit(rc)
        printed = log_tail(self.log)
        return f"{what}; it printed: {printed}" if printed else what

    def close(self) -> None:
        self.end()
        self.log.close()


class Launcher:
    """Starts every job through a server (`forkserver.ForkServer`): one per preload a job names, where
    ``preload`` allows forking (for sweeps), and a bare one that execs fresh interpreters. A preloaded
    server that cannot start or dies is replaced by fresh interpreters for its jobs, and ``on_note``
    hears of it once; a bare server that dies is replaced at the next start."""

    def __init__(self, threads: int = 1, preload: bool = False, on_note=None):
        self.threads, self.preload = threads, preload
        self.on_note = on_note or (lambda text: None)
        self._servers: dict = {}  # preload (None: bare) -> ForkServer
        self._broken: set[str] = set()  # preloads whose server failed: their jobs start fresh

    def server(self, preload: str | None = None):
        """The running server of ``preload``, started on first use (a preloaded one is still importing:
        its first `launch` waits for it)."""
        from .forkserver import ForkServer

        found = self._servers.get(preload)
        if found is not None and found.dead is not None:
            found.close()
            found = None
        if found is None:
            try:
                found = self._servers[preload] = ForkServer(worker_environment(self.threads), preload=preload)
            except OSError as exc:
                if preload is None:
                    raise
                self._fall_back(preload, str(exc))
                return self.server(None)
        return found

    def _kind(self, job: Job) -> str | None:
        return job.preload if self.preload and job.preload not in self._broken else None

    def _fall_back(self, preload: str, why: str) -> None:
        """A preloaded server failed: its jobs start as fresh interpreters from now on."""
        self._broken.add(preload)
        found = self._servers.pop(preload, None)
        if found is not None:
            found.close()
        self.on_note(f"workers start as fresh processes, each importing torch itself: the fork server is "
                     f"unavailable ({why})")

    def start(self, job: Job) -> Worker:
        from .forkserver import Unavailable

        log = tempfile.TemporaryFile()
        read_fd, write_fd = os.pipe()
        stdin_r, stdin_w = os.pipe()
        env = {**worker_environment(job.threads, job.scratch), RECORD_FD_ENV: str(write_fd)}
        if job.python:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (_OUR_ROOT, env.get("PYTHONPATH")) if p)
        try:
            for attempt in (1, 2, 3):
                kind = None if job.python else self._kind(job)
                server = self.server(kind)
                try:
                    proc = server.launch(env, (stdin_r, log.fileno(), write_fd), fork=kind is not None,
                                         python=job.python)
                    break
                except Unavailable as exc:
                    if attempt == 3:
                        raise OSError(f"dnnbench's launcher could not start a worker: {exc}") from exc
                    if kind is not None:
                        self._fall_back(kind, str(exc))
        except BaseException:
            for fd in (read_fd, stdin_w):
                os.close(fd)
            log.close()
            raise
        finally:
            os.close(stdin_r)
            os.close(write_fd)
        _write_all(stdin_w, job.payload())
        return Worker(proc, read_fd, log, job.scratch)

    def warm(self, preload: str | None = "models") -> None:
        """Start a server now (a preloaded one imports while the caller does other work)."""
        from .forkserver import Unavailable

        if preload is not None and not self.preload:
            return
        with contextlib.suppress(OSError, Unavailable):
            self.server(preload)

    def close(self) -> None:
        for found in self._servers.values():
            found.close()
        self._servers.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _write_all(fd: int, data: bytes) -> None:
    """The job on the worker's stdin (a worker that died at once leaves a broken pipe: its exit says why)."""
    try:
        while data:
            data = data[os.write(fd, data):]
    except BrokenPipeError:
        pass
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


class _Done:
    """The exit of a job run in this process."""

    def __init__(self, code: int):
        self.pid, self.returncode = os.getpid(), code

    def poll(self) -> int:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        return self.returncode


class InlineWorker(Worker):
    """A job run to its end in this process: its records, replayed. For tests of a scenario's logic."""

    def __init__(self, records: list[dict], code: int):
        self.proc, self.pid, self.log, self.scratch = _Done(code), os.getpid(), tempfile.TemporaryFile(), None
        self._records, self._fd = records, None
        self.closed = self.stopped = False
        self.finished, self.status, self.garbled = True, code, 0

    def read(self, timeout: float) -> list[dict]:
        records, self._records = self._records, []
        self.closed = not records
        return records

    def end(self) -> int:
        return self.proc.returncode


class InlineLauncher:
    """Runs each job's scenario in this process, at `start` (no isolation, no watch: for tests only)."""

    def __init__(self, *args, **kwargs):
        pass

    def start(self, job: Job) -> InlineWorker:
        import importlib

        records: list[dict] = []
        scenario = importlib.import_module(job.scenario)
        code = scenario.run(job.spec, lambda kind, **fields: records.append({"type": kind, **fields})) or 0
        records.append({"type": "end", "status": code})
        return InlineWorker(records, code)

    def warm(self, preload: str | None = "models") -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass
