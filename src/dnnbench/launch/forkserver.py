"""The launcher's server: the parent of every worker, and a fork server for sweeps.

A fresh worker imported torch and torchvision (about 5 s on a 2-core machine) before it measured
anything: minutes of every multi-model sweep. A preloaded server is one process that imports them
once; each worker is then forked from it, ready at once: ``models`` imports torch, torchvision and
the measuring code (a registry model's worker), ``torch`` the same without torchvision (a user's model
file, which may not import it: the server's torchvision would count in its memory). A bare server
(``preload`` None) imports nothing and execs each worker as a fresh interpreter (``python -m
dnnbench.worker``). Either way
the server, not the caller, is every worker's parent, and their child subreaper: a worker's
descendant that escaped its process group (a daemon in a session of its own) is adopted by the
server when its own parent dies, and killed when a worker ends.

A forked worker starts as clean as a fresh one: the server only imports, never runs an operator,
so when it forks it has one thread, no intra-op or inter-op thread pool, no CUDA context and no
allocator cache (it counts its threads after importing, and the sweep does not use a server that
has more than one). The child takes the job's environment (thread variables, TMPDIR, the result
descriptor), a process group of its own, fresh random seeds, the server's resident file pages mapped
again (below), and runs the worker's ``main``. Its memory figures match a fresh worker's
(tests/test_run.py holds them side by side).

Protocol, on a Unix socket pair of datagrams (SOCK_SEQPACKET: one message each, never merged): the
server says ``{"ready": ...}`` once imported; the launcher sends ``{"env": {...}, "fork": bool}`` with
three descriptors (the job's stdin, the log that takes stdout and stderr, the record pipe); the server
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

from ..worker import RECORD_FD_ENV

IMPORT_LIMIT_S = 120.0  # as launch.IMPORT_LIMIT_S (that module imports this one)

# what every worker of a registry model imports (each resolves its name through torchvision): the
# server imports nothing more, so a forked worker's memory is a fresh one's. timm, pretrainedmodels
# and the backends' runtimes are imported by the workers that use them; a user's model file imports
# only what it imports, so its workers start fresh (`launch.Job.preloaded` False).
PRELOAD = ("torch", "torchvision", "dnnbench.zoo.registry", "dnnbench.measure.static", "dnnbench.measure.latency",
           "dnnbench.measure.memory", "dnnbench.measure.busy", "dnnbench.backends", "dnnbench.worker.latency",
           "dnnbench.worker.probe", "safetensors.torch")
PRELOADS = {"models": PRELOAD, "torch": tuple(name for name in PRELOAD if name != "torchvision")}
_SUBREAPER = 36  # PR_SET_CHILD_SUBREAPER
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


def serve(sock: socket.socket, preload: str | None = "models") -> int:
    from ..worker import die_with_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the caller's to handle
    die_with_parent()
    _prctl(_SUBREAPER, 1)
    t0 = time.perf_counter()
    loaded, missing = [], []
    for name in PRELOADS[preload] if preload else ():
        try:
            importlib.import_module(name)
            loaded.append(name)
        except ImportError as exc:  # an optional library: the worker imports (or misses) it itself
            missing.append(f"{name}: {exc}")
    resident = _resident_file_pages()
    _send(sock, {"ready": True, "threads": _threads(), "import_s": time.perf_counter() - t0, "missing": missing,
                 "resident_file_bytes": sum(n for _, n in resident), "preloaded": preload})
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
                break  # the launcher closed its end: done
            pid = _fork(json.loads(data), fds, sock, (wake_r, wake_w), resident)
            for fd in fds:
                os.close(fd)
            children.add(pid)
            _send(sock, {"pid": pid})
        while True:  # every child that ended: a worker (said to the launcher) or an adopted orphan (reaped)
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:  # no child at all
                children.clear()
                break
            if pid == 0:
                break
            if pid in children:
                children.discard(pid)
                _kill_orphans(children)  # before the launcher hears of the end: nothing outlives a worker
                _send(sock, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})
    _kill_orphans(())  # the launcher is done: every worker and what they left behind
    return 0


def _prctl(option: int, value: int) -> None:
    try:
        import ctypes

        ctypes.CDLL(None).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _kill_orphans(workers) -> None:
    """Kill every child of this server that is not a running worker, with its process group: a
    process that a worker's model started and that escaped the worker's group (``setsid``) and came
    back to the server, its subreaper, when its own parent died."""
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in workers:
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me:
            pid = int(name)
            for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
                with contextlib.suppress(OSError):
                    kill()
    # no waitpid here: it could reap a worker that ended meanwhile, whose exit the launcher must hear;
    # the serving loop reaps the orphans (their SIGCHLD wakes it)


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
        os.setpgid(0, 0)  # a group of its own, ended whole; the caller's session (see the launch module)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stdin_fd, log_fd, record_fd = fds
        os.dup2(stdin_fd, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(stdin_fd)
        os.close(log_fd)
        env = {**request["env"], RECORD_FD_ENV: str(record_fd)}
        if not request.get("fork"):  # a fresh interpreter, which imports what its job needs
            os.set_inheritable(record_fd, True)
            python = request.get("python") or sys.executable
            os.execve(python, [python, "-X", "faulthandler", "-m", "dnnbench.worker"], env)
        os.environ.clear()
        os.environ.update(env)
        tempfile.tempdir = None  # TMPDIR is the job's
        _reseed()
        _map_again(resident)
        import faulthandler

        faulthandler.enable()
        from ..worker import main

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
    """The server could not start, or died."""


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

    @property
    def parent_died(self) -> bool:
        """Its exit is not known because the server died (and it with it, by PR_SET_PDEATHSIG)."""
        return self.server.dead is not None and self.returncode is not None and self.pid not in self.server.known

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = self.server._exit_code(self.pid, timeout)
            if self.returncode is None:
                raise subprocess.TimeoutExpired("worker", timeout)
        return self.returncode


class ForkServer:
    """The launcher's handle on its server: started once, starts a worker per `launch`."""

    def __init__(self, env: dict, preload: str | None = "models"):
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.log = tempfile.TemporaryFile()
        self.exits: dict[int, int] = {}
        self.known: set[int] = set()  # workers whose exit the server reported
        self.dead: str | None = None
        self.preloaded = preload
        # numpy's OpenBLAS starts its thread pool when loaded, sized by this variable: one thread
        # means none to start (its pool would be shut down before each fork anyway, by its own fork
        # handler; a worker's numpy then stays single-threaded, which no figure depends on)
        env = {**env, "OPENBLAS_NUM_THREADS": "1"}
        try:
            self.proc = subprocess.Popen(
                # os._exit: nothing to flush, and tearing down torch's modules would take seconds
                [sys.executable, "-c", "import os, sys, socket; from dnnbench.launch.forkserver import serve; "
                                       "code = serve(socket.socket(fileno=int(sys.argv[1])), sys.argv[2] or None); "
                                       "sys.stdout.flush(); sys.stderr.flush(); os._exit(code)",
                 str(theirs.fileno()), preload or ""],
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

    def launch(self, env: dict, fds: tuple[int, int, int], fork: bool = True, python: str | None = None) -> Forked:
        """A worker with ``fds`` (stdin, log, record pipe): forked (``fork``, from a preloaded server)
        or a fresh interpreter (``python``, else this one)."""
        self.wait_ready()
        try:
            _send(self.sock, {"env": env, "fork": fork and self.preloaded and not python, "python": python}, fds)
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
            self.known.add(message["exit"])
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
