"""The plan: which cells (model x batch size x device x backend x precision x threads) to measure,
as plain data that the sweep hands to workers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..measure.latency import QUICK, TimingPolicy

RESULT_FD_ENV = "DNNBENCH_RESULT_FD"  # the pipe a worker writes its records to


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides what a sweep measures and how; stored with the run."""

    batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    device: str = "cpu"
    backend: str = "eager"
    precision: str = "fp32"
    threads: int = 1
    target_ci: float = 0.02
    max_seconds_per_cell: float = 20.0
    max_memory: int | None = None  # bytes of resident set (CPU) the worker may reach
    quick: bool = False
    timeout_s: float | None = None  # hard limit per cell; default: 10 x the budget + 30 s
    startup_timeout_s: float = 900.0  # imports, build, save, load and the first pass
    retry_failed: bool = False
    rounds: int = 1  # visits of each cell, each in a fresh worker process; the budget is shared among them

    def __post_init__(self):
        if self.rounds < 1:
            raise ValueError(f"rounds must be at least 1, got {self.rounds}")

    @property
    def policy(self) -> TimingPolicy:
        """The timing policy of one round of a cell."""
        base = QUICK if self.quick else TimingPolicy()
        return TimingPolicy(**{**asdict(base), "target_ci": self.target_ci,
                               "max_seconds": self.max_seconds_per_cell / self.rounds})

    @property
    def cell_timeout_s(self) -> float:
        return self.timeout_s if self.timeout_s is not None else 10 * self.max_seconds_per_cell + 30

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ModelJob:
    """One worker's work: one model, the batch sizes of it still missing, ascending."""

    model: str
    input_size: int
    batch_sizes: tuple[int, ...]
    config: RunConfig = field(repr=False)

    def key(self, batch_size: int) -> tuple:
        c = self.config
        return (self.model, self.input_size, c.device, c.backend, c.precision, c.threads, batch_size)

    def spec(self) -> dict:
        """What the worker process receives (JSON)."""
        return {"model": self.model, "input_size": self.input_size, "batch_sizes": list(self.batch_sizes),
                "config": self.config.as_dict(), "policy": asdict(self.config.policy)}


def plan(entries, config: RunConfig, counts: dict[tuple, int], round_no: int = 1) -> list[ModelJob]:
    """Round ``round_no``'s jobs: one per model, with the batch sizes whose cells hold fewer rounds
    than that (``counts``: the rounds each stored cell holds, ``Store.round_counts``); models with
    nothing missing are left out."""
    jobs = []
    for entry in entries:
        probe = ModelJob(entry.name, entry.input_size, (), config)
        missing = tuple(b for b in sorted(config.batch_sizes) if counts.get(probe.key(b), 0) < round_no)
        if missing:
            jobs.append(ModelJob(entry.name, entry.input_size, missing, config))
    return jobs
