"""What runs on each node of a cluster: the probe, and the node's sweep streamed back.

``stream(job)`` is the Ray task pinned to a node. It starts ``python -m dnnbench.cluster.node``, the
node's sweep in a process of its own (so the sweep has a main thread for its signals, and the Ray
worker only relays), and yields every JSON line that process writes. That process runs the ordinary
`runner.Sweep` into a private SQLite file seeded with the cells the driver's database already holds for
this machine, so it plans exactly what a local ``dnnbench run`` would; every write the sweep makes
there (`Forwarding`) is also sent back, where the driver makes the same write into its database. A
node that dies takes only its cell in progress with it: every cell before it has been sent.

No Ray import here: this module is what the nodes run, and the probe must work where Ray is the only
thing that installed anything.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
import uuid

MESSAGE_LIMIT = 10 << 20  # a cell with every sample is kilobytes; anything near this is a broken line


def probe() -> dict:
    """This node's software and machine, for the driver's checks before anything is measured."""
    import platform
    import socket
    from importlib import metadata

    from .. import __version__
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
    """The Ray task: the node's sweep as a process of its own, its messages yielded as they come. When
    the task is cancelled (the driver was interrupted) the sweep is interrupted as Ctrl-C would, and its
    last messages still come back; a sweep that dies is one last message saying how."""
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "dnnbench.cluster.node"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
    try:
        proc.stdin.write(json.dumps(job).encode())
        proc.stdin.close()
        for line in proc.stdout:
            if line.strip():
                yield json.loads(line)
        rc = proc.wait()
        if rc != 0:
            from ..runner.sweep import describe_exit, log_tail

            yield {"kind": "died", "text": f"the sweep on this node ended by {describe_exit(rc)}: "
                                           f"{log_tail(log) or 'it printed nothing'}"}
    finally:
        if proc.poll() is None:  # cancelled: interrupt it as Ctrl-C would, so it records its run as interrupted
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _forwarding_store(path, emit):
    from ..store import Store

    class Forwarding(Store):
        """A Store whose every write is also sent to the driver, which makes the same write."""

        def start_run(self, argv, config, environment, uid=None):
            uid = uid or uuid.uuid4().hex
            run_id = super().start_run(argv, config, environment, uid)
            emit({"kind": "store", "op": "start_run", "run_id": run_id, "uid": uid,
                  "args": [argv, config, environment]})
            return run_id

        def finish_run(self, run_id, outcome):
            super().finish_run(run_id, outcome)
            emit({"kind": "store", "op": "finish_run", "run_id": run_id, "args": [outcome]})

        def put_cell(self, run_id, cell, rounds=1):
            stored = super().put_cell(run_id, cell, rounds)
            emit({"kind": "store", "op": "put_cell", "run_id": run_id, "args": [cell, rounds]})
            return stored

        def put_model(self, figures):
            super().put_model(figures)
            emit({"kind": "store", "op": "put_model", "args": [figures]})

        def register_machine(self, machine, print_):
            super().register_machine(machine, print_)
            emit({"kind": "store", "op": "register_machine", "args": [machine, print_]})

        def delete_failed(self, model, input_size, setup):
            deleted = super().delete_failed(model, input_size, setup)
            emit({"kind": "store", "op": "delete_failed", "args": [model, input_size, setup.to_dict()]})
            return deleted

    return Forwarding(path)


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


def main() -> int:
    from ..runner.worker import _die_with_parent

    _die_with_parent()  # the Ray worker relaying us died: so do we, and our workers with us
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # a stray print (a library's) goes to the log, not into the messages

    def emit(message: dict) -> None:
        out.write(json.dumps(message) + "\n")

    try:
        job = json.load(sys.stdin)
        return _sweep(job, emit)
    except KeyboardInterrupt:
        emit({"kind": "interrupted"})
        return 130
    except Exception as exc:  # noqa: BLE001 - said to the driver, then the process ends
        from ..errors import UserError

        emit({"kind": "error", "text": str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"})
        return 2


def _sweep(job: dict, emit) -> int:
    from .. import api
    from ..export import rows
    from ..runner.plan import RunConfig
    from ..runner.progress import RunPrinter, summary
    from ..runner.sweep import Sweep
    from ..setup import Setup
    from ..store import insert_cells

    lines = _Lines(emit)
    say = api._say_to(lines)
    entries = api._entries(job["models"], job["zoo"], job["input_size"], job["weights"])
    batch_sizes = tuple(job["batch_sizes"])
    config = RunConfig(batch_sizes=batch_sizes, setups=api._runnable([Setup(**s) for s in job["setups"]], say),
                       **job["knobs"])
    with tempfile.TemporaryDirectory(prefix="dnnbench-node-") as scratch:
        store = _forwarding_store(os.path.join(scratch, "node.db"), emit)
        try:
            store._transaction(lambda db: insert_cells(db, job["cells"]))
            printer = RunPrinter(config, lines, progress=job["progress"])
            sweep = Sweep(store, config, argv=job["argv"], on_event=printer.event)
            try:
                result = sweep.run(entries)
            finally:
                printer.close()
            wanted = {(e.name, e.input_size) for e in entries}
            cells = [c for c in rows(store) if (c["model"], c["input_size"]) in wanted
                     and Setup.of(c) in set(sweep.config.setups) and c["batch_size"] in batch_sizes]
            stored = [m for m in result.measured if m.get("stored")]
            emit({"kind": "done", "measured": sum(1 for m in stored if m["status"] == "ok"),
                  "failed": sum(1 for m in stored if m["status"] != "ok"), "already": result.already,
                  "summary": summary(sweep.config, cells, dataclasses.replace(result, run_id=None))})
        finally:
            store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
