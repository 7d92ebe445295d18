"""Interleaved pairs (`dnnbench run ... --versus FIELD=VALUE`): each model measured against another
model, or against itself in another setup, by two workers that take turns on the machine block by
block (the pair scenario, `worker.pair`), in ``rounds`` fresh pairs of processes. Each batch size of
each round is one row of the ``pairs`` table; `dnnbench compare` reads them as the comparison's own
paired measurements.

Why a scenario of its own: two cells measured one after the other in a sweep are seconds to minutes
apart, and this machine's speed moves by ±20% over that time, so a 5% change is lost in the rounds'
spread. Two sides that alternate every fifth of a second see the same machine.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field

from ..errors import UserError
from ..launch import Job, Launcher
from ..setup import Setup, fingerprint, machine_id
from ..worker import PAIR

# what the new side may change: the model, a field of the setup (one machine and device for both), or
# the interpreter, and with it every library (``python=PATH``: another environment's torch, onnxruntime)
VERSUS_FIELDS = ("model", "backend", "precision", "layout", "threads", "python")
FOLLOWER_GRACE_S = 5.0
# five rounds: the rounds are the ratio's repetitions, and with three a t-interval's 2 degrees of
# freedom made it ±3.4% wide (benchmarks/compare_gate.py), too wide to see 5%
VERSUS_DEFAULTS = {"rounds": 5, "target_ci": 0.01, "max_seconds_per_cell": 4.0}  # one side ended: the other is given this long to say why, then stopped


@dataclass(frozen=True)
class PairConfig:
    """What an interleaved run measures: the base ``setup``; ``versus``, the fields the new side
    changes (``model`` and any of `VERSUS_FIELDS`); ``batch_sizes``; ``rounds`` (fresh pairs of
    processes); each batch size's paired blocks stop when the ratio's 95% interval is within
    ``target_ci`` or after ``max_seconds_per_cell`` seconds a round; ``on_busy`` as the sweep's."""

    setup: Setup
    versus: dict = field(default_factory=dict)
    batch_sizes: tuple = (1,)
    rounds: int = VERSUS_DEFAULTS["rounds"]
    target_ci: float = VERSUS_DEFAULTS["target_ci"]
    max_seconds_per_cell: float = VERSUS_DEFAULTS["max_seconds_per_cell"]
    on_busy: str = "measure"

    def __post_init__(self):
        from .plan import ON_BUSY

        object.__setattr__(self, "setup", self.setup.resolved())
        object.__setattr__(self, "batch_sizes", tuple(self.batch_sizes))
        wrong = [f for f in self.versus if f not in VERSUS_FIELDS]
        if not self.versus or wrong:
            raise UserError(f"--versus changes one or more of {', '.join(VERSUS_FIELDS)} (e.g. --versus "
                            f"backend=onnxruntime or --versus model=resnet34), got {', '.join(wrong) or 'nothing'}")
        self.new_setup  # a value the setup cannot take is said now  # noqa: B018
        if "python" in self.versus:
            _check_python(self.versus["python"])
        if self.new_setup == self.setup and "model" not in self.versus and "python" not in self.versus:
            raise UserError(f"--versus {_words(self.versus)} is the base setup itself: name another value")
        if not self.batch_sizes or not all(isinstance(b, int) and b >= 1 for b in self.batch_sizes):
            raise UserError(f"batch sizes must be whole numbers of at least 1, got {list(self.batch_sizes)}")
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 1:
            raise UserError(f"rounds must be a whole number of at least 1, got {self.rounds!r}")
        if not 0 < self.target_ci < 1:
            raise UserError(f"target_ci must be a fraction above 0 and below 1, got {self.target_ci!r}")
        if not self.max_seconds_per_cell > 0:
            raise UserError(f"max_seconds_per_cell must be seconds above zero, got {self.max_seconds_per_cell!r}")
        if self.on_busy not in ON_BUSY:
            raise UserError(f"on_busy must be one of {', '.join(ON_BUSY)}, got {self.on_busy!r}")

    @property
    def new_setup(self) -> Setup:
        changed = {k: (int(v) if k == "threads" else v) for k, v in self.versus.items() if k not in ("model", "python")}
        try:
            return Setup(**{**self.setup.to_dict(), **changed}).resolved()
        except (TypeError, ValueError) as exc:
            raise UserError(f"--versus {_words(self.versus)}: {exc}") from None


