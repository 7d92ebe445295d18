"""Model names as the library and the command line take them (one list, or one comma-separated
string; a preset added), each resolved to its registry entry."""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..text import names_of


def entries(names, zoo: str | None, input_size: int | None, weights=None) -> list:
    from . import get, preset

    wanted = names_of(names, "models")
    if zoo:
        wanted += preset(zoo)
    if not wanted:
        raise UserError("no models given: name some (resnet50 vgg-16) or pick a preset with --zoo canziani2016")
    if input_size is not None and (isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1):
        raise UserError(f"input_size must be a whole number of pixels, got {input_size!r}")
    return [get(name, input_size, weights) for name in dict.fromkeys(wanted)]


def absolute(spec: str) -> str:
    """A model file's path made absolute (``path/file.py:function``): the nodes' processes start elsewhere."""
    path, colon, function = spec.rpartition(":")
    if colon and path.endswith(".py") and Path(path).exists():
        return f"{Path(path).resolve()}:{function}"
    return spec
