"""The measured data, as the analysis sees it: one `Measured` per model and measuring setup, with
its static figures (from the store's `models` table) and its cells by batch size."""

from __future__ import annotations

from dataclasses import dataclass, field

SETUP = ("device", "backend", "precision", "threads")


@dataclass
class Measured:
    """One model measured on one setup (device, backend, precision, threads)."""

    model: str
    input_size: int
    device: str
    backend: str
    precision: str
    threads: int
    family: str | None = None
    source: str | None = None
    params: int | None = None
    macs: int | None = None
    file_size: int | None = None
    top1: float | None = None
    top5: float | None = None
    accuracy_source: str | None = None
    cells: dict[int, dict] = field(default_factory=dict)  # batch size -> the cell's row, any status

    @property
    def ok(self) -> dict[int, dict]:
        """The cells measured successfully, by batch size (ascending)."""
        return {b: c for b, c in sorted(self.cells.items()) if c["status"] == "ok"}

    @property
    def accuracy_density(self) -> float | None:
        if self.top1 is None or not self.params:
            return None
        return self.top1 / (self.params / 1e6)


def group(cells: list[dict], models: list[dict]) -> list[Measured]:
    """Cells (store rows) grouped by model and setup, joined with the models' static figures."""
    static = {(m["model"], m["input_size"]): m for m in models}
    out: dict[tuple, Measured] = {}
    for cell in cells:
        key = (cell["model"], cell["input_size"], *(cell[k] for k in SETUP))
        if key not in out:
            figures = static.get((cell["model"], cell["input_size"]), {})
            out[key] = Measured(
                *key, **{k: figures.get(k) for k in ("family", "source", "params", "macs", "file_size", "top1",
                                                     "top5", "accuracy_source")})
        out[key].cells[cell["batch_size"]] = cell
    return sorted(out.values(), key=lambda m: (m.model, m.input_size, m.device, m.backend, m.precision, m.threads))


def load(store, device: str | None = None) -> list[Measured]:
    """Every model measured in ``store`` (optionally on one device)."""
    rows = [c for c in store.cells() if device is None or c["device"] == device]
    return group(rows, store.models())


def peak_flops(store, device: str | None = None, threads: int | None = None) -> float | None:
    """The measured peak FLOP/s of ``device`` (any, if None) at ``threads`` (any, if None): the
    largest any run recorded. Each run measures it in about a second; on a shared machine a
    neighbour's load lowers it, never raises it, so the largest is the best estimate of the ceiling."""
    found = []
    for run in store.runs():
        env = run.get("environment") or {}
        if (env.get("peak_flops") and (device is None or env.get("device") in (None, device))
                and (threads is None or env.get("threads") in (None, threads))):
            found.append(float(env["peak_flops"]))
    return max(found) if found else None
