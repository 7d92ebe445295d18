"""The plan: which cells (model x setup x batch size) to measure, as plain data that the sweep hands
to workers."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from ..errors import UserError
from ..measure.latency import QUICK, TimingPolicy
from ..setup import Setup
from ..units import above  # noqa: F401 - the sweep words its memory limit with it

ON_BUSY = ("wait", "measure", "stop")


# Below ±0.1% the interval is narrower than the timer's and the machine's own jitter: the cell would
# never converge and always spend its whole budget.
MIN_TARGET_CI = 0.001
# What a run does when not told: one set of defaults, shared by `dnnbench run` and `dnnbench.run()`.
# quick: a coarse answer fast (±5%, 3 s a cell, in 2 short rounds whose intervals take the drift pooled
# over the run's cells); else ±2%, 20 s a cell, in 3 rounds.
DEFAULTS = {"target_ci": 0.02, "max_seconds_per_cell": 20.0, "rounds": 3}
QUICK_DEFAULTS = {"target_ci": QUICK.target_ci, "max_seconds_per_cell": QUICK.max_seconds, "rounds": 2}
# a quick cell's windows together, when it has rounds: two of 0.4 s, so that two rounds (two warm-ups
# in two processes) take no longer than the one window of at least 1 s that quick mode took before
QUICK_ROUNDS_MIN_SECONDS = 0.8
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
MAX_BATCH = 65536


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides what a sweep measures and how; stored with the run.

    ``batch_sizes``: images per forward pass. ``setups``: every setup measured (one device and thread
    count, any backends, precisions and layouts; machine None is this machine, threads None the cores
    this process may use). ``target_ci``: stop a cell once the 95% interval of its median is within this
    fraction of it. ``max_seconds_per_cell``: seconds of timed passes per cell, shared among its
    ``rounds`` (visits, each in a fresh worker process). ``max_memory``: bytes of resident set a worker
    may reach before its cell is recorded ``oom``. ``timeout_s``: a hard limit per cell and start-up
    stage, seconds (None: one that follows the model). ``on_busy``: ``wait``, ``measure`` or ``stop``.
    Left None, ``target_ci``, ``max_seconds_per_cell`` and ``rounds`` take `DEFAULTS`, or
    `QUICK_DEFAULTS` with ``quick``. Bad values raise `UserError`."""

    batch_sizes: tuple[int, ...] = BATCH_SIZES
    setups: tuple[Setup, ...] = (Setup(),)
    target_ci: float | None = None
    max_seconds_per_cell: float | None = None
    max_memory: int | None = None
    quick: bool = False
    timeout_s: float | None = None
    retry_failed: bool = False
    rounds: int | None = None
    on_busy: str = "wait"  # wait | measure | stop: what to do when other processes use the machine
    busy_wait_s: float = 30.0  # the longest wait for a quiet machine before one cell
    busy_retries: int = 1  # how often a cell whose timed passes were disturbed is timed again (wait only)
    # passes a cell takes at least, over all its rounds (None: the 6 an interval needs); the multi-stream
    # scenario asks 299, the fewest that bound a p99
    min_samples: int | None = None

    def __post_init__(self):
        for name, value in (QUICK_DEFAULTS if self.quick else DEFAULTS).items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        object.__setattr__(self, "batch_sizes", tuple(self.batch_sizes))
        object.__setattr__(self, "setups", tuple(s.resolved() for s in self.setups))
        self._check()

    def _check(self) -> None:
        if not self.setups:
            raise UserError("a run needs at least one setup")
        if len({(s.machine, s.device, s.threads) for s in self.setups}) > 1:
            raise UserError("the setups of one run share one machine, device and thread count: run the others "
                            "separately")
        if not self.batch_sizes or not all(_whole(b) for b in self.batch_sizes):
            raise UserError(f"batch sizes must be whole numbers of at least 1, got {list(self.batch_sizes)}")
        if max(self.batch_sizes) > MAX_BATCH:
            raise UserError(f"batch size {max(self.batch_sizes)} is above {MAX_BATCH} (a batch of {MAX_BATCH} "
                            "224-pixel images is 39 GB of input): give smaller --batch-sizes")
        if not _whole(self.rounds):
            raise UserError(f"rounds must be a whole number of at least 1, got {self.rounds!r}")
        if self.on_busy not in ON_BUSY:
            raise UserError(f"on_busy must be one of {', '.join(ON_BUSY)}, got {self.on_busy!r}")
        if not _number(self.target_ci) or not MIN_TARGET_CI <= self.target_ci < 1:
            raise UserError(f"target_ci must be a fraction from {MIN_TARGET_CI} (±0.1%, the finest timing noise "
                            f"allows) to below 1, e.g. 0.02 for ±2%, got {self.target_ci!r}")
        for name in ("max_seconds_per_cell", "timeout_s"):
            value = getattr(self, name)
            if value is not None and not _number(value):
                raise UserError(f"{name} must be a number of seconds above zero, got {value!r}")
        if self.min_samples is not None and not _whole(self.min_samples):
            raise UserError(f"min_samples must be a whole number of passes of at least 1, got {self.min_samples!r}")
        if self.max_memory is not None and not _whole(self.max_memory):
            raise UserError(f"max_memory must be a whole number of bytes above zero (or a size such as '4GB'), "
                            f"got {self.max_memory!r}")

    @property
    def device(self) -> str:
        return self.setups[0].device

    @property
    def threads(self) -> int:
        return self.setups[0].threads

    def on(self, machine: str) -> RunConfig:
        """This config with its setups on ``machine``."""
        return replace(self, setups=tuple(s.on(machine) for s in self.setups))

    @property
    def policy(self) -> TimingPolicy:
        """The timing policy of one round of a cell. Quick rounds share the quick window's least seconds,
        and each aims at the target widened by sqrt(rounds) (their pooled samples narrow it again): the
        drift between them, not their windows, sets a quick cell's interval."""
        base = QUICK if self.quick else TimingPolicy()
        least = max(base.min_samples, math.ceil((self.min_samples or 0) / self.rounds))
        shortest, target = base.min_seconds, self.target_ci
        if self.quick and self.rounds > 1:
            # the run's drift between the windows, not each window's length, covers the wandering of a
            # shared host's speed; a window of 1 s alone was needed when one window was all there was.
            # The 6 passes an interval needs are shared too (at least 3 a round): the cell's interval
            # comes from its rounds pooled, and 6 passes a round made a slow model's quick cell 1.7x longer
            shortest, target = QUICK_ROUNDS_MIN_SECONDS / self.rounds, min(0.5, target * math.sqrt(self.rounds))
            least = max(3, math.ceil(base.min_samples / self.rounds), math.ceil((self.min_samples or 0) / self.rounds))
        return TimingPolicy(**{**asdict(base), "target_ci": target, "min_samples": least,
                               "min_seconds": shortest, "max_seconds": self.max_seconds_per_cell / self.rounds})

    @property
    def cell_timeout_s(self) -> float:
        """The limit of one cell, and of each start-up stage (build, load, first pass), before any
        pass was timed: ``--timeout``, else 10 x the budget + 30 s."""
        return self.timeout_s if self.timeout_s is not None else 10 * self.max_seconds_per_cell + 30

    def cell_limit_s(self, pass_s: float | None) -> float:
        """The limit of one cell once one pass of it took ``pass_s`` seconds. ``--timeout`` is a hard
        limit; the default grows with the model, to three times what the cell should cost (its
        warm-up, the samples an interval needs, the budget, and a second attempt if the machine was
        busy), so that a slow model on a slow machine gets coarse figures rather than a timeout."""
        if self.timeout_s is not None or not pass_s:
            return self.cell_timeout_s
        attempts = 1 + (self.busy_retries if self.on_busy == "wait" else 0)
        policy = self.policy
        expected = attempts * (policy.max_seconds + pass_s * (policy.min_samples + 8))
        return max(self.cell_timeout_s, 3 * expected)

    def busy_spec(self) -> dict:
        return {"on_busy": self.on_busy, "wait_s": self.busy_wait_s, "retries": self.busy_retries}

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ModelJob:
    """One worker's work: one model in one setup, the batch sizes of it still missing, ascending."""

    model: str
    input_size: int
    setup: Setup
    batch_sizes: tuple[int, ...]
    config: RunConfig = field(repr=False)
    base: str | None = None  # with the user's weights: the registry name, and the file (``ModelEntry``)
    weights_file: str | None = None

    def key(self, batch_size: int) -> tuple:
        """The cell's key in the store (``setup.CELL_KEY``)."""
        return (self.model, self.input_size, *self.setup.key(), batch_size)

    def but(self, batch_sizes) -> ModelJob:
        return replace(self, batch_sizes=tuple(batch_sizes))

    def spec(self, static: bool = True, busy: dict | None = None, peaks_known=()) -> dict:
        """What the worker process receives (JSON). ``static``: count the static figures too.
        ``peaks_known``: batch sizes whose memory peak an earlier round stored (not measured again)."""
        return {"model": self.model, "input_size": self.input_size, "batch_sizes": list(self.batch_sizes),
                "base": self.base, "weights_file": self.weights_file,
                "setup": self.setup.to_dict(), "config": self.config.to_dict(), "policy": asdict(self.config.policy),
                "static": static, "busy": busy if busy is not None else self.config.busy_spec(),
                "peaks_known": sorted(peaks_known)}


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")


def keys(entries, config: RunConfig) -> list[tuple]:
    """The keys of every cell the run asks for."""
    return [ModelJob(e.name, e.input_size, s, (), config).key(b)
            for e in entries for s in config.setups for b in config.batch_sizes]


def plan(entries, config: RunConfig, counts: dict[tuple, int], round_no: int = 1) -> list[ModelJob]:
    """Round ``round_no``'s jobs: one per model and setup, with the batch sizes whose cells hold fewer
    rounds than that (``counts``: the rounds each stored cell holds, ``Store.round_counts``); jobs with
    nothing missing are left out."""
    jobs = []
    for entry in entries:
        for setup in config.setups:
            probe = ModelJob(entry.name, entry.input_size, setup, (), config, entry.base, entry.weights_file)
            missing = tuple(b for b in sorted(config.batch_sizes) if counts.get(probe.key(b), 0) < round_no)
            if missing:
                jobs.append(probe.but(missing))
    return jobs
