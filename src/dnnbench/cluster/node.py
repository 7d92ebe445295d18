"""What runs on each node of a cluster: the probe, and the node's sweep streamed back.

``stream(job)`` is the Ray task pinned to a node. It starts the node's sweep as a worker of the
launcher (the node scenario, `run`: a process of its own, so the sweep has a main thread for its
signals, and the Ray worker only relays), and yields every record that process sends. That process runs the ordinary
`runner.Sweep` into a private SQLite file seeded with the cells the driver's database already holds for
this machine, so it plans exactly what a local ``dnnbench run`` would; every write the sweep makes
there (`Forwarding`) is also sent back, where the driver makes the same write into its database. A
node that dies takes only its cell in progress with it: every cell before it has been sent.

No Ray import here: this module is what the nodes run, and the probe must work where Ray is the only
thing that installed anything.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import uuid

MESSAGE_LIMIT = 10 << 20  # a cell with every sample is kilobytes; anything near this is a broken line


def probe() -> dict:
    """This node's software and machine, for the driver's checks before anything is measured."""
    import platform
    import socket
    from importlib import metadata

    from .._version import __version__
    from ..measure.device import machine_environment
    from ..setup import fingerprint, machine_id

    versions = {"dnnbench": __version__, "python": platform.python_version()}
    missing = []
    for package in ("torch", "torchvision", "timm", "pretrainedmodels"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            missing.append(package)
    env = machine_environment("cpu")
    return {"versions": versions, "missing": missing, "host": socket.gethostname(),
            "fingerprint": fingerprint(env), "machine_id": machine_id(env)}


def stream(job: dict):
    """The Ray task: the node's sweep as a worker of the launcher (the worker contract, the scenario
    `run`), its messages yielded as they come. When the task is cancelled (the driver was interrupted)
    the sweep is interrupted as Ctrl-C would, and its last messages still come back; a sweep that dies
    is one last message saying how."""
    from ..launch import Job, Launcher
    from ..worker import NODE

    with Launcher() as launcher:
        worker = launcher.start(Job(NODE, job))
        try:
            for record in worker.records():
                kind = record.pop("type")
                if kind not in ("end", "stage"):
                    yield {"kind": kind, **record}
            rc = worker.poll()
            if not worker.finished or worker.status:
                rc = worker.end()
                yield {"kind": "died", "text": f"the sweep on this node ended: {worker.exit_words(rc)}"}
        finally:
            if worker.poll() is None:  # cancelled: interrupt it as Ctrl-C would, so it records its run as interrupted
                worker.interrupt(20.0)
            worker.close()


def _plain(value):
    """A store write's argument as JSON (a `Setup` as its fields, marked)."""
    return {"setup": value.to_dict()} if hasattr(value, "to_dict") and hasattr(value, "runtime") else value


class Forwarding:
    """Wraps a `Store`: its every write (`store.WRITES`) is made, then also sent to the driver, which
    makes the same write (`cluster._Writer`); reads pass through."""

    def __init__(self, store, emit):
        self.store, self.emit = store, emit

    def __getattr__(self, name):
        from ..store import RUN_WRITES, WRITES

        found = getattr(self.store, name)
        if name not in WRITES:
            return found

        def write(*args, **kwargs):
            if name == "start_run" and len(args) < 4:
                kwargs.setdefault("uid", uuid.uuid4().hex)  # the run's rounds are named alike in both files
            result = found(*args, **kwargs)
            message = {"kind": "store", "op": name, "args": [_plain(a) for a in args], "kwargs": kwargs}
            if name == "start_run":
                message["run_id"] = result
            elif name in RUN_WRITES:
                message["run_id"], message["args"] = args[0], message["args"][1:]
            self.emit(message)
            return result

        return write

    def close(self) -> None:
        self.store.close()


class _Lines:
    """A text stream whose every line is sent to the driver (the sweep's progress lines)."""

    def __init__(self, emit):
        self.emit, self.buffer = emit, ""

    def write(self, text: str) -> int:
        self.buffer += text
        *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            if line.strip():
                self.emit({"kind": "line", "text": line})
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


TORCH = False  # the node's process runs a sweep: no operator, and torch only as its workers need it
INTERRUPTIBLE = True  # a cancelled task interrupts it as Ctrl-C would: its run is recorded as interrupted


def run(job: dict, emit_record) -> int:
    """The node scenario: the ordinary sweep on this node, every message to the driver a record."""

    def emit(message: dict) -> None:
        message = dict(message)
        emit_record(message.pop("kind"), **message)

    try:
        return _sweep(job, emit)
    except KeyboardInterrupt:
        emit({"kind": "interrupted"})
        return 130
    except Exception as exc:  # noqa: BLE001 - said to the driver, then the process ends
        from ..errors import UserError

        emit({"kind": "error", "text": str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"})
        return 2


def _sweep(job: dict, emit) -> int:
    from ..runner.plan import RunConfig
    from ..runner.progress import say_to, summary
    from ..runner.setups import runnable
    from ..runner.sweep import sweep_and_read
    from ..setup import Setup
    from ..store import Store, insert_cells
    from ..zoo.names import entries as resolve

    lines = _Lines(emit)
    say = say_to(lines)
    entries = resolve(job["models"], job["zoo"], job["input_size"], job["weights"])
    batch_sizes = tuple(job["batch_sizes"])
    config = RunConfig(batch_sizes=batch_sizes, setups=runnable([Setup(**s) for s in job["setups"]], say),
                       **job["knobs"])
    with tempfile.TemporaryDirectory(prefix="dnnbench-node-") as scratch:
        own = Store(os.path.join(scratch, "node.db"))
        store = Forwarding(own, emit)
        try:
            own._transaction(lambda db: insert_cells(db, job["cells"]))
            result, ran, cells = sweep_and_read(store, config, entries, job["argv"], lines, job["progress"])
            stored = [m for m in result.measured if m.get("stored")]
            emit({"kind": "done", "measured": sum(1 for m in stored if m["status"] == "ok"),
                  "failed": sum(1 for m in stored if m["status"] != "ok"), "already": result.already,
                  "summary": summary(ran, cells, dataclasses.replace(result, run_id=None))})
        finally:
            store.close()
    return 0
