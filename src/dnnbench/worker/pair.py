"""The pair scenario: two workers, one for each side of a comparison (two models, or one model in two
setups), take turns on the machine, block by block, so that the two sides of every paired block saw
the same seconds of a machine whose speed drifts by 20% between minutes.

The two workers pass a baton through two named pipes in a folder the runner made (``spec["baton"]``):
while one times a block of passes the other sleeps in a blocking read, using no CPU. The leader (side
0, the base) holds the plan: it names the batch size, asks the follower (side 1, the new side) for
each of its blocks, and pairs them. Blocks run in the order A B B A A B B A ..., so that neither side
always goes first after a switch (the cache the other side left cold, the clock's ramp), and within
each pair the two blocks are adjacent in time. A block is a few passes (about ``BLOCK_S`` seconds, at
least ``MIN_BLOCK_PASSES``); its median is the block's figure, which a first pass slowed by the switch
does not move. A batch size ends once the 95% interval of the mean log ratio over its paired blocks
is within the target, or its time is spent.

Each side is a process of its own: its own memory, its own thread pool, and, with ``--versus
python=PATH``, its own interpreter (the libraries of another environment against this one's, the
measuring code the same). Each reports its interpreter's and libraries' versions. A follower that dies closes its pipe, which the
leader reads as the end of the pair, and the other way round.

Records (the leader's): ``stage``, ``prepared`` (each side's correctness against eager fp32, and
its software),
``wait``/``start`` (waiting for a quiet machine), ``pair`` (one batch size: both sides' block medians
and passes, the paired log ratios, what others used of the machine meanwhile), ``fatal``. The
follower sends only ``stage`` and ``fatal``.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time

from . import ChannelLost, one_line

TORCH = True
BLOCK_S = 0.2  # a block's length: short against the machine's drift, long against a switch's cost
MIN_BLOCK_PASSES, MAX_BLOCK_PASSES = 3, 1000
MIN_PAIRS = 6  # paired blocks before an interval is trusted to stop on
LEAD, FOLLOW = 0, 1


def run(spec: dict, emit) -> int:
    try:
        _pair(spec, emit)
    except ChannelLost:
        raise
    except PartnerGone as exc:
        emit("fatal", error=str(exc))
    except (Exception, SystemExit) as exc:
        emit("fatal", error=one_line(exc))
    return 0


class PartnerGone(Exception):
    """The other side's pipe closed: its worker ended (an error it reported to the runner, or a kill)."""

    WORDS = "the other side of the pair ended"

    def __init__(self):
        super().__init__(self.WORDS)


def baton_paths(folder: str) -> tuple[str, str]:
    """The two pipes of a pair: leader to follower, follower to leader."""
    return os.path.join(folder, "lead-to-follow"), os.path.join(folder, "follow-to-lead")


class Baton:
    """One side's end of the two pipes: ``send`` a message (a JSON line) and ``receive`` the other
    side's, blocking (asleep) until it comes. Both sides open the leader's pipe first, so neither waits
    on the other's second open."""

    def __init__(self, folder: str, side: int):
        to_follow, to_lead = baton_paths(folder)
        if side == LEAD:
            self.out = open(to_follow, "w", buffering=1)  # noqa: SIM115 - held for the worker's life
            self.inp = open(to_lead)  # noqa: SIM115
        else:
            self.inp = open(to_follow)  # noqa: SIM115
            self.out = open(to_lead, "w", buffering=1)  # noqa: SIM115

    def send(self, **message) -> None:
        try:
            self.out.write(json.dumps(message) + "\n")
            self.out.flush()
        except (BrokenPipeError, OSError):
            raise PartnerGone() from None

    def receive(self) -> dict:
        line = self.inp.readline()
        if not line:
            raise PartnerGone()
        return json.loads(line)


def _pair(spec: dict, emit) -> None:
    import torch

    from .latency import _prepare, built_model

    from ..measure.device import software

    setup, side = spec["setup"], int(spec["side"])
    model, make_input = built_model(spec, lambda name: emit("stage", stage=name))
    forward, _, correctness = _prepare(model, setup, make_input, spec["batch_sizes"][0])
    del model
    baton = Baton(spec["baton"], side)
    with torch.inference_mode():
        if side == LEAD:
            theirs = baton.receive()  # the follower is ready: its pid, its correctness, its libraries
            emit("prepared", base=correctness, new=theirs.get("correctness") or {},
                 base_software=software(), new_software=theirs.get("software"))
            _lead(spec, emit, baton, _Side(forward, make_input), int(theirs["pid"]))
        else:
            baton.send(pid=os.getpid(), correctness=correctness, software=software())
            _follow(baton, _Side(forward, make_input))