def _check_python(path: str) -> None:
    """A UserError unless ``path`` is an interpreter this process can run."""
    found = shutil.which(path)
    if found is None or not os.path.isfile(found):
        raise UserError(f"--versus python={path}: no such interpreter; give the path of another environment's "
                        "python (e.g. /opt/torch-next/bin/python), with torch and torchvision installed there")


def _words(versus: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in versus.items())


def pair_sweep(store, config: PairConfig, entries, argv: list[str], say, launcher: Launcher | None = None) -> list[dict]:
    """Each model of ``entries`` against its new side, ``config.rounds`` times (every model once a
    round); every batch size's row stored in ``store`` and returned."""
    from ..measure.device import machine_environment, software
    from ..zoo import get
    from .lock import measuring
    from .sweep import _preload

    env = {**machine_environment(config.setup.device), **software()}  # the base side's libraries
    machine = config.setup.machine or machine_id(env)
    store.register_machine(machine, fingerprint(env))
    base, new = config.setup.on(machine), config.new_setup.on(machine)
    run_id = store.start_run(argv, {"scenario": "pair", "setups": [base.to_dict(), new.to_dict()],
                                    "versus": config.versus, "batch_sizes": list(config.batch_sizes),
                                    "rounds": config.rounds, "target_ci": config.target_ci,
                                    "max_seconds_per_cell": config.max_seconds_per_cell,
                                    "on_busy": config.on_busy}, env)
    sides = [(entry, get(config.versus["model"], entry.input_size) if "model" in config.versus else entry)
             for entry in entries]
    rows: list[dict] = []
    own = launcher is None
    launcher = launcher or Launcher(max(base.threads, new.threads))
    with measuring(store, run_id, say, launcher, own):
        for round_no in range(1, config.rounds + 1):
            for a, b in sides:
                rows += _pair_one(store, launcher, run_id, round_no, (a, base), (b, new), config, say,
                                  (_preload(a.name), _preload(b.name)))
    return rows


def _spec(entry, setup: Setup, side: int, baton: str, config: PairConfig) -> dict:
    return {"model": entry.name, "base": entry.base, "weights_file": entry.weights_file,
            "input_size": entry.input_size, "setup": setup.to_dict(), "side": side, "baton": baton,
            "batch_sizes": list(config.batch_sizes),
            "config": {"target_ci": config.target_ci, "max_seconds": config.max_seconds_per_cell},
            "busy": {"on_busy": config.on_busy, "wait_s": 30.0 if config.on_busy == "wait" else 0.0,
                     "retries": 0, "sweep": os.getpid()}}


def _pair_one(store, launcher, run_id, round_no, base_side, new_side, config: PairConfig, say, preloads) -> list[dict]:
    """One round of one model's pair: two workers, their rows stored as they come."""
    from ..measure.device import software
    from ..worker.pair import PartnerGone, baton_paths

    (a, base), (b, new) = base_side, new_side
    python = config.versus.get("python")
    row0 = {"run_id": run_id, "round": round_no, "model": a.name, "input_size": a.input_size, **base.to_dict(),
            "new_model": b.name, "new_input_size": b.input_size, "new_backend": new.backend,
            "new_precision": new.precision, "new_layout": new.layout, "new_threads": new.threads,
            "new_python": python}
    label = f"{a.name} ({base.runtime()}) against {b.name} ({new.runtime()}{f' in {python}' if python else ''})"
    say(f"round {round_no}: {label}, in turns")
    folder = tempfile.mkdtemp(prefix="dnnbench-pair-")
    for path in baton_paths(folder):
        os.mkfifo(path, 0o600)
    scratch = [tempfile.mkdtemp(prefix="dnnbench-worker-") for _ in range(2)]
    workers = []
    # each side's software, as the sides will report it (a side that fails before it does keeps these)
    here = software()
    rows, error, prepared = [], None, {"base_software": here, "new_software": {"executable": python} if python else here}
    try:
        workers.append(launcher.start(Job(PAIR, _spec(a, base, 0, folder, config), base.threads, scratch[0],
                                          preload=preloads[0])))
        workers.append(launcher.start(Job(PAIR, _spec(b, new, 1, folder, config), new.threads, scratch[1],
                                          preload=preloads[1], python=python)))
        for who, record in _records(workers, idle_limit=10 * config.max_seconds_per_cell + 300):
            kind = record.pop("type")
            if kind == "prepared":
                prepared.update({f"{side}_{k}": v for side in ("base", "new") for k, v in record[side].items()
                                 if k in ("max_rel_error", "top1_agreement")})
                prepared.update({k: record[k] for k in ("base_software", "new_software") if record.get(k)})
            elif kind == "pair":
                row = {**row0, **prepared, **record}
                store.put_pair(row)
                rows.append(row)
                say(f"  batch {record['batch_size']}: {_ratio_words(row)}")
            elif kind == "wait":
                say(f"  waiting up to {record['limit_s']:.0f} s for a quiet machine: {record['load']}")
            elif kind == "fatal" and (error is None or error.endswith(PartnerGone.WORDS)):
                # a side's own error over the other's "the other side ended", whichever came first
                error = f"{'base' if who == 0 else 'new'}: {record.get('error')}"
        if error is None:
            error = _silent_end(workers)
    except TimeoutError as exc:
        error = f"stopped: {exc}"
    finally:
        for w in workers:
            w.end()
            w.log.close()
        for path in (folder, *scratch):
            shutil.rmtree(path, ignore_errors=True)
    done = {r["batch_size"] for r in rows}
    for batch in config.batch_sizes:
        if batch not in done and error is not None:
            row = {**row0, **prepared, "batch_size": batch, "status": "error", "error": error}
            store.put_pair(row)
            rows.append(row)
    if error is not None:
        say(f"  {label}: {error}")
    return rows


