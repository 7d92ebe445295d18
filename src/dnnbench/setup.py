"""The setup: everything that makes two measurements of one model at one batch size incomparable.

A cell is (model, input size, setup, batch size). The setup is the machine, the device, the backend
that runs the model, the precision, the intra-op threads and the memory layout. It is defined here
once: the store's unique key, the plan's key, the analysis's grouping and the filters of the report
and of `recommend` are all made of ``Setup.FIELDS``.

The machine is a fingerprint (CPU model, logical cores, memory to the GiB, and on CUDA the GPU), or
the name given with ``--machine``: two machines writing one database, or a database copied to
another machine, never pool their samples in one cell.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, fields, replace

from .errors import UserError
from .text import short_name

LAYOUTS = ("nchw", "channels_last")
BACKENDS = ("eager", "compile", "onnxruntime", "openvino", "executorch", "litert", "coreml")
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
MACHINE_NAME = 64  # characters at most
_DEVICE = re.compile(r"cpu|cuda(:\d+)?")


@dataclass(frozen=True, order=True)
class Setup:
    """Where and how a model is measured.

    ``machine``: a name, or None for this machine (its fingerprint, filled in by the sweep);
    ``device``: ``cpu``, ``cuda`` or ``cuda:N``; ``backend``: ``eager``, ``compile``, ``onnxruntime``,
    ``openvino``, ``executorch``, ``litert`` or ``coreml``; ``precision``: ``fp32``, ``bf16``, ``fp16`` or ``int8``; ``threads``: intra-op threads,
    or None for the cores this process may use (filled in when a run is configured); ``layout``:
    ``nchw`` or ``channels_last``."""

    machine: str | None = None
    device: str = "cpu"
    backend: str = "eager"
    precision: str = "fp32"
    threads: int | None = None
    layout: str = "nchw"

    FIELDS = ("machine", "device", "backend", "precision", "threads", "layout")

    def __post_init__(self):
        for name, choices in (("backend", BACKENDS), ("precision", PRECISIONS), ("layout", LAYOUTS)):
            if getattr(self, name) not in choices:
                raise UserError(f"unknown {name} {getattr(self, name)!r}: use one of {', '.join(choices)}")
        if not isinstance(self.device, str) or not _DEVICE.fullmatch(self.device):
            raise UserError(f"unknown device {self.device!r}: use cpu, cuda or cuda:N")
        if self.machine is not None and (not isinstance(self.machine, str) or not self.machine.strip()):
            raise UserError(f"machine must be a name (text), got {self.machine!r}")

        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise UserError(f"threads must be a whole number of at least 1, got {self.threads!r}")

    def check_name(self) -> Setup:
        """This setup, its machine name checked as one given by the user (a name read from a database
        measured elsewhere is shown shortened instead, `text.short_name`)."""
        name = self.machine
        if name is not None and len(name) > MACHINE_NAME:
            raise UserError(f"machine name {name[:MACHINE_NAME]!r}... is not a name a figure or a heading can show: "
                            f"give at most {MACHINE_NAME} printable characters")
        if name is not None and not name.isprintable():
            raise UserError(f"machine name {name!r} holds a control character: give printable characters")
        return self

    @classmethod
    def of(cls, row: dict) -> Setup:
        """The setup of a stored row (a cell, or a run's config); absent fields take their defaults (a
        row from before threads were recorded ran one thread)."""
        defaults = {**{f.name: f.default for f in fields(cls)}, "threads": 1}
        setup = object.__new__(cls)  # as stored, unchecked: a database merged from a later version may
        for k in cls.FIELDS:         # hold a backend or precision this one does not know
            object.__setattr__(setup, k, row[k] if row.get(k) is not None else defaults[k])
        return setup

    def resolved(self) -> Setup:
        """This setup with ``threads`` None replaced by the cores this process may use."""
        if self.threads is not None:
            return self
        from .measure.device import default_threads

        return replace(self, threads=default_threads())

    def key(self) -> tuple:
        return tuple(getattr(self, k) for k in self.FIELDS)

    def to_dict(self) -> dict:
        return asdict(self)

    def on(self, machine: str) -> Setup:
        return replace(self, machine=machine)

    def runtime(self) -> str:
        """What runs the model: ``onnxruntime int8`` (``, channels-last``)."""
        return f"{self.backend} {self.precision}" + (", channels-last" if self.layout != "nchw" else "")

    def baseline(self) -> Setup:
        """The setup every other is compared with: eager fp32, NCHW, on the same machine, device and threads."""
        return replace(self, backend="eager", precision="fp32", layout="nchw")

    def words(self) -> set[str]:
        """The words that name this setup in ``--setup``: its machine, device, backend, precision,
        ``N threads`` and layout (``channels-last`` or ``nchw``)."""
        return {str(self.machine), self.device, self.backend, self.precision, f"{self.threads} threads",
                f"{self.threads} thread", self.layout, self.layout.replace("_", "-")}

    def label(self, machine: bool = False) -> str:
        """``cpu, eager, fp32, 2 threads`` (``, channels-last``) (`` on NAME``)."""
        text = f"{self.device}, {self.backend}, {self.precision}, {self.threads} thread{'s' if self.threads > 1 else ''}"
        if self.layout != "nchw":
            text += ", channels-last"
        return text + (f" on {short_name(self.machine)}" if machine and self.machine else "")


REFERENCE = ("eager", "fp32")  # (backend, precision) every other setup is compared with


def is_reference(row: dict) -> bool:
    """Whether a cell's, an accuracy row's or a setup's fields name the reference runtime, eager fp32."""
    return (row.get("backend"), row.get("precision")) == REFERENCE


