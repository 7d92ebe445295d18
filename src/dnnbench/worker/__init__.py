"""The worker contract: the child side of every process dnnbench starts to run or time a model.

One entry point, ``python -m dnnbench.worker`` (or a fork of the launcher's server, which calls
`main` directly), whatever the process does. The job arrives on stdin as JSON: ``{"scenario":
MODULE, "spec": {...}, "threads": N}``; the scenario is a module of this package (``latency``,
``probe``, ``accuracy``, ``kernels``, ``static``, ``serving``, ``pair``, ``restart``) or, for the one process that runs a sweep of its
own, ``dnnbench.cluster.node``. Each scenario module has ``run(spec, emit)``; ``TORCH`` says
whether the contract prepares torch before it (denormals flushed before any other torch call, since
the flag is per thread and must precede the thread pool; the thread count; one inter-op thread).

The contract, the same for every scenario:
- it dies with its parent (PR_SET_PDEATHSIG), and exits at once if the parent is already gone;
- it ignores Ctrl-C (the parent decides), unless the scenario is ``INTERRUPTIBLE`` (a node's sweep,
  which records its run as interrupted);
- records are JSON lines ``{"type": KIND, ...}`` on the descriptor named by ``DNNBENCH_RECORD_FD``,
  never on stdout, so that whatever the model prints cannot corrupt them (it goes to the log);
- the last record is ``end`` (with the scenario's status): a channel that closes without it was
  closed by someone else (a model that closes descriptors it did not open), which the parent says;
- an exception that escapes the scenario is one ``fatal`` record, as one line.

Nothing here imports torch or a scenario until the job names it: the launcher's bare server forks
from this module in milliseconds.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import signal
import sys

RECORD_FD_ENV = "DNNBENCH_RECORD_FD"
PACKAGE = __name__
# the scenarios, by the module that runs them (the job names the module)
LATENCY, PROBE, ACCURACY, KERNELS, STATIC, SERVING, PAIR, RESTART = (
    f"{PACKAGE}.{name}" for name in ("latency", "probe", "accuracy", "kernels", "static", "serving", "pair", "restart"))
NODE = "dnnbench.cluster.node"  # above the runner: it runs a sweep, so it is named, never imported, here
SCENARIOS = (LATENCY, PROBE, ACCURACY, KERNELS, STATIC, SERVING, PAIR, RESTART, NODE)
CHANNEL_LOST = 3  # the exit status of a worker whose record channel was closed under it


def die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def prepare_torch(threads: int) -> None:
    """The allocator in speed mode; denormals flushed (before any parallel op creates the thread pool);
    then the threads."""
    import torch

    from ..measure import memory

    memory.speed_mode()  # freed memory kept: a pass in steady state faults no page in (see `measure.memory`)
    torch.set_flush_denormal(True)
    torch.set_num_threads(int(threads))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass


def one_line(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"the model called sys.exit({exc.code!r})"
    from ..errors import UserError

    # dnnbench's own errors are sentences already; anything else is named by its type
    text = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}".strip()
    return " ".join(text.split())[:500]


class ChannelLost(Exception):
    """The record channel was closed under the worker: nothing it says can reach its parent."""


class Channel:
    """The record pipe: one JSON line per record, flushed at once (the parent acts on each)."""

    def __init__(self, fd: int):
        self.out = os.fdopen(fd, "w", buffering=1)

    def emit(self, kind: str, **fields) -> None:
        try:
            self.out.write(json.dumps({"type": kind, **fields}) + "\n")
            self.out.flush()
        except (OSError, ValueError) as exc:  # EBADF, EPIPE, or the file object closed by the model
            raise ChannelLost(str(exc)) from None

    def close(self) -> None:
        try:
            self.out.close()
        except OSError:
            pass


def main() -> int:
    parent = os.getppid()
    die_with_parent()
    if os.getppid() != parent:  # the parent died before we asked to die with it
        return 1
    job = json.loads(sys.stdin.read())
    scenario = importlib.import_module(job["scenario"])
    signal.signal(signal.SIGINT, signal.default_int_handler if getattr(scenario, "INTERRUPTIBLE", False)
                  else signal.SIG_IGN)
    channel = Channel(int(os.environ[RECORD_FD_ENV]))
    try:
        try:
            if getattr(scenario, "TORCH", True):
                channel.emit("stage", stage="imports")
                prepare_torch(job.get("threads") or 1)  # in another interpreter (`Job.python`) torch may be missing
                # what the imports made lives as long as the worker: frozen, it is left out of every later
                # collection (each memory reading starts with one), which otherwise walks torch's objects
                # for 0.15 s, several times per worker
                gc.freeze()
            status = scenario.run(job["spec"], channel.emit) or 0
        except ChannelLost:
            raise
        except (Exception, SystemExit) as exc:  # the scenario's own failure, in one line
            import traceback

            traceback.print_exc()
            channel.emit("fatal", error=one_line(exc))
            status = 1
        channel.emit("end", status=status)
    except ChannelLost as exc:
        print(f"dnnbench worker: its record channel was closed under it ({exc}); the model closed a "
              "descriptor it did not open", file=sys.stderr, flush=True)
        return CHANNEL_LOST
    channel.close()
    return int(status)
