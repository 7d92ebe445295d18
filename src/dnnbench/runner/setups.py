"""The setups a run asks for, and those this machine can run."""

from __future__ import annotations

from typing import Callable

from ..errors import UserError
from ..setup import Setup
from ..text import names_of


def asked(setup, backend, precision, device, threads, channels_last: bool, machine) -> list[Setup]:
    """The setups a run asks for: ``setup`` (one or a list), or every backend x precision given, on one
    device, thread count, machine and layout; the defaults are `Setup`'s."""
    axes = {"backend": backend, "precision": precision, "device": device, "threads": threads,
            "channels_last": channels_last or None, "machine": machine}
    if setup is not None:
        given = [k for k, v in axes.items() if v is not None]
        if given:
            raise UserError(f"give the setup either as setup= or as {', '.join(given)}=, not both")
        setups = [setup] if isinstance(setup, Setup) else list(setup)
        if not setups or not all(isinstance(s, Setup) for s in setups):
            raise UserError(f"setup must be a dnnbench.Setup or a list of them, got {setup!r}")
        return [s.check_name() for s in setups]
    base = Setup()
    backends, precisions = names_of(backend, "backend"), names_of(precision, "precision")
    for name, value, names in (("backend", backend, backends), ("precision", precision, precisions)):
        if value is not None and not names:
            raise UserError(f"{name} needs at least one name")
    backends, precisions = backends or [base.backend], precisions or [base.precision]
    layout = "channels_last" if channels_last else base.layout
    return [Setup(machine=machine, device=device or base.device, backend=b, precision=p, threads=threads,
                  layout=layout).check_name()
            for b in dict.fromkeys(backends) for p in dict.fromkeys(precisions)]


def runnable(setups: list[Setup], say: Callable[[str], None]) -> tuple[Setup, ...]:
    """The setups this machine can run, on a checked device, with threads filled in. A backend that is
    not installed is an error; a combination the device or backend cannot run is left out and said
    (an error when none is left); one that runs emulated is warned of."""
    from ..backends import check_combination, get_backend
    from ..measure.device import check_device

    _check_threads(setups)
    devices = {s.device: check_device(s.device) for s in setups}
    for backend in dict.fromkeys(s.backend for s in setups):
        get_backend(backend)  # unknown or not installed: the one-line error with the install command
    kept, refused = [], []
    for s in setups:
        s = Setup(**{**s.to_dict(), "device": devices[s.device]}).resolved()
        try:
            warning = check_combination(s.backend, s.precision, s.device)
        except UserError as exc:
            refused.append(str(exc))
            continue
        if warning:
            say(f"warning: {s.backend} {s.precision}: {warning}")
        kept.append(s)
    if not kept:
        raise UserError("; ".join(refused))
    for reason in refused:
        say(f"left out: {reason}")
    return tuple(dict.fromkeys(kept))


OVERSUBSCRIBED = 4  # threads per core beyond which a setup only measures the scheduler


def _check_threads(setups: list[Setup]) -> None:
    """Refuses a thread count this machine cannot run: above `OVERSUBSCRIBED` per core this process may
    use, every pass waits for cores (10000 threads made a squeezenet pass take 4.5 s)."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    for s in setups:
        if s.threads and s.threads > OVERSUBSCRIBED * cores:
            raise UserError(f"{s.threads} threads on {cores} cores: give at most {OVERSUBSCRIBED * cores} "
                            f"(--threads N; the default is one per core)")
