"""What every backend is: a check of what it can run here, and a preparation that turns a model into a
forward step, timed."""

from __future__ import annotations

import contextlib
import importlib
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import UserError
from ..setup import PRECISIONS


def require(module: str, extra: str):
    """``module`` imported, or a UserError with the pip command of the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:  # the package is there but one of its own needs is not
            raise UserError(f"{module} is installed but cannot be imported: {exc}") from exc
        raise UserError(f"{module} is not installed: pip install 'dnnbench[{extra}]'") from exc
    except ImportError as exc:  # e.g. built against another PyTorch: reinstalling with the extra fixes it
        raise UserError(f"{module} is installed but cannot be imported ({exc}): "
                        f"pip install --force-reinstall 'dnnbench[{extra}]'") from exc


def check_names(precision: str, device: str) -> None:
    """A UserError for a precision or device this package does not know."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    is_cuda(device)


def is_cuda(device: str) -> bool:
    """``cuda`` / ``cuda:N``; a UserError for anything but those and ``cpu``."""
    if device == "cpu":
        return False
    if device == "cuda" or device.startswith("cuda:"):
        return True
    raise UserError(f"unknown device {device!r}: use cpu, cuda or cuda:N")


@contextlib.contextmanager
def exporting(backend: str):
    """Within the block, torch.export's failure to trace the model (data-dependent control flow, an
    unsupported op) becomes one line that says the model does not convert for ``backend``."""
    try:
        yield
    except Exception as exc:
        if not type(exc).__module__.startswith(("torch._dynamo", "torch.fx", "torch._export", "torch.export")):
            raise
        first = str(exc).strip().splitlines()[0].split(". ")[0] if str(exc).strip() else ""
        raise UserError(f"the model does not convert for {backend}: torch.export cannot trace it "
                        f"({type(exc).__name__}: {first}); a model with data-dependent control flow needs "
                        "rewriting with torch.cond") from exc


class CannotRestart(Exception):
    """A setup that a deployment cannot start from its shipped files alone (why, in one line)."""


