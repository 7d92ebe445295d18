"""One sweep across the machines of a Ray cluster (``dnnbench run --cluster ADDRESS``), into one database.

- Every node chosen (all, or those named with ``--machines``) is probed first by a task pinned to it:
  its dnnbench and model libraries, and its machine. A node without them, or with another dnnbench
  version, is reported before anything is measured.
- A node's machine is the name in its Ray label ``dnnbench-machine`` (``ray start --labels
  '{"dnnbench-machine": "lab1"}'``), else its fingerprint's id, as a local sweep names it. Two nodes
  of one name are one machine: measured once, the other said.
- Each node gets one task, pinned to it (node affinity, never moved), that runs the ordinary sweep
  there (`node.stream`): its cells one after the other under that machine's measuring lock, in worker
  processes, exactly as locally. Its writes stream back and are made here, in this process's one
  database, the moment they arrive, under the node's machine.
- A node lost mid-sweep loses only its cell in progress; the others go on; the same command again
  resumes every machine where its cells stop.

Ray is imported only here, and only by ``run --cluster``.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field

from ..errors import UserError
from ..setup import Setup

LABEL = "dnnbench-machine"
PROBE_LIMIT_S = 120.0
INSTALL = "pip install 'dnnbench[cluster]'"


@dataclass
class Node:
    """One node of the cluster as the probe found it; ``error``: why it cannot measure."""

    node_id: str
    address: str
    machine: str | None = None
    host: str | None = None
    fingerprint: dict | None = None
    versions: dict = field(default_factory=dict)
    error: str | None = None

    def words(self) -> str:
        return f"node {self.address}" + (f" ({self.machine})" if self.machine else "")


@dataclass
class NodeOutcome:
    """How one machine's part of the sweep ended: ``complete``, ``lost``, ``failed`` or ``interrupted``."""

    machine: str
    state: str = "running"
    measured: int = 0
    failed: int = 0
    already: int = 0
    summary: str = ""
    error: str | None = None


def _ray():
    try:
        import ray
    except ImportError:
        raise UserError(f"--cluster runs on Ray, which is not installed: {INSTALL}") from None
    return ray


def connect(address: str) -> None:
    """Join the Ray cluster at ``address`` (``auto``: the one started on this machine)."""
    ray = _ray()
    if ray.is_initialized():
        return
    _reachable(address)
    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserError(f"cannot join the Ray cluster at {address} ({str(exc).splitlines()[0]}): start it with "
                        "`ray start --head` on one machine and `ray start --address HEAD:6379` on the others, then "
                        "pass --cluster HEAD:6379") from None


def _reachable(address: str) -> None:
    """Refuse at once an address where nothing listens: Ray itself retries such a one for minutes."""
    import socket

    host, colon, port = address.removeprefix("ray://").rpartition(":")
    if not colon or not port.isdigit():
        return  # "auto", or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise UserError(f"cannot join the Ray cluster at {address}: nothing answers there ({exc.strerror or exc}); "
                        "start it with `ray start --head` on one machine and `ray start --address HEAD:6379` on the "
                        "others, then pass --cluster HEAD:6379") from None


def _pinned(node_id: str, **options):
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    # num_cpus 0: the task only relays; the node's measuring lock, not Ray's CPU count, keeps one
    # measurement at a time there, and a node whose CPUs other work holds still takes it
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id, soft=False), "num_cpus": 0,
            "max_retries": 0, **options}


def nodes(wanted: list[str] | None = None) -> list[Node]:
    """The alive nodes (those whose machine name, host name or address is in ``wanted``, if given),
    each probed; a UserError naming the wanted ones that are not in the cluster."""
    ray = _ray()
    from . import node as node_

    alive = [n for n in ray.nodes() if n.get("Alive")]
    probe = ray.remote(node_.probe)
    found = []
    refs = {}
    for n in alive:
        item = Node(n["NodeID"], n.get("NodeManagerAddress", "?"), machine=(n.get("Labels") or {}).get(LABEL))
        refs[probe.options(**_pinned(n["NodeID"])).remote()] = item
        found.append(item)
    ready, pending = ray.wait(list(refs), num_returns=len(refs), timeout=PROBE_LIMIT_S)
    for ref in pending:
        refs[ref].error = f"did not answer the probe within {PROBE_LIMIT_S:g} s"
        ray.cancel(ref, force=True)
    for ref in ready:
        item = refs[ref]
        try:
            info = ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - ray wraps the node's error; its first line says it
            item.error = f"cannot run dnnbench there ({_first_line(exc)}): install it on that node ({INSTALL})"
            continue
        item.host, item.fingerprint, item.versions = info["host"], info["fingerprint"], info["versions"]
        item.machine = item.machine or info["machine_id"]
        if info["missing"]:
            item.error = f"lacks {', '.join(info['missing'])}: install them there ({INSTALL})"
    if wanted:
        chosen = [n for n in found if {n.machine, n.host, n.address, n.node_id} & set(wanted)]
        unknown = [w for w in wanted if not any(w in {n.machine, n.host, n.address, n.node_id} for n in found)]
        if unknown:
            have = ", ".join(sorted({str(n.machine) for n in found}))
            raise UserError(f"--machines: {', '.join(unknown)} not in the cluster (its machines: {have})")
        found = chosen
    return found