def _silent_end(workers) -> str | None:
    """Why a pair ended where neither side said (a side that died before its first record: an
    interpreter that cannot import torch): the side that ended by itself, not the one stopped after it,
    with what its log says; None where both finished."""
    codes = [w.end() for w in workers]
    ended = [(side, w, rc) for side, (w, rc) in enumerate(zip(workers, codes, strict=True)) if not w.finished]
    for side, w, rc in sorted(ended, key=lambda e: bool(e[1].stopped))[:1]:
        return f"{'base' if side == 0 else 'new'}: the worker {w.exit_words(rc)}"
    return None


def _records(workers, idle_limit: float, tick: float = 0.2):
    """(side, record) from both workers as they come, until the leader's channel ends; a side whose
    channel ended while the other's is open gives the other ``FOLLOWER_GRACE_S`` to end by itself
    (it notices the closed pipe, and says so). `TimeoutError` when neither sent anything for
    ``idle_limit`` seconds."""
    quiet_since, ended_at = time.monotonic(), None
    while not all(w.closed for w in workers):
        got = False
        for side, w in enumerate(workers):
            for record in w.read(tick / 2) if not w.closed else ():
                got = True
                yield side, record
        now = time.monotonic()
        if got:
            quiet_since = now
        if any(w.closed for w in workers):
            ended_at = ended_at or now
            if now - ended_at > FOLLOWER_GRACE_S:
                return
        if now - quiet_since > idle_limit:
            raise TimeoutError(f"neither side sent anything for {idle_limit:,.0f} s")


def _ratio_words(row: dict) -> str:
    if row.get("status") != "ok":
        return f"{row.get('status')}: {row.get('error')}"
    return (f"new/base time {row['ratio']:.3f}x (95% {row['ratio_low']:.3f}x to {row['ratio_high']:.3f}x, "
            f"{row['pairs']} paired blocks, {row['base_median_s'] * 1e3:.3g} against {row['new_median_s'] * 1e3:.3g} ms)"
            + (", machine busy" if row.get("disturbed") else ""))


def interpreter_sides(rows: list[dict]) -> tuple[dict, dict]:
    """How the two sides of a ``python=...`` pair differ, as `compare` selections: the versions that
    differ between the two interpreters' reports (``{"torch": "2.14.1"}`` against ``{"torch": "2.15.0"}``),
    or, where none does (or a side never reported), their executables."""
    from ..measure.device import SOFTWARE

    for row in rows:
        base, new = row.get("base_software") or {}, row.get("new_software") or {}
        apart = [k for k in ("python", *SOFTWARE) if k in base and k in new and base[k] != new[k]]
        if apart:
            return {k: str(base[k]) for k in apart}, {k: str(new[k]) for k in apart}
    row = rows[0] if rows else {}
    return ({"executable": str((row.get("base_software") or {}).get("executable"))},
            {"executable": str((row.get("new_software") or {}).get("executable"))})


__all__ = ["PairConfig", "VERSUS_DEFAULTS", "VERSUS_FIELDS", "interpreter_sides", "pair_sweep"]