class _Side:
    """One side's model, at one batch size at a time: its input, and its blocks of timed passes."""

    def __init__(self, forward, make_input):
        self.forward, self.make_input = forward, make_input
        self.x, self.per_block = None, MIN_BLOCK_PASSES

    def ready(self, batch: int) -> float:
        """The input of ``batch`` images made, any per-shape preparation done, warmed up; returns
        the fastest of the first passes, from which a block's passes are counted."""
        self.x = self.make_input(batch)
        if hasattr(self.forward, "ready"):
            self.forward.ready(tuple(self.x.shape))
        first = []
        while len(first) < 3 or sum(first) < 0.2:
            t0 = time.perf_counter()
            self.forward(self.x)
            first.append(time.perf_counter() - t0)
            if first[-1] > 2.0:
                break
        fastest = min(first)
        self.per_block = max(MIN_BLOCK_PASSES, min(MAX_BLOCK_PASSES, round(BLOCK_S / max(fastest, 1e-6))))
        return fastest

    def block(self) -> list[float]:
        times = []
        for _ in range(self.per_block):
            t0 = time.perf_counter()
            self.forward(self.x)
            times.append(time.perf_counter() - t0)
        return times


def _follow(baton: Baton, side: _Side) -> None:
    """Do what the leader asks, one message at a time, until it says ``end`` (or its pipe closes)."""
    while True:
        ask = baton.receive()
        if ask.get("end"):
            return
        try:
            if "batch" in ask:
                baton.send(pass_s=side.ready(int(ask["batch"])))
            else:
                baton.send(times=side.block())
        except (Exception, SystemExit) as exc:  # this batch size's error, said to the leader
            from .latency import _is_oom

            baton.send(error=one_line(exc), oom=_is_oom(exc))


def _lead(spec: dict, emit, baton: Baton, side: _Side, partner: int) -> None:
    from .latency import BusyWatch, _is_oom

    config, setup = spec["config"], spec["setup"]
    watch = BusyWatch(spec.get("busy") or {}, int(setup["threads"]), setup["device"], emit)
    watch.own = (*watch.own, partner)  # the follower's turns are ours, not another process's
    target, budget = float(config["target_ci"]), float(config["max_seconds"])
    try:
        for batch in spec["batch_sizes"]:
            emit("start", batch_size=batch)
            _, quiet = watch.wait_for_quiet(batch_size=batch)
            if not quiet and watch.mode == "stop":
                emit("pair", batch_size=batch, status="error", error="the machine was busy (--on-busy stop)")
                return
            try:
                side.ready(batch)
                baton.send(batch=batch)
                theirs = baton.receive()
                if "error" in theirs:
                    raise SideFailed(f"new: {theirs['error']}", theirs.get("oom"))
                figures = _paired_blocks(side, baton, target, budget, watch)
            except PartnerGone:
                raise
            except (Exception, SystemExit) as exc:  # this batch size's error; an OOM ends the pair
                oom = exc.oom if isinstance(exc, SideFailed) else _is_oom(exc)
                error = str(exc) if isinstance(exc, SideFailed) else f"base: {one_line(exc)}"
                emit("pair", batch_size=batch, status="oom" if oom else "error", error=error)
                if oom:
                    return
                continue
            emit("pair", batch_size=batch, **figures)
    finally:
        try:
            baton.send(end=True)
        except PartnerGone:
            pass


class SideFailed(Exception):
    """The new side's pass failed (its error in the follower's words)."""

    def __init__(self, error: str, oom: bool | None = False):
        super().__init__(error)
        self.oom = bool(oom)


def _paired_blocks(side: _Side, baton: Baton, target: float, budget: float, watch) -> dict:
    """Blocks in turns, A B B A ..., until the mean log ratio (new over base) is known to ``target``
    (the 95% interval's half width, relative) or ``budget`` seconds pass; the figures of one batch size."""
    from ..measure import busy

    base_blocks, new_blocks, base_times, new_times = [], [], [], []

    def theirs() -> list[float]:
        baton.send(block=True)
        answer = baton.receive()
        if "error" in answer:
            raise SideFailed(f"new: {answer['error']}", answer.get("oom"))
        return answer["times"]

    window, t0 = busy.Window(watch.own), time.monotonic()
    while True:
        k = len(base_blocks)
        if k % 2 == 0:  # A then B, then B then A: each side goes first in half the pairs
            a, b = side.block(), theirs()
        else:
            b, a = theirs(), side.block()
        base_times += a
        new_times += b
        base_blocks.append(statistics.median(a))
        new_blocks.append(statistics.median(b))
        logs = [math.log(n / m) for m, n in zip(base_blocks, new_blocks, strict=True)]
        if len(logs) >= MIN_PAIRS and (_half_width(logs) <= math.log1p(target) or time.monotonic() - t0 >= budget):
            break
    load = window.end()
    mean = statistics.fmean(logs)
    half = _half_width(logs)
    fields = {"status": "ok", "error": None, "pairs": len(logs), "ratio": math.exp(mean),
              "ratio_low": math.exp(mean - half), "ratio_high": math.exp(mean + half),
              "base_median_s": statistics.median(base_times), "new_median_s": statistics.median(new_times),
              "base_blocks": base_blocks, "new_blocks": new_blocks, "base_per_block": len(a),
              "new_per_block": len(b), "wall_s": time.monotonic() - t0,
              "stop_reason": "precise" if half <= math.log1p(target) else "budget"}
    if load is not None:
        fields.update(contention=load.share, disturbed=int(load.disturbed(watch.cores)))
    return fields


def _half_width(logs: list[float]) -> float:
    """The 95% t-interval's half width of the mean of ``logs``."""
    from ..measure.latency import t975

    return t975(len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
