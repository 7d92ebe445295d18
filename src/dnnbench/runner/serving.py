"""The server scenario's driver (`dnnbench run --scenario server`): each model, in each setup and
batching policy, served by a worker of its own (``worker/serving.py``) under the machine's measuring
lock, each point stored the moment it is measured. What a point is and how a peak is read from the
points: ``measure.serving`` and ``analysis.serving``."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

from ..errors import UserError
from ..launch import Job, Launcher
from ..measure.serving import Policy
from ..setup import Setup, fingerprint, machine_id
from ..units import format_rate
from ..worker import SERVING

SILENCE_LIMIT_S = 1200.0  # no record for this long (a backend preparing, or a hang): the worker is stopped


@dataclass(frozen=True)
class ServeConfig:
    """What a server sweep measures: ``setups`` (one device and thread count), ``policies``, the tail
    ``percentile`` (a fraction: 0.99) and its ``limit_s``; ``qps``: the rates to measure, or None to
    search the peak; ``max_seconds_per_point``; ``max_seconds_per_search``: the time a peak search may
    take, from the model's build to its last point (the last cut short to fit), after which it reports
    what it bracketed; ``on_busy`` as the sweep's."""

    setups: tuple
    policies: tuple
    percentile: float = 0.99
    limit_s: float = 0.1
    qps: tuple | None = None
    max_seconds_per_point: float = 10.0
    max_seconds_per_search: float = 120.0
    on_busy: str = "wait"

    def __post_init__(self):
        from .plan import ON_BUSY

        if not 0.5 <= self.percentile < 1:
            raise UserError(f"the percentile must be from 50 to below 100, got {100 * self.percentile:g}")
        if not self.limit_s > 0:
            raise UserError(f"the latency limit must be above zero, got {self.limit_s!r} s")
        if self.qps is not None and not all(isinstance(q, (int, float)) and q > 0 for q in self.qps):
            raise UserError(f"rates must be requests per second above zero, got {list(self.qps)}")
        for name in ("max_seconds_per_point", "max_seconds_per_search"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise UserError(f"{name} must be a number of seconds above zero, got {value!r}")
        if self.on_busy not in ON_BUSY:
            raise UserError(f"on_busy must be one of {', '.join(ON_BUSY)}, got {self.on_busy!r}")


def serve_sweep(store, config: ServeConfig, entries, argv: list[str], say, launcher: Launcher | None = None,
                since: float | None = None) -> list[dict]:
    """Serve each model of ``entries`` in each setup and policy of ``config``; every point stored in
    ``store`` and returned (a model that fails is one row with its ``status`` and ``error``). The first
    search's budget counts from ``since`` (a time.time(): when the user asked; now by default), each
    later one's from the end of the one before."""
    from ..measure.device import machine_environment
    from .lock import measuring
    from .sweep import _preload

    since = since or time.time()
    env = machine_environment(config.setups[0].device)
    machine = config.setups[0].machine or machine_id(env)
    store.register_machine(machine, fingerprint(env))
    setups = [s.on(machine) for s in config.setups]
    run_id = store.start_run(argv, {"scenario": "server", **_config_dict(config, setups)}, env)
    rows: list[dict] = []
    own = launcher is None
    launcher = launcher or Launcher(setups[0].threads)
    with measuring(store, run_id, say, launcher, own):
        for entry in entries:
            for setup in setups:
                for policy in config.policies:
                    rows += _serve_one(store, launcher, run_id, entry, setup, policy, config, say,
                                       _preload(entry.name), since)
                    since = time.time()
    return rows


def _config_dict(config: ServeConfig, setups: list[Setup]) -> dict:
    return {"setups": [s.to_dict() for s in setups], "policies": [asdict(p) for p in config.policies],
            "percentile": config.percentile, "limit_s": config.limit_s,
            "qps": list(config.qps) if config.qps else None,
            "max_seconds_per_point": config.max_seconds_per_point,
            "max_seconds_per_search": config.max_seconds_per_search, "on_busy": config.on_busy}


def _serve_one(store, launcher, run_id, entry, setup: Setup, policy: Policy, config: ServeConfig, say,
               preload: str, since: float) -> list[dict]:
    """One model in one setup and policy: its worker's points, stored as they come. Its search's budget
    counts from ``since`` (a time.time()): the machine's checks and the worker's start are inside it."""
    base = {"run_id": run_id, "model": entry.name, "input_size": entry.input_size, **setup.to_dict(),
            "max_batch": policy.max_batch, "max_wait_s": policy.max_wait_s, "instances": policy.instances}
    spec = {"model": entry.name, "base": entry.base, "weights_file": entry.weights_file,
            "input_size": entry.input_size, "setup": setup.to_dict(), "policy": asdict(policy),
            "percentile": config.percentile, "limit_s": config.limit_s,
            "qps": list(config.qps) if config.qps else None, "max_seconds_per_point": config.max_seconds_per_point,
            "max_seconds_per_search": config.max_seconds_per_search,
            "search_from": since,
            "busy": {"on_busy": config.on_busy, "wait_s": 30.0 if config.on_busy == "wait" else 0.0,
                     "retries": 1, "sweep": os.getpid()}}
    label = f"{entry.name} ({setup.runtime()}, {policy.words()})"
    say(f"serving {label}: {'the rates asked' if config.qps else 'searching the highest rate'} with p"
        f"{100 * config.percentile:g} under {config.limit_s * 1e3:.3g} ms")
    worker = launcher.start(Job(SERVING, spec, setup.threads, preload=preload))
    rows, service, error, apart = [], None, None, None
    try:
        for record in worker.records(idle_limit=SILENCE_LIMIT_S):
            kind = record.pop("type")
            if kind == "service":
                service = record["seconds"]
            elif kind == "placement":
                apart = record["load_apart"]
            elif kind == "point":
                row = {**base, **{k: record.get(k) for k in record}, "status": "ok", "service_s": service,
                       "load_apart": apart}
                store.put_serving(row)
                rows.append(row)
                say(f"  {format_rate(record['qps'])} requests/s: p{100 * config.percentile:g} "
                    f"{_ms(record.get('q_low_s'))} to {_ms(record.get('q_high_s'))} (95% bounds), {record['verdict']}"
                    + (f" (its queue, {100 * record['utilisation']:.0f}% busy, had not settled in its time)"
                       if record.get("unsettled") and record.get("utilisation") else "")
                    + (", overloaded" if record.get("overloaded") else "")
                    + (", machine busy" if record.get("disturbed") else ""))
            elif kind == "peak":
                say(f"  peak: {_peak_words(record, config)}")
            elif kind == "wait":
                say(f"  waiting up to {record['limit_s']:.0f} s for a quiet machine: {record['load']}")
            elif kind == "again":
                say(f"  {format_rate(record['qps'])} requests/s: other processes took "
                    f"{100 * (record.get('contention') or 0):.0f}% of the cores it needed; served again")
            elif kind in ("fatal", "busy"):
                error = record.get("error") or "the machine was busy (--on-busy stop)"
    except TimeoutError as exc:
        error = f"stopped: {exc}"
    finally:
        rc = worker.end()
        worker.log.close()
    if error is None and not worker.finished:
        error = f"the worker {worker.exit_words(rc)}"
    if error is not None:
        row = {**base, "status": "error", "error": error, "service_s": service}
        store.put_serving(row)
        rows.append(row)
        say(f"  {label}: {error}")
    return rows


def _ms(seconds) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.3g} ms"


