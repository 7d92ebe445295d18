"""The static scenario (`dnnbench inspect` of a user's model file): the model built on the meta
device and its operations counted in a worker, so that a file that exits, aborts or hangs is that
model's error, never the end of the caller's process."""

from __future__ import annotations

TORCH = True


def run(spec: dict, emit) -> int:
    from ..errors import UserError
    from ..measure.static import static_figures
    from ..zoo import get

    try:
        emit("static", **static_figures(get(spec["model"], spec.get("input_size"))).to_dict())
    except UserError as exc:
        emit("error", message=str(exc))
    except (Exception, SystemExit) as exc:
        from . import one_line

        emit("error", message=f"model {spec['model']!r} failed to build or run: {one_line(exc)}")
    return 0
