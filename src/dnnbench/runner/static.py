"""Static figures of a user's model file, counted in a worker (`dnnbench inspect`)."""

from __future__ import annotations

from ..errors import UserError
from ..launch import IMPORT_LIMIT_S, Job, Launcher
from ..worker import STATIC

LIMIT_S = IMPORT_LIMIT_S + 120.0  # imports, then building on the meta device: seconds, not minutes


def counted_apart(entry, launcher: Launcher):
    """``entry``'s `StaticFigures`, counted by a fresh worker of ``launcher``; `UserError` naming how it
    failed (an exception, an exit, a signal, a hang past LIMIT_S)."""
    from ..measure.static import StaticFigures

    worker = launcher.start(Job(STATIC, {"model": entry.name, "input_size": entry.input_size}))
    found, error = None, None
    try:
        for record in worker.records(idle_limit=LIMIT_S):
            if record["type"] == "static":
                record.pop("type")
                found = StaticFigures(**record)
            elif record["type"] in ("error", "fatal"):
                error = record.get("message") or record.get("error")
    except TimeoutError as exc:
        error = f"model {entry.name!r}: building it to count its operations {exc}; stopped (a constructor that hangs?)"
    finally:
        rc = worker.end()
    try:
        if found is not None:
            return found
        raise UserError(error or f"model {entry.name!r}: the process building it ended ({worker.exit_words(rc)}) "
                                 "before its figures were counted")
    finally:
        worker.log.close()