def check(found: list[Node], say) -> list[Node]:
    """The nodes that measure: one per machine, each with this dnnbench; a UserError naming every node
    that cannot, before anything is measured."""
    from .._version import __version__

    problems = []
    for n in found:
        if n.error is None and n.versions.get("dnnbench") != __version__:
            n.error = (f"has dnnbench {n.versions.get('dnnbench')}, this machine {__version__}: install "
                       f"dnnbench=={__version__} there")
        if n.error:
            problems.append(f"{n.words()}: {n.error}")
    if problems:
        raise UserError("the cluster cannot measure yet, nothing was measured: " + "; ".join(problems))
    kept: dict[str, Node] = {}
    for n in found:
        if n.machine in kept:
            say(f"{n.words()} is the same machine as node {kept[n.machine].address} (one fingerprint): measured "
                f"once; to measure both, label each: ray start --labels '{{\"{LABEL}\": \"NAME\"}}'")
        else:
            kept[n.machine] = n
    if not kept:
        raise UserError("the cluster has no alive node to measure on")
    return list(kept.values())


def sweep(store, machines: list[Node], job_for, on_line) -> dict[str, NodeOutcome]:
    """Run ``job_for(node)`` on every node at once, each pinned to its node, writing what streams back into
    ``store`` as it arrives; how each machine's part ended. Ctrl-C cancels every node's sweep (each
    records its run as interrupted, and what it sent is kept), then raises KeyboardInterrupt."""
    ray = _ray()
    from . import node as node_

    remote = ray.remote(node_.stream)
    inbox: queue.Queue = queue.Queue()
    outcomes = {n.machine: NodeOutcome(n.machine) for n in machines}
    generators = {}
    for n in machines:
        generators[n.machine] = remote.options(**_pinned(n.node_id, num_returns="streaming")).remote(job_for(n))

    def relay(machine: str, generator) -> None:
        try:
            for ref in generator:
                inbox.put((machine, ray.get(ref)))
        except Exception as exc:  # noqa: BLE001 - a node lost, its worker killed, a cancel: said as lost
            inbox.put((machine, {"kind": "lost", "text": _first_line(exc)}))
        finally:
            inbox.put((machine, None))

    threads = [threading.Thread(target=relay, args=item, daemon=True) for item in generators.items()]
    for t in threads:
        t.start()
    writer = _Writer(store)
    messages = _Messages(inbox, len(threads), outcomes, writer, on_line)
    try:
        messages.take()
    except KeyboardInterrupt:
        for generator in generators.values():
            ray.cancel(generator)
        messages.take(limit_s=30.0)  # what the cancelled nodes still send: their runs' ends
        for machine in outcomes:
            writer.finish_open(machine, "interrupted")
        raise
    for outcome in outcomes.values():
        if outcome.state == "running":
            outcome.state, outcome.error = "lost", outcome.error or "its sweep ended without a word"
        if outcome.state != "complete":
            writer.finish_open(outcome.machine, f"stopped: {outcome.state} ({outcome.error})")
    return outcomes


class _Messages:
    """The relays' queue, taken in this thread: each message applied, each ended stream counted."""

    def __init__(self, inbox: queue.Queue, streams: int, outcomes: dict, writer, on_line):
        self.inbox, self.open, self.outcomes, self.writer, self.on_line = inbox, streams, outcomes, writer, on_line

    def take(self, limit_s: float | None = None) -> None:
        """Until every stream has ended (or ``limit_s`` has passed)."""
        import time

        deadline = None if limit_s is None else time.monotonic() + limit_s
        while self.open and (deadline is None or time.monotonic() < deadline):
            try:
                machine, message = self.inbox.get(timeout=0.5)  # a timeout, so that Ctrl-C is seen
            except queue.Empty:
                continue
            if message is None:
                self.open -= 1
            else:
                _take(message, self.outcomes[machine], self.writer, self.on_line)


