"""Backends: the runtimes that execute a model, each behind the same seam.

    backend = get_backend("onnxruntime")             # UserError with the install hint if missing
    warning = check_combination("onnxruntime", "int8", "cpu")  # None, a warning, or UserError
    prepared = backend.prepare(model, example, precision="int8", device="cpu", threads=2, workdir=tmp)
    prepared.prepare_s                                # seconds: export, quantization, session
    y = prepared.forward(x)                           # one pass, finished when it returns
    prepared.close()

Importing this package costs nothing: each backend, and torch, is imported when asked for.
"""

from __future__ import annotations

import importlib
import logging

from ..errors import UserError
from ..setup import BACKENDS, PRECISIONS
from .base import Backend, Prepared, check_names
from .correctness import calibration_inputs, compare_outputs
_CLASSES = {"eager": "Eager", "compile": "Compile", "onnxruntime": "OnnxRuntime", "openvino": "OpenVino",
            "executorch": "ExecuTorch", "litert": "LiteRT",
            "coreml": "CoreML"}

__all__ = ["BACKENDS", "PRECISIONS", "Backend", "Prepared", "get_backend", "check_combination",
           "compare_outputs", "calibration_inputs"]


def get_backend(name: str) -> Backend:
    """The backend called ``name``, its packages imported; a UserError naming the choices or the
    pip command that installs what it needs."""
    if name not in BACKENDS:
        raise UserError(f"unknown backend {name!r}: use one of {', '.join(BACKENDS)}")
    # torchao (which compile, executorch, litert and coremltools import) registers an Enum as a pytree
    # constant, and torch 2.14 logs a deprecation warning for it: nothing the user can act on
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    module = importlib.import_module(f"{__name__}.{name}")
    backend = getattr(module, _CLASSES[name])()
    backend.require()
    return backend


def check_combination(backend: str, precision: str, device: str) -> str | None:
    """Whether ``backend`` runs ``precision`` on ``device`` here, before a sweep starts: None when it
    runs natively, a warning (str) when it runs but emulated and slow, a UserError with the reason
    (what the CPU, GPU or package lacks) when it cannot."""
    chosen = get_backend(backend)
    check_names(precision, device)
    return chosen.check(precision, device)
