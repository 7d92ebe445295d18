"""The measured data, as the analysis sees it: one `Measured` per model and measuring setup, with
its static figures (from the store's `models` table) and its cells by batch size."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..setup import Setup, machine_id


@dataclass
class Measured:
    """One model measured in one setup (machine, device, backend, precision, threads, layout)."""

    model: str
    input_size: int
    setup: Setup
    family: str | None = None
    source: str | None = None
    params: int | None = None
    macs: int | None = None
    file_size: int | None = None
    top1: float | None = None
    top5: float | None = None
    accuracy_source: str | None = None
    cells: dict[int, dict] = field(default_factory=dict)  # batch size -> the cell's row, any status
    # the published top-1 of the fp32 weights, kept beside a measured one; ``accuracy`` says which top1 is
    top1_published: float | None = None
    accuracy: str = "published"  # published | measured | none (no figure applies to this setup)

    @property
    def ok(self) -> dict[int, dict]:
        """The cells measured successfully, by batch size (ascending)."""
        return {b: c for b, c in sorted(self.cells.items()) if c["status"] == "ok"}

    @property
    def accuracy_density(self) -> float | None:
        if self.top1 is None or not self.params:
            return None
        return self.top1 / (self.params / 1e6)


# a setup whose top-1 class agrees with eager fp32's on fewer of the images that can judge it computes
# something else; int8 is judged by `dnnbench eval` on real data, since on random weights and inputs
# its classes may differ
MIN_TOP1_AGREEMENT = 0.9


def wrong_results(m: Measured) -> str | None:
    """Why ``m``'s setup computes wrong results (its logits against eager fp32's), or None: top-1
    agreement below 90% over the images whose top two classes are far enough apart to judge its
    precision, or logits off by more than twice the error its precision can explain."""
    from ..backends.correctness import DECISIVE_MARGIN

    precision = m.setup.precision
    if precision == "int8":
        return None
    cells = list(m.cells.values())
    worst = min((c["top1_agreement"] for c in cells if c.get("top1_agreement") is not None), default=None)
    if worst is not None and worst < MIN_TOP1_AGREEMENT:
        return f"wrong results: top-1 agrees with eager fp32 on {worst:.0%} of the images that can judge {precision}"
    error = max((c["max_rel_error"] for c in cells if c.get("max_rel_error") is not None), default=None)
    bound = 2 * DECISIVE_MARGIN.get(precision, 0.0)
    if error is not None and bound and error > bound:
        return (f"wrong results: logits off by {error:.2g} of the largest, more than the {bound:g} that {precision} "
                "rounding explains")
    return None


def group(cells: list[dict], models: list[dict]) -> list[Measured]:
    """Cells (store rows) grouped by model and setup, joined with the models' static figures."""
    static = {(m["model"], m["input_size"]): m for m in models}
    out: dict[tuple, Measured] = {}
    for cell in cells:
        key = (cell["model"], cell["input_size"], Setup.of(cell))
        if key not in out:
            figures = static.get((cell["model"], cell["input_size"]), {})
            out[key] = Measured(
                *key, **{k: figures.get(k) for k in ("family", "source", "params", "macs", "file_size", "top1",
                                                     "top5", "accuracy_source")})
        out[key].cells[cell["batch_size"]] = cell
    return sorted(out.values(), key=lambda m: (m.model, m.input_size, m.setup.key()))


def load(store, device: str | None = None) -> list[Measured]:
    """Every model measured in ``store`` (optionally on one device), with the accuracy `dnnbench eval`
    measured in its setup where there is one (`with_accuracy`)."""
    rows = [c for c in store.cells() if device is None or c["device"] == device]
    return with_accuracy(group(rows, store.models()), store.accuracies())


def with_accuracy(models: list[Measured], evaluations: list[dict]) -> list[Measured]:
    """Each model's top-1/top-5 as the analysis should use them, in place: the latest accuracy measured
    in its backend and precision on its device kind (`dnnbench eval`) where there is one; else the
    published fp32 figure for an fp32 setup, and none for bf16, fp16 or int8, whose accuracy no
    publication gives (a quantized model's must be measured)."""
    latest = {}
    for e in evaluations:  # oldest first: the later one wins
        latest[(e["model"], e["input_size"], e["backend"], e["precision"], e["device"].split(":")[0])] = e
    for m in models:
        m.top1_published = m.top1
        found = latest.get((m.model, m.input_size, m.setup.backend, m.setup.precision, m.setup.device.split(":")[0]))
        if found is not None:
            m.top1, m.top5, m.accuracy = found["top1"], found["top5"], "measured"
            m.accuracy_source = (f"measured by dnnbench eval on {found['images']} images of {found['data']}"
                                 f" ({found['backend']} {found['precision']}, weights {found['weights']}), "
                                 f"95% interval {found['top1_low']:.2f} to {found['top1_high']:.2f}")
        elif m.setup.precision != "fp32":
            m.top1 = m.top5 = m.accuracy_source = None
            m.accuracy = "none"
    return models


def peak_flops(store, setup: Setup | None = None) -> float | None:
    """The measured peak FLOP/s of the machine, device, threads and precision of ``setup`` (fp32 on any
    machine, if None): the largest any run recorded. Each run measures it in about a second per
    precision; on a shared machine a neighbour's load lowers it, never raises it, so the largest is
    the best estimate of the ceiling. A precision other than fp32 counts only runs that measured it
    (its own ceiling: bf16 emulated on a CPU without bf16 instructions is far below fp32's)."""
    precision = setup.precision if setup is not None else "fp32"
    found = []
    for run in store.runs():
        env = run.get("environment") or {}
        if setup is not None and not (env.get("device") in (None, setup.device)
                                      and env.get("threads") in (None, setup.threads)
                                      and _run_machine(run) in (None, setup.machine)):
            continue
        measured = (env.get("peak_by_precision") or {}).get(precision) or {}
        if measured.get("peak_flops"):
            found.append(float(measured["peak_flops"]))
        elif precision == "fp32" and env.get("peak_flops"):  # runs before peaks were measured per precision
            found.append(float(env["peak_flops"]))
    return max(found) if found else None


def _run_machine(run: dict) -> str | None:
    """The machine a run measured on: its setups' (``--machine`` or the fingerprint id), else its
    environment's fingerprint id (runs stored before machines were named)."""
    setups = (run.get("config") or {}).get("setups")
    if setups and setups[0].get("machine"):
        return setups[0]["machine"]
    machine = machine_id(run.get("environment") or {})
    return None if machine == "unknown" else machine
