"""The package's layers (docs/architecture.md): no module imports one of a higher layer, and no
import, at module level or inside a function, closes a circle between packages. Read from the source
with `ast`, so a lazy import counts as much as a top-level one."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).parents[1] / "src" / "dnnbench"

# lowest first; a room may import rooms of its own layer or below
LAYERS = [
    {"errors", "_version", "units", "text", "figures", "progressbar"},
    {"zoo"},
    {"measure"},
    {"setup", "backends"},
    {"store"},
    {"worker"},  # the child side: every scenario a worker process runs
    {"launch"},  # the one seam that starts processes
    {"runner", "analysis", "export", "merging", "comparing"},
    {"evaluation", "profiling"},
    {"cluster", "report", "deciding"},  # deciding: recommend --measure
    {"api"},
    {"cli"},
    {"__init__", "__main__"},
]
RANK = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}


def _room(parts: list[str]) -> str:
    return parts[0] if parts else "__init__"


def imports() -> dict[str, set[str]]:
    """{room: the rooms it imports}, a room being a top-level module or package of dnnbench."""
    edges: dict[str, set[str]] = defaultdict(set)
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        package = parts[:-1]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        me = _room(parts)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package[:len(package) - node.level + 1]
                if node.module:
                    edges[me].add(_room(base + node.module.split(".")))
                else:
                    edges[me].update(_room(base + [a.name]) for a in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dnnbench"):
                edges[me].add(_room(node.module.split(".")[1:]))
            elif isinstance(node, ast.Import):
                edges[me].update(_room(a.name.split(".")[1:]) for a in node.names if a.name.startswith("dnnbench."))
        edges[me].discard(me)
    return edges


def test_every_room_has_a_layer():
    assert set(imports()) - set(RANK) == set()


def test_no_import_runs_up_the_layers():
    up = sorted(f"{a} -> {b}" for a, targets in imports().items() for b in targets if RANK[b] > RANK[a])
    assert up == []


def test_no_import_closes_a_circle():
    edges = imports()
    state: dict[str, int] = {}
    circles = []

    def visit(room: str, path: list[str]) -> None:
        state[room] = 1
        for nxt in sorted(edges.get(room, ())):
            if state.get(nxt) == 1:
                circles.append(" -> ".join([*path[path.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[room] = 2

    for room in sorted(edges):
        if room not in state:
            visit(room, [room])
    assert circles == []


def test_one_place_starts_processes():
    """Only the launcher's server creates processes (subprocess, os.fork, os.exec*, multiprocessing)."""
    starters = ("subprocess.Popen", "subprocess.run", "os.fork", "os.execve", "os.execv", "os.spawn",
                "multiprocessing")
    found = []
    for path in ROOT.rglob("*.py"):
        text = path.read_text()
        for needle in starters:
            if needle in text and path.relative_to(ROOT).parts[0] != "launch":
                found.append(f"{path.relative_to(ROOT)}: {needle}")
    assert found == []
