"""The plan: which cells (model x setup x batch size) to measure, as plain data that the sweep hands
to workers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from ..measure.latency import QUICK, TimingPolicy
from ..setup import Setup

RESULT_FD_ENV = "DNNBENCH_RESULT_FD"  # the pipe a worker writes its records to
ON_BUSY = ("wait", "measure", "stop")
IMPORT_LIMIT_S = 120.0  # importing torch and dnnbench on a busy machine: our code, not the model's


def above(value: int, limit: int) -> str:
    """``value`` bytes against a ``limit`` bytes, with as many digits as it takes to tell them apart."""
    from ..units import format_bytes

    a, b = format_bytes(value), format_bytes(limit)
    if a == b:
        a, b = f"{value:,} bytes", f"{limit:,} bytes"
    return f"{a}, above --max-memory {b}"


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides what a sweep measures and how; stored with the run."""

    batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    # every setup measured: one device and thread count, any backends, precisions and layouts; the
    # machine None is this machine (the sweep fills it in)
    setups: tuple[Setup, ...] = (Setup(),)
    target_ci: float = 0.02
    max_seconds_per_cell: float = 20.0
    max_memory: int | None = None  # bytes of resident set (CPU) the worker may reach
    quick: bool = False
    timeout_s: float | None = None  # hard limit per cell and per start-up stage; default: follows the model
    retry_failed: bool = False
    rounds: int = 1  # visits of each cell, each in a fresh worker process; the budget is shared among them
    on_busy: str = "wait"  # wait | measure | stop: what to do when other processes use the machine
    busy_wait_s: float = 30.0  # the longest wait for a quiet machine before one cell
    busy_retries: int = 1  # how often a cell whose timed passes were disturbed is timed again (wait only)

    def __post_init__(self):
        if not self.setups:
            raise ValueError("a run needs at least one setup")
        if len({(s.machine, s.device, s.threads) for s in self.setups}) > 1:
            raise ValueError("the setups of one run share one machine, device and thread count")
        if self.rounds < 1:
            raise ValueError(f"rounds must be at least 1, got {self.rounds}")
        if self.on_busy not in ON_BUSY:
            raise ValueError(f"on_busy must be one of {', '.join(ON_BUSY)}, got {self.on_busy!r}")

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
        """The timing policy of one round of a cell."""
        base = QUICK if self.quick else TimingPolicy()
        return TimingPolicy(**{**asdict(base), "target_ci": self.target_ci,
                               "max_seconds": self.max_seconds_per_cell / self.rounds})

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

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ModelJob:
    """One worker's work: one model in one setup, the batch sizes of it still missing, ascending."""

    model: str
    input_size: int
    setup: Setup
    batch_sizes: tuple[int, ...]
    config: RunConfig = field(repr=False)

    def key(self, batch_size: int) -> tuple:
        """The cell's key in the store (``setup.CELL_KEY``)."""
        return (self.model, self.input_size, *self.setup.key(), batch_size)

    def but(self, batch_sizes) -> ModelJob:
        return replace(self, batch_sizes=tuple(batch_sizes))

    def spec(self, static: bool = True, busy: dict | None = None) -> dict:
        """What the worker process receives (JSON). ``static``: count the static figures too."""
        return {"model": self.model, "input_size": self.input_size, "batch_sizes": list(self.batch_sizes),
                "setup": self.setup.as_dict(), "config": self.config.as_dict(), "policy": asdict(self.config.policy),
                "static": static, "busy": busy if busy is not None else self.config.busy_spec()}


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
            probe = ModelJob(entry.name, entry.input_size, setup, (), config)
            missing = tuple(b for b in sorted(config.batch_sizes) if counts.get(probe.key(b), 0) < round_no)
            if missing:
                jobs.append(probe.but(missing))
    return jobs
