"""The one table of figures: name, unit, which direction is better, how to show it.

Columns of tables, axis labels and (later) the report all come from here, so a figure is named and
has its unit in exactly one place. Definitions are in docs/architecture.md.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    name: str
    label: str
    unit: str
    better: str  # "lower", "higher" or "" (neither)
    scale: float = 1.0  # displayed value = raw value / scale
    digits: int = 2

    @property
    def heading(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label

    def show(self, value) -> str:
        if value is None:
            return "-"
        if isinstance(value, str):
            return value
        return f"{value / self.scale:,.{self.digits}f}"


FIGURES: dict[str, Figure] = {f.name: f for f in [
    Figure("params", "params", "M", "lower", 1e6, 2),
    Figure("macs", "MACs", "G", "lower", 1e9, 3),
    Figure("flops", "FLOPs", "G", "lower", 1e9, 3),
    Figure("file_size", "file size", "MiB", "lower", 1024**2, 1),  # binary, like every memory size shown
    Figure("input_size", "input", "px", "", 1, 0),
    Figure("top1", "top-1", "%", "higher", 1, 2),
    Figure("top5", "top-5", "%", "higher", 1, 2),
    Figure("accuracy_density", "top-1 density", "%/M params", "higher", 1, 2),
]}
