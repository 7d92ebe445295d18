"""Models that misbehave on purpose, for the sweep's fault-injection tests (user models:
``tests/data/faulty_models.py:<function>``). Each fault triggers at one batch size only, so the
tests can check what happens to the batch sizes before and after it."""

import ctypes
import os
import sys
import time

import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(self.conv(x).mean((2, 3)))


class _Fault(Tiny):
    def __init__(self, at, action):
        super().__init__()
        self.at, self.action = at, action

    def forward(self, x):
        if x.shape[0] == self.at:
            self.action(x)
        return super().forward(x)


def tiny():
    return Tiny()


def chatty():
    """Prints to stdout and stderr on every pass: must not disturb the results channel."""
    def talk(x):
        print('{"type": "cell", "batch_size": 1, "status": "ok"}')
        print("noise", file=sys.stderr)

    class Chatty(Tiny):
        def forward(self, x):
            talk(x)
            return super().forward(x)

    return Chatty()


def _abort(x):
    print("about to abort", flush=True)
    os.abort()


def aborts_at_4():
    return _Fault(4, _abort)


def _segfault(x):
    ctypes.string_at(0)


def segfaults_at_2():
    return _Fault(2, _segfault)


def _raise(x):
    raise ValueError("this model rejects batches of 2")


def raises_at_2():
    return _Fault(2, _raise)


def _hog(x):
    # 1.5 GB touched, then freed: above any small --max-memory
    block = torch.ones(375_000_000)
    block.sum()


def hogs_at_4():
    return _Fault(4, _hog)


def _hang(x):
    time.sleep(600)


def hangs_at_2():
    return _Fault(2, _hang)


def fails_to_build():
    raise RuntimeError("constructor failed on purpose")


class Slow(Tiny):
    def forward(self, x):
        time.sleep(0.02)
        return super().forward(x)


def slow():
    return Slow()


def slow2():
    return Slow()


def _long_pass(x):
    time.sleep(0.55)


def long_pass_at_2():
    """A pass of over half a second at batch size 2: its first pass is its whole warm-up."""
    return _Fault(2, _long_pass)


def _abort_in_a_later_process(x):
    # the first process to run a batch of 2 leaves its pid in the file named by
    # DNNBENCH_TEST_MARKER; any other process aborts there: a fault of a later round only
    marker = os.environ["DNNBENCH_TEST_MARKER"]
    if os.path.exists(marker):
        with open(marker) as f:
            if f.read() != str(os.getpid()):
                _abort(x)
        return
    with open(marker, "w") as f:
        f.write(str(os.getpid()))


def aborts_at_2_in_a_later_process():
    return _Fault(2, _abort_in_a_later_process)


class _Always(Tiny):
    """Runs ``action`` on every real forward pass (never while operations are counted on meta)."""

    def __init__(self, action):
        super().__init__()
        self.action = action

    def forward(self, x):
        if x.device.type != "meta":
            self.action(x)
        return super().forward(x)


def aborts_always():
    return _Always(_abort)


def hangs_on_real_input():
    return _Always(_hang)


def hangs_in_constructor():
    time.sleep(600)
    return Tiny()


def exits_at_2():
    return _Fault(2, lambda x: sys.exit(0))


def _kill_self(x):
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def killed_at_2():
    """SIGKILL from outside the sweep, with plenty of memory free: not an out-of-memory kill."""
    return _Fault(2, _kill_self)


def forks_a_lingering_child():
    """Forks a child that sleeps, holding every file the worker has open (the result pipe too), and
    leaves its pid in the file named by DNNBENCH_TEST_MARKER."""
    pid = os.fork()
    if pid == 0:
        time.sleep(600)
        os._exit(0)
    with open(os.environ["DNNBENCH_TEST_MARKER"], "w") as f:
        f.write(str(pid))
    return Tiny()


def raises_always():
    return _Always(_raise)


def tells_its_environment():
    """Fails to build, saying in its error what the worker runs with: its temporary folder, the
    intra-op threads, the thread variable and how many threads the process has (a fork copies one)."""
    import tempfile

    threads = len(os.listdir("/proc/self/task"))
    raise RuntimeError(f"tmp={tempfile.gettempdir()} torch_threads={torch.get_num_threads()} "
                       f"omp={os.environ.get('OMP_NUM_THREADS')} process_threads={threads} "
                       f"cuda_initialized={torch.cuda.is_initialized()}")


# ---- hostile files: what the one launcher and worker contract must contain ----------------------


def exits_in_constructor():
    """``exit(0)`` while being built: in the caller's process this would end it, silently."""
    sys.exit(0)


def aborts_in_constructor():
    os.abort()


def _kill_parent(x):
    import signal

    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(5)  # the parent-death signal ends us meanwhile


def kills_its_parent_at_2():
    """Kills the process that started the worker: that must never be the sweep."""
    return _Fault(2, _kill_parent)


def _daemon(x):
    """Double-forks a daemon in a session of its own (outside the worker's process group), leaving its
    pid in the file named by DNNBENCH_TEST_MARKER."""
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            with open(os.environ["DNNBENCH_TEST_MARKER"], "w") as f:
                f.write(str(os.getpid()))
            time.sleep(600)
        os._exit(0)
    time.sleep(0.5)


def starts_a_daemon_at_1():
    return _Fault(1, _daemon)


def _close_descriptors(x):
    os.closerange(3, 1024)  # the record pipe among them
    time.sleep(60)


def closes_its_descriptors_at_2():
    return _Fault(2, _close_descriptors)


class _Branchy(Tiny):
    def forward(self, x):
        y = self.conv(x)
        if y.mean() > 0:  # data-dependent control flow: an exporter (torch.export) cannot trace it
            y = y * 2
        return self.fc(y.mean((2, 3)))


def does_not_export():
    return _Branchy()