class _Writer:
    """Makes a node's store writes in this database, its run ids mapped to this file's."""

    def __init__(self, store):
        self.store = store
        self.runs: dict[tuple[str, int], int] = {}
        self.open: set[tuple[str, int]] = set()

    def finish_open(self, machine: str, outcome: str) -> None:
        """End the runs a lost node left open, saying why."""
        for key in sorted(k for k in self.open if k[0] == machine):
            self.store.finish_run(self.runs[key], outcome)
            self.open.discard(key)

    def apply(self, machine: str, message: dict) -> None:
        """Make a node's store write (`node.Forwarding`) here, its run id mapped to this file's."""
        from ..store import RUN_WRITES, WRITES

        op = message["op"]
        if op not in WRITES:
            raise ValueError(f"unknown store operation from a node: {op!r}")
        args = [Setup(**a["setup"]) if isinstance(a, dict) and set(a) == {"setup"} else a for a in message["args"]]
        kwargs = message.get("kwargs") or {}
        key = (machine, message.get("run_id"))
        if op == "start_run":
            self.runs[key] = self.store.start_run(*args, **kwargs)
            self.open.add(key)
            return
        if op in RUN_WRITES:
            args = [self.runs[key], *args]
        getattr(self.store, op)(*args, **kwargs)
        if op == "finish_run":
            self.open.discard(key)


def _take(message: dict, outcome: NodeOutcome, writer: _Writer, on_line) -> None:
    kind = message["kind"]
    machine = outcome.machine
    if kind == "store":
        writer.apply(machine, message)
    elif kind == "line":
        text = message["text"]
        on_line(text.replace("dnnbench run: ", f"dnnbench run: {machine}: ", 1) if text.startswith("dnnbench run: ")
                else f"dnnbench run: {machine}: {text}")
    elif kind == "done":
        outcome.state = "complete"
        outcome.measured, outcome.failed, outcome.already = message["measured"], message["failed"], message["already"]
        outcome.summary = message["summary"]
    elif kind in ("error", "died", "lost", "interrupted"):
        if outcome.state == "running":
            outcome.state = {"error": "failed", "interrupted": "interrupted"}.get(kind, "lost")
            outcome.error = message.get("text")


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if "Error" in line or "error" in line]
    return (useful[-1] if useful else lines[0] if lines else type(exc).__name__)[:300]


__all__ = ["LABEL", "Node", "NodeOutcome", "check", "connect", "nodes", "sweep"]


def measure(address: str, wanted: list[str] | None, models, zoo, input_size, weights, batch_sizes,
            asked: list[Setup], knobs: dict, db, progress: bool, argv: list[str], say) -> dict:
    """`dnnbench run --cluster`: the nodes checked, then one sweep per node, each streamed into ``db``;
    what it measured: ``cells`` (the stored cells asked for, on the machines measured), ``measured``,
    ``failed``, ``already`` (counts over the machines), ``summary`` (each machine's), ``lost`` (machines
    that did not complete, in words)."""
    import sys
    from pathlib import Path

    from ..export import rows
    from ..store import Store
    from ..text import names_of
    from ..zoo.names import absolute, entries as resolve

    if any(s.machine for s in asked):
        raise UserError("across a cluster each node's cells go under its own machine (its Ray label "
                        f"{LABEL}, else its fingerprint): leave out --machine")
    entries = resolve(models, zoo, input_size, weights)  # unknown names refused here, before the cluster
    names = [absolute(spec) for spec in names_of(models, "models")]  # a node resolves them again, elsewhere
    if db is None:
        raise UserError("a cluster's sweep needs a database to stream into: pass db (--db PATH)")
    connect(address)
    found = check(nodes(wanted), say)
    say(f"measuring on {len(found)} machine(s) of the cluster at {address}: "
        + ", ".join(f"{n.machine} ({n.address})" for n in found))
    with Store(db) as store:
        for n in found:  # a name that already names another machine here is refused before measuring
            store.register_machine(n.machine, n.fingerprint)
        held = store.cells(with_samples=True)

        def job_for(n) -> dict:
            return {"models": names, "zoo": zoo, "input_size": input_size,
                    "weights": str(Path(weights).resolve()) if weights else None, "batch_sizes": list(batch_sizes),
                    "setups": [s.on(n.machine).to_dict() for s in asked], "knobs": knobs, "argv": argv,
                    "progress": progress, "cells": [c for c in held if c["machine"] == n.machine]}

        def line(text: str) -> None:
            print(text, file=sys.stderr, flush=True)

        try:
            outcomes = sweep(store, found, job_for, line)
        except KeyboardInterrupt:
            raise KeyboardInterrupt(f"interrupted; every cell the machines sent is kept in {db}; the same call "
                                    "again resumes each machine") from None
        wanted_models = {(e.name, e.input_size) for e in entries}
        on = {n.machine for n in found}
        cells = [c for c in rows(store) if (c["model"], c["input_size"]) in wanted_models and c["machine"] in on
                 and c["batch_size"] in batch_sizes]
    lost = [f"{o.machine}: {o.state}: {o.error}" for o in outcomes.values() if o.state != "complete"]
    parts = [f"{o.machine}:\n{o.summary}" for o in outcomes.values() if o.state == "complete"]
    parts += [f"{text}; the same command again resumes it where it stopped" for text in lost]
    return {"cells": cells, "measured": sum(o.measured for o in outcomes.values()),
            "failed": sum(o.failed for o in outcomes.values()), "already": sum(o.already for o in outcomes.values()),
            "summary": "\n\n".join(parts), "lost": lost}