def memory_bytes(cell: dict) -> float | None:
    """A cell's memory figure, the one every limit and figure uses: the device memory NVML saw for the
    worker (CUDA, context included) where recorded, else the worker's peak resident set. A reading of
    0 is a reading, not a missing one."""
    nvml = cell.get("mem_nvml_bytes")
    return nvml if nvml is not None else cell.get("mem_peak_bytes")


def select(setups, text: str) -> list[Setup]:
    """The setups that ``text`` names: comma-separated words, each a field's value (``onnxruntime,int8``,
    ``compile, bf16, channels-last``, ``lab1``, ``2 threads``); a setup is named when it has every word."""
    wanted = [w.strip().lower() for w in text.split(",") if w.strip()]
    return [s for s in setups if all(w in {x.lower() for x in s.words()} for w in wanted)]


def cell_key(row: dict) -> tuple:
    """The unique key of a cell: (model, input size, *the setup's fields, batch size)."""
    return (row["model"], row["input_size"], *Setup.of(row).key(), row["batch_size"])


CELL_KEY = ("model", "input_size", *Setup.FIELDS, "batch_size")


# ---- the machine ---------------------------------------------------------------------------------


def fingerprint(env: dict) -> dict:
    """What identifies a machine for measuring, from a run's environment (``measure.device.environment``
    or ``machine_environment``): CPU model, logical cores, memory rounded to the GiB, GPU (CUDA only)."""
    memory = env.get("memory_bytes")
    return {"cpu": env.get("cpu_model"), "cores": env.get("cpu_count"),
            "memory_gib": round(memory / 2**30) if memory else None, "gpu": env.get("gpu")}


def machine_id(env: dict) -> str:
    """A short readable id of the fingerprint, e.g. ``amd-epyc-2c-24g-1f3a``: its parts, and 4 hex
    digits of a hash of all of it (the CPU model string is shortened in the readable part)."""
    fp = fingerprint(env)
    if not fp["cpu"] and not fp["cores"]:
        return "unknown"  # a run stored without its environment
    digest = hashlib.sha1(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:4]
    cpu = re.sub(r"\((r|tm)\)|\bcpu\b|\bprocessor\b|@.*|\d+-core", "", (fp["cpu"] or "unknown").lower())
    words = [w for w in re.split(r"[^a-z0-9]+", cpu) if w][:3]
    parts = ["-".join(words) or "cpu", f"{fp['cores']}c" if fp["cores"] else None,
             f"{fp['memory_gib']}g" if fp["memory_gib"] is not None else None]
    if fp["gpu"]:
        parts.append("-".join(w for w in re.split(r"[^a-z0-9]+", fp["gpu"].lower()) if w and w != "nvidia")[:24])
    return "-".join(p for p in parts if p) + "-" + digest
