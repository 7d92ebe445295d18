"""`dnnbench compare`: the same cells measured twice, side by side, each change with its interval and
a verdict at a margin (the statistics are `analysis.compare`).

A side is a database and a selection in it (``backend=onnxruntime``, ``machine=laptop``,
``model=resnet18``, ``run=3``, or a library version the run recorded, ``torch=2.14``). The fields two
selections name are what differs between the sides; every other field of a cell's key must match for
two cells to be compared. Both databases are only read.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UserError
from .setup import CELL_KEY, Setup

# what a selection may name beyond the cell's key: the run that last measured the cell
RUN_FIELD = "run"


def parse_where(text: str | dict | None, what: str) -> dict[str, str]:
    """``"backend=eager,precision=fp32"`` (or a dict) as {field: value}."""
    if text is None:
        return {}
    if isinstance(text, dict):
        return {str(k): str(v) for k, v in text.items()}
    out = {}
    for part in (p.strip() for p in str(text).split(",") if p.strip()):
        field, sep, value = part.partition("=")
        if not sep or not field.strip() or not value.strip():
            raise UserError(f"{what}: {part!r} is not FIELD=VALUE; e.g. backend=onnxruntime or torch=2.14")
        out[field.strip()] = value.strip()
    return out


def _version_matches(recorded, wanted: str) -> bool:
    """A recorded value equals the one asked for, or starts with it up to a separator (2.14 matches
    2.14.1+cu130)."""
    text = str(recorded)
    return text == wanted or any(text.startswith(wanted + sep) for sep in ".+-_ ")


def select(cells: list[dict], runs: list[dict], where: dict[str, str], what: str) -> list[dict]:
    """The cells a selection keeps: key fields by value, ``run`` by id, any other field by the value the
    cell's run recorded in its environment (a library's version, the host name), or, for a side of an
    interleaved pair, the versions its own interpreter reported (``software``)."""
    environments = {r["run_id"]: r.get("environment") or {} for r in runs}
    recorded = {k for env in [*environments.values(), *(c.get("software") or {} for c in cells)]
                for k, v in env.items() if isinstance(v, (str, int, float))}
    for field in where:
        if field not in CELL_KEY and field != RUN_FIELD and field not in recorded:
            known = ", ".join([*CELL_KEY, RUN_FIELD, *sorted(recorded)][:40])
            raise UserError(f"{what}: no field {field!r} in these measurements; one of {known}")

    def keeps(cell: dict) -> bool:
        for field, value in where.items():
            if field in CELL_KEY:
                if str(cell.get(field)) != value:
                    return False
            elif field == RUN_FIELD:
                if str(cell.get("run_id")) != value:
                    return False
            else:
                env = {**environments.get(cell.get("run_id"), {}), **(cell.get("software") or {})}
                if env.get(field) is None or not _version_matches(env[field], value):
                    return False
        return True

    return [c for c in cells if keeps(c)]


@dataclass
class Sides:
    """The cells of the two sides, paired: ``pairs`` of (base cell, new cell) that differ only in the
    ``differing`` fields; ``only_base``/``only_new``: cells with no partner on the other side;
    ``warnings``: conditions of measurement the sides differ in beyond what was asked (`conditions_apart`)."""

    pairs: list[tuple[dict, dict]]
    differing: tuple[str, ...]
    only_base: list[dict]
    only_new: list[dict]
    warnings: tuple[str, ...] = ()


# backends whose passes run in a torch worker's heap, so that what a run did with freed memory (its
# environment's ``allocator``) changes their times: eager at batch 16 ran up to 3x slower when glibc
# returned its large blocks after each pass (dnnbench before 0.2.0) than kept (`measure.memory`)
HEAP_BACKENDS = ("eager", "compile")
_ALLOCATOR_WORDS = {"kept": "kept freed memory", "system": "returned freed memory to the system",
                    None: "returned freed memory to the system (dnnbench before 0.2.0)"}


def conditions_apart(pairs: list[tuple[dict, dict]], base_runs: list[dict], new_runs: list[dict],
                     wheres: tuple[dict, dict]) -> tuple[str, ...]:
    """Why the ratios of ``pairs`` may hold more than the change asked about: the sides' torch passes
    treated freed memory otherwise (their runs' ``allocator``), where the selections do not name it."""
    if any("allocator" in w for w in wheres):
        return ()
    envs = [{r["run_id"]: r.get("environment") or {} for r in runs} for runs in (base_runs, new_runs)]
    heap = [(b, n) for b, n in pairs if b.get("backend") in HEAP_BACKENDS or n.get("backend") in HEAP_BACKENDS]
    found = [{envs[side].get(cells[side].get("run_id"), {}).get("allocator") for cells in heap
              if cells[side].get("backend") in HEAP_BACKENDS} for side in (0, 1)]
    if not heap or found[0] == found[1]:
        return ()
    words = [" and ".join(_ALLOCATOR_WORDS.get(v, f"allocator={v}") for v in sorted(side, key=str)) for side in found]
    return (f"the sides' {'/'.join(HEAP_BACKENDS)} passes were timed apart: base's {words[0]}, new's {words[1]} "
            "(eager at batch 16 ran up to 3x faster with it kept), so their ratios hold that too: measure base again "
            "with this dnnbench (where a database holds runs of both, select the sides by allocator=kept)",)


def pair(base: list[dict], new: list[dict], differing: set[str]) -> Sides:
    kept = tuple(k for k in CELL_KEY if k not in differing)

    def index(cells: list[dict], side: str) -> dict:
        out: dict[tuple, dict] = {}
        for c in cells:
            key = tuple(c[k] for k in kept)
            if key in out:
                a, b = Setup.of(out[key]), Setup.of(c)
                apart = [f for f in CELL_KEY if f in differing or out[key].get(f) != c.get(f)]
                raise UserError(f"the {side} side holds two cells for one comparison ({c['model']} batch "
                                f"{c['batch_size']}: {a.label(machine=True)} and {b.label(machine=True)}); narrow "
                                f"its selection by {', '.join(apart) or 'a field'}, e.g. backend=...")
            out[key] = c
        return out

    a, b = index(base, "base"), index(new, "new")
    return Sides([(a[k], b[k]) for k in a if k in b], tuple(k for k in CELL_KEY if k in differing),
                 [a[k] for k in a if k not in b], [b[k] for k in b if k not in a])


def read(path, what: str) -> tuple[list[dict], list[dict], list[dict]]:
    """Every cell (with its rounds), run and interleaved pair's row of the database at ``path``, read only."""
    from .store import Store

    with Store(path, create=False) as store:
        return store.cells(), store.runs(), store.pairs()


def sides(base_path, new_path, base_where: dict, new_where: dict) -> Sides:
    """The two sides' cells, selected and paired: from the interleaved pairs (`run --versus`) where
    the two selections name both sides of some, else from the cells."""
    base_cells, base_runs, base_pairs = read(base_path, "base")
    new_cells, new_runs = (base_cells, base_runs) if new_path is None else read(new_path, "new")[:2]
    if new_path is None and base_where == new_where:
        raise UserError("the two sides are the same cells: give a second database, or select each side "
                        "(--base backend=eager --new backend=onnxruntime)")
    base_side = select(base_cells, base_runs, base_where, "--base")
    new_side = select(new_cells, new_runs, new_where, "--new")
    differing = {f for f in set(base_where) | set(new_where) if f in CELL_KEY}
    for field in differing:
        if field not in base_where or field not in new_where:
            raise UserError(f"{field} differs between the sides: give it on both, e.g. --base {field}=A "
                            f"--new {field}=B")
    if new_path is None and base_pairs:
        found = _interleaved_sides(base_pairs, base_runs, base_where, new_where, differing)
        if found.pairs:  # both sides in one run, taking turns: measured alike
            return found
    found = pair(base_side, new_side, differing)
    found.warnings = conditions_apart(found.pairs, base_runs, new_runs, (base_where, new_where))
    return found


def pair_sides(rows: list[dict]) -> list[tuple[dict, dict]]:
    """The interleaved pairs' rows as (base cell, new cell) in the cells' shape: one per model, setups
    and batch size, over every round and run that measured it (each a fresh pair of processes). Each
    carries its rows (``interleaved_rows``), from which `analysis.compare.interleaved` takes the ratio."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        key = (r["model"], r["input_size"], *(r[f] for f in Setup.FIELDS), r["batch_size"], r["new_model"],
               r["new_input_size"], r["new_backend"], r["new_precision"], r["new_threads"], r["new_layout"],
               r.get("new_python"))
        groups.setdefault(key, []).append(r)
    out = []
    for group in groups.values():
        last, ok = group[-1], [r for r in group if r["status"] == "ok"]
        common = {"batch_size": last["batch_size"], "run_id": last["run_id"], "machine": last["machine"],
                  "device": last["device"], "status": "ok" if ok else last["status"],
                  "error": None if ok else last.get("error"), "interleaved_rows": group,
                  "disturbed": any(r.get("disturbed") for r in ok)}

        def median(name: str):
            values = sorted(r[name] for r in ok if r.get(name))
            return values[len(values) // 2] if values else None

        base = {**common, **{f: last[f] for f in ("model", "input_size", "backend", "precision", "threads", "layout")},
                "latency_median_s": median("base_median_s"), "software": last.get("base_software")}
        new = {**common, "model": last["new_model"], "input_size": last["new_input_size"],
               **{f: last[f"new_{f}"] for f in ("backend", "precision", "threads", "layout")},
               "latency_median_s": median("new_median_s"), "software": last.get("new_software")}
        out.append((base, new))
    return out


def _interleaved_sides(rows: list[dict], runs: list[dict], base_where: dict, new_where: dict,
                       differing: set[str]) -> Sides:
    both = [(b, n) for b, n in pair_sides(rows)
            if select([b], runs, base_where, "--base") and select([n], runs, new_where, "--new")]
    return pair([b for b, _ in both], [n for _, n in both], differing)
