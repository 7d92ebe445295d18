"""Workers started without importing the libraries again: a fork server.

A fresh worker imported torch and torchvision (about 5 s on a 2-core machine) before it measured
anything: minutes of every multi-model sweep. The fork server is one process that imports them
once; each worker is then forked from it, ready at once.

A forked worker starts as clean as a fresh one: the server only imports, never runs an operator,
so when it forks it has one thread, no intra-op or inter-op thread pool, no CUDA context and no
allocator cache (it counts its threads after importing, and the sweep does not use a server that
has more than one). The child takes the job's environment (thread variables, TMPDIR, the result
descriptor), a process group of its own, fresh random seeds, the server's resident file pages mapped
again (below), and runs the worker's ``main``. Its memory figures match a fresh worker's
(tests/test_run.py holds them side by side).

Protocol, on a Unix socket pair of datagrams (SOCK_SEQPACKET: one message each, never merged): the
server says ``{"ready": ...}`` once imported; the sweep sends ``{"env": {...}}`` with three
descriptors (the job's stdin, the log that takes stdout and stderr, the result pipe); the server
answers ``{"pid": N}`` and, when that worker ends, ``{"exit": N, "code": C}`` (C as subprocess's
returncode: negative for a signal). The server dies with the sweep (PR_SET_PDEATHSIG), and its
workers with it; it ends when the sweep closes the socket.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time

from .plan import IMPORT_LIMIT_S, RESULT_FD_ENV

# what every worker of a registry model imports (each resolves its name through torchvision): the
# server imports nothing more, so a forked worker's memory is a fresh one's. timm, pretrainedmodels
# and the backends' runtimes are imported by the workers that use them; a user's model file imports
# only what it imports, so its workers start fresh (see `Sweep._start_worker`).
PRELOAD = ("torch", "torchvision", "dnnbench.zoo.registry", "dnnbench.measure.static", "dnnbench.measure.latency",
           "dnnbench.measure.memory", "dnnbench.measure.busy", "dnnbench.backends", "dnnbench.runner.worker",
           "safetensors.torch")
_FDS = 3  # stdin, log, result pipe
_MESSAGE = 1 << 16


def _send(sock: socket.socket, message: dict, fds=()) -> None:
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return -1


# ---- the server ----------------------------------------------------------------------------------


def serve(sock: socket.socket) -> int:
    from .worker import _die_with_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the sweep's to handle
    _die_with_parent()
    t0 = time.perf_counter()
    loaded, missing = [], []
    for name in PRELOAD:
        try:
            importlib.import_module(name)
            loaded.append(name)
        except ImportError as exc:  # an optional library: the worker imports (or misses) it itself
            missing.append(f"{name}: {exc}")
    resident = _resident_file_pages()
    _send(sock, {"ready": True, "threads": _threads(), "import_s": time.perf_counter() - t0, "missing": missing,
                 "resident_file_bytes": sum(n for _, n in resident)})
    # a child's exit wakes the loop (SIGCHLD through the wakeup descriptor): no polling while a
    # worker measures, so the server takes no CPU from it
    wake_r, wake_w = os.pipe()
    for fd in (wake_r, wake_w):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    children: set[int] = set()
    while True:
        ready, _, _ = select.select([sock, wake_r], [], [])
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
        if sock in ready:
            try:
                data, fds, _, _ = socket.recv_fds(sock, _MESSAGE, _FDS)
            except OSError:
                break
            if not data:
                break  # the sweep closed its end: done
            pid = _fork(json.loads(data), fds, sock, (wake_r, wake_w), resident)
            for fd in fds:
                os.close(fd)
            children.add(pid)
            _send(sock, {"pid": pid})
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                children.clear()
                break
            if pid == 0:
                break
            children.discard(pid)
            _send(sock, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})
    return 0


def _fork(request: dict, fds: list[int], sock: socket.socket, wake: tuple[int, int], resident) -> int:
    pid = os.fork()
    if pid:
        with contextlib.suppress(OSError):  # the child does it too: whichever runs first, no kill misses it
            os.setpgid(pid, pid)
        return pid
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in wake:
            os.close(fd)
        sock.close()
        os.setpgid(0, 0)  # a group of its own, ended whole; same session as the sweep (see sweep._OWN_GROUP)
        stdin_fd, log_fd, result_fd = fds
        os.dup2(stdin_fd, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(stdin_fd)
        os.close(log_fd)
        os.environ.clear()
        os.environ.update({**request["env"], RESULT_FD_ENV: str(result_fd)})
        tempfile.tempdir = None  # TMPDIR is the job's
        _reseed()
        _map_again(resident)
        import faulthandler

        faulthandler.enable()
        from .worker import main

        code = main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


# ---- the forked child's resident set, as a fresh process's ---------------------------------------
#
# A fork copies the page tables of anonymous memory, so the child's resident set counts it, but not
# those of files mapped read-only (the libraries' code and read-only data): the kernel maps those
# again as the child touches them. A forked worker would then start 250 MB below a fresh process
# that imported the same libraries, and its memory figures would not be a fresh process's. So the
# server notes which pages of its file mappings are resident once it has imported, and the child
# maps exactly those again (MADV_POPULATE_READ: from the page cache, no copy, no I/O) before it
# measures anything.

_PAGE = os.sysconf("SC_PAGE_SIZE")
_POPULATE_READ = 22  # MADV_POPULATE_READ, Linux 5.14


def _resident_file_pages() -> list[tuple[int, int]]:
    """(address, bytes) runs of the resident pages of this process's readable file mappings."""
    import numpy as np

    runs: list[tuple[int, int]] = []
    try:
        with open("/proc/self/maps") as maps, open("/proc/self/pagemap", "rb") as pagemap:
            for line in maps:
                parts = line.split(maxsplit=5)
                if len(parts) < 6 or not parts[5].startswith("/") or parts[1][0] != "r":
                    continue
                start, end = (int(x, 16) for x in parts[0].split("-"))
                pagemap.seek(start // _PAGE * 8)
                entries = np.frombuffer(pagemap.read((end - start) // _PAGE * 8), dtype=np.uint64)
                present = np.concatenate(([0], (entries >> np.uint64(63)).astype(np.int8), [0]))
                edges = np.flatnonzero(np.diff(present))
                for first, last in zip(edges[::2], edges[1::2], strict=True):
                    runs.append((start + int(first) * _PAGE, int(last - first) * _PAGE))
    except (OSError, ValueError):
        return []  # no pagemap: the child starts with fewer pages mapped, as before
    return runs


def _map_again(runs) -> None:
    """Map the pages ``runs`` names in this process, as the server had them."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    for address, size in runs:
        if libc.madvise(address, size, _POPULATE_READ) != 0:  # an older kernel: touch a byte of each page
            for page in range(address, address + size, _PAGE):
                ctypes.string_at(page, 1)


def _reseed() -> None:
    """Seeds of a fresh process: the server's would be shared by every worker."""
    import random

    random.seed()
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed()


# ---- the sweep's side ----------------------------------------------------------------------------


class Unavailable(Exception):
    """The fork server could not start, or died: workers are spawned as fresh processes instead."""


class Forked:
    """A worker forked by the server, with the part of `subprocess.Popen` the sweep uses."""

    def __init__(self, server: ForkServer, pid: int):
        self.server = server
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server._exit_code(self.pid, 0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = self.server._exit_code(self.pid, timeout)
            if self.returncode is None:
                raise subprocess.TimeoutExpired("worker", timeout)
        return self.returncode


class ForkServer:
    """The sweep's handle on its fork server: started once, forks a worker per `launch`."""

    def __init__(self, env: dict):
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.log = tempfile.TemporaryFile()
        self.exits: dict[int, int] = {}
        self.dead: str | None = None
        # numpy's OpenBLAS starts its thread pool when loaded, sized by this variable: one thread
        # means none to start (its pool would be shut down before each fork anyway, by its own fork
        # handler; a worker's numpy then stays single-threaded, which no figure depends on)
        env = {**env, "OPENBLAS_NUM_THREADS": "1"}
        try:
            self.proc = subprocess.Popen(
                # os._exit: nothing to flush, and tearing down torch's modules would take seconds
                [sys.executable, "-c", "import os, sys, socket; from dnnbench.runner.forkserver import serve; "
                                       "code = serve(socket.socket(fileno=int(sys.argv[1]))); sys.stdout.flush(); "
                                       "sys.stderr.flush(); os._exit(code)", str(theirs.fileno())],
                stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT, pass_fds=(theirs.fileno(),),
                env=env)
        finally:
            theirs.close()
        self.ready: dict | None = None

    def wait_ready(self, timeout: float = IMPORT_LIMIT_S) -> dict:
        """The server's ``ready`` message (its import seconds, thread count); `Unavailable` if it died,
        took longer than ``timeout``, or has more than one thread (a fork would not be clean)."""
        if self.ready is None:
            message = self._receive(timeout)
            if message is None or "ready" not in message:
                self.close()
                raise Unavailable(self.dead or f"it did not finish importing within {timeout:.0f} s")
            self.ready = message
            if message["threads"] != 1:
                self.close()
                raise Unavailable(f"it has {message['threads']} threads after importing, and a fork copies only one")
        return self.ready

    def launch(self, env: dict, stdin_fd: int, log_fd: int, result_fd: int) -> Forked:
        self.wait_ready()
        try:
            _send(self.sock, {"env": env}, (stdin_fd, log_fd, result_fd))
        except OSError as exc:
            self._died(f"it is gone ({exc})")
            raise Unavailable(self.dead) from exc
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            message = self._receive(deadline - time.monotonic())
            if message is None:
                break
            if "pid" in message:
                return Forked(self, message["pid"])
        raise Unavailable(self.dead or "it did not fork within 30 s")

    def _exit_code(self, pid: int, timeout: float | None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while pid not in self.exits:
            if self.dead is not None:
                return -signal.SIGKILL  # the server died, and its workers with it (PR_SET_PDEATHSIG)
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if self._receive(left) is None and left is not None and time.monotonic() >= deadline:
                return None
        return self.exits.pop(pid)

    def _receive(self, timeout: float | None) -> dict | None:
        """The next message other than an exit (exits are kept for `_exit_code`), or None."""
        if self.dead is not None:
            return None
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return None
        try:
            data = self.sock.recv(_MESSAGE)
        except OSError as exc:
            data = b""
            self._died(f"it is gone ({exc})")
        if not data:
            self._died("it exited")
            return None
        message = json.loads(data)
        if "exit" in message:
            self.exits[message["exit"]] = message["code"]
            return {}
        return message

    def _died(self, why: str) -> None:
        if self.dead is None:
            self.log.seek(0)
            printed = " | ".join(line.strip() for line in self.log.read().decode(errors="replace").splitlines()[-3:])
            self.dead = why + (f"; it printed: {printed}" if printed else "")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        self.dead = self.dead or "closed"
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
