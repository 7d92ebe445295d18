"""Progress bars: a widget in Jupyter, a bar on a terminal, nothing where no one would see a bar redrawn
(CI logs, pipes: the run then prints one line per cell instead)."""

from __future__ import annotations

import sys


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (IPython running under IPKernelApp)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except AttributeError:
        return False
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def bar(iterable=None, *, total: int | None = None, desc: str, unit: str, stream=None, enabled: bool = True, **kw):
    """A tqdm bar over ``iterable`` (or ``total`` steps). ``enabled`` False: never shown."""
    stream = stream or sys.stderr
    if enabled and in_notebook():
        try:
            from tqdm.notebook import tqdm as notebook_tqdm

            return notebook_tqdm(iterable, total=total, desc=desc, unit=unit, **kw)
        except ImportError:  # no ipywidgets: tqdm's notebook bar cannot draw; the text bar can
            pass
    from tqdm import tqdm

    # disable=None: shown on a terminal, not in a pipe or a log
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=stream, disable=None if enabled else True, **kw)