def _peak_words(record: dict, config: ServeConfig) -> str:
    if record.get("reason") and record.get("points") == 0:
        return f"no rate can meet the limit: {record['reason']}"
    if record.get("reason"):
        bracket = (f"{format_rate(record['passed'])} requests/s met it" if record.get("passed") is not None
                   else "no rate tried met it")
        if record.get("failed") is not None:
            bracket += f", {format_rate(record['failed'])} was not shown to"
        return f"{bracket}; {record['reason']} ({record['points']} points)"
    if record.get("passed") is None:
        return "no rate tried met the limit"
    text = f"{format_rate(record['passed'])} requests/s met it"
    if record.get("failed") is not None:
        text += f", {format_rate(record['failed'])} was not shown to"
    return text + _confirmation_words(record) + f" ({record['points']} points)"


def _confirmation_words(record: dict) -> str:
    """What serving the peak again for the search's time left showed (nothing where it had no budget)."""
    if "confirmed" not in record:
        return ""
    if not record.get("confirming"):
        return "; not served again to confirm it (too little of the search's time was left)"
    if record["confirmed"] is not None and record["confirmed"] == record["passed"]:
        return "; it held when served again for the search's time left"
    return "; served again to confirm it, no rate held over the search's time left (the peak is a short point's)"


__all__ = ["ServeConfig", "serve_sweep"]