class Prepared:
    """A forward step ready to be timed.

    ``forward(x)``: one pass on ``x`` (the example's shape, any batch size); returns the logits as a
    tensor once the device has finished. ``prepare_s``: seconds the preparation took (export,
    compilation, quantization and calibration, session creation), part of the cold start.
    ``artifact_bytes``: the bytes of the files a deployment of this setup ships (``forward.shipped``,
    the paths the backend wrote: .onnx, .pte, .tflite, the saved weights for eager), None where the
    backend names none; a folder (.mlpackage) counts every file in it. ``untimed``: None, or why this
    setup converts here but cannot run (Core ML off macOS): ``forward`` then raises, and the worker
    stores the conversion without timing it. ``close()`` frees the sessions and removes the files the preparation wrote
    (and calls ``forward.close()`` where the step has one).
    """

    def __init__(self, forward: Callable, prepare_s: float, workdir: Path):
        self.forward = forward
        self.prepare_s = prepare_s
        self._workdir = workdir
        shipped = getattr(forward, "shipped", None)
        self.artifact_bytes = sum(_bytes(Path(p)) for p in shipped) if shipped else None
        self.files = [str(p) for p in shipped] if shipped else []
        self.untimed = getattr(forward, "untimed", None)

    def close(self) -> None:
        close = getattr(self.forward, "close", None)
        self.forward = _closed  # drops the last reference to the session or compiled code
        if close is not None:
            close()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _bytes(path: Path) -> int:
    """A file's bytes, or the sum of every file's in a folder."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def saved_weights(module, folder: Path) -> list[Path]:
    """``module``'s state dict written by torch.save into ``folder``: what a PyTorch deployment
    ships beside its code (a list, as ``forward.shipped`` holds)."""
    import torch

    path = folder / "weights.pt"
    torch.save(module.state_dict(), path)
    return [path]


def _closed(x):
    raise RuntimeError("forward() after close()")


class Backend:
    """One way to run a model. Subclasses set ``name`` and implement ``check`` and ``_prepare``."""

    name = ""
    needs: tuple[str, ...] = ()  # the modules every precision of it imports, from the extra ``extra``
    extra = ""

    def require(self) -> None:
        """Imports what every precision of this backend needs; a UserError with the install hint."""
        for module in self.needs:
            require(module, self.extra)

    def check(self, precision: str, device: str) -> str | None:
        """None when this backend runs ``precision`` on ``device`` natively; a warning when it runs
        but slowly (emulated); a UserError saying what is missing when it cannot run it."""
        raise NotImplementedError

    def prepare(self, model, example, precision: str = "fp32", device: str = "cpu", threads: int = 1,
                workdir: str | Path | None = None) -> Prepared:
        """``model`` (on ``device``) made ready to run ``example``'s shape at ``precision`` with
        ``threads`` intra-op threads. It may convert ``model`` in place (casts to bf16/fp16): pass one
        the caller no longer needs in fp32. Files go to a fresh folder inside ``workdir``."""
        check_names(precision, device)
        self.check(precision, device)
        model.eval()  # inference form: BatchNorm on its running statistics, no dropout
        folder = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=workdir))
        t0 = time.perf_counter()
        try:
            forward = self._prepare(model, example, precision, device, threads, folder)
            prepare_s = time.perf_counter() - t0
            weights = getattr(forward, "weights", None)  # a PyTorch step ships its weights: saved off the clock
            if weights is not None:
                forward.shipped = saved_weights(weights, folder)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return Prepared(forward, prepare_s, folder)

    def _prepare(self, model, example, precision: str, device: str, threads: int, folder: Path) -> Callable:
        raise NotImplementedError

    def restart(self, files: list[Path], shape: tuple[int, ...], precision: str, device: str, threads: int,
                cache: Path, architecture: Callable) -> Callable:
        """A step started from the files `prepare` shipped (``forward.shipped``), alone, as a fresh
        deployment process starts: for ``shape`` (the first batch size, the one the files hold), at
        ``precision``. ``cache``: a folder kept from one restart to the next, for the runtime's own
        cache (inductor's, OpenVINO's model cache); ``architecture()``: the model's module with random
        weights, for the backends that ship weights beside code. `CannotRestart` where the files
        alone do not make the step."""
        raise CannotRestart(f"the {self.name} backend does not start from its files alone")

    def refuse(self, precision: str, device: str, why: str) -> UserError:
        return UserError(f"the {self.name} backend cannot run {precision} on {device}: {why}")


def program_per_batch(folder: Path, suffix: str, write: Callable, start: Callable, shape: tuple[int, ...]) -> "PerShape":
    """The step of a runtime that ships one program file per batch size (.pte, .tflite):
    ``write(path, shape)`` converts the model into ``folder/model-bN.suffix``, ``start(path)`` makes
    its step; built for ``shape`` now, which is the file a deployment ships (``shipped``)."""

    def build(batch_shape):
        path = folder / f"model-b{batch_shape[0]}.{suffix}"
        write(path, batch_shape)
        return start(path)

    forward = PerShape(build)
    forward.ready(tuple(shape))
    forward.shipped = [folder / f"model-b{shape[0]}.{suffix}"]  # the first batch size's program
    return forward


class PerShape:
    """A step compiled for one input shape at a time, for backends that specialise code to the shape
    (torch.compile, OpenVINO): a new shape builds ``build(shape)`` once, after dropping the step of
    the last one, so that memory holds one compiled model, as a deployment at one batch size does.
    The worker visits batch sizes in ascending order, so each is built once, at its first call."""

    def __init__(self, build: Callable[[tuple[int, ...]], Callable], close: Callable[[], None] = lambda: None):
        self._build = build
        self._close = close
        self._shape: tuple[int, ...] | None = None
        self._step: Callable | None = None

    def ready(self, shape: tuple[int, ...]) -> None:
        if shape != self._shape:
            self._step = None  # freed before the next is built: the peak holds one of them
            self._step = self._build(shape)
            self._shape = shape

    def __call__(self, x):
        self.ready(tuple(x.shape))
        return self._step(x)

    def close(self) -> None:
        self._step = self._shape = None
        self._close()
