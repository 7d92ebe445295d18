"""The command line as a user runs it: `python -m dnnbench ARGS` in a process of its own, its output
captured. The one helper of the tests that run the CLI (tests/ is on the test path)."""

from __future__ import annotations

import subprocess
import sys

COMMAND = [sys.executable, "-m", "dnnbench"]


def cli(*args, cwd=None, timeout: float = 600, user: str | None = None, **kw) -> subprocess.CompletedProcess:
    """Run ``dnnbench ARGS`` to its end; ``user``: as that ordinary user (root may write anywhere)."""
    cmd = [*COMMAND, *map(str, args)]
    if user:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    kw.setdefault("check", False)
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout, **kw)


def start(*args, **popen) -> subprocess.Popen:
    """Start ``dnnbench ARGS`` and return at once (its output on one pipe), for tests that signal it."""
    return subprocess.Popen([*COMMAND, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **popen)
