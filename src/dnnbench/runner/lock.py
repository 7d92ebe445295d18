"""One machine measures one thing at a time: a sweep holds a machine-wide lock while it measures.

Two sweeps measuring at once disturb each other's timings (and, on one database, measure the same
cells twice and discard one's work). The second sweep waits for the lock, says so, and then
measures only the cells still missing. The lock is ``flock`` on a file in the temporary directory
(``DNNBENCH_LOCK`` overrides the path), so it is released when its holder dies, however it dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time

LOCK_ENV = "DNNBENCH_LOCK"


def lock_path() -> str:
    return os.environ.get(LOCK_ENV) or os.path.join(tempfile.gettempdir(), "dnnbench-measuring.lock")


@contextlib.contextmanager
def machine_lock(on_wait=None, interrupted=lambda: False):
    """Hold the machine-wide measuring lock; ``on_wait(holder)`` is called once if another process
    holds it (``holder``: its description), before waiting for it; ``interrupted()`` true while
    waiting raises KeyboardInterrupt."""
    path = lock_path()
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            os.fchmod(fd, 0o666)  # another user's sweep must be able to take it too
        except OSError:
            pass
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait:
                on_wait(_holder(fd))
            while True:  # polled, so that Ctrl-C is seen while waiting
                if interrupted():
                    raise KeyboardInterrupt from None
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {' '.join(_cmdline())}".encode()[:500], 0)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def measuring(store, run_id: int, say, launcher, own_launcher: bool):
    """A run of the server or the pair scenario while it measures: the machine lock held (a sweep
    beside it said, then waited for), the run finished as complete or interrupted however it ends,
    and the launcher closed where the run started it."""
    outcome = "complete"
    try:
        with machine_lock(lambda holder: say(f"another dnnbench sweep is measuring on this machine ({holder}); "
                                             "waiting for it to finish")):
            yield
    except KeyboardInterrupt:
        outcome = "interrupted"
        raise
    finally:
        store.finish_run(run_id, outcome)
        if own_launcher:
            launcher.close()


def is_free() -> bool:
    """Whether no sweep holds the measuring lock at this moment (a glance: it may be taken the next)."""
    try:
        fd = os.open(lock_path(), os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 500, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    pid, _, command = text.partition(" ")
    return f"pid {pid}: {command}" if pid.isdigit() else "another process"


def _cmdline() -> list[str]:
    try:
        with open("/proc/self/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a][-6:]
    except OSError:
        return []
