"""Core ML: the model exported (torch.export) at each batch size and converted by coremltools into the
.mlpackage an Apple device ships (an ML program). coremltools converts on any OS, but only macOS
runs a Core ML model: on Linux the preparation converts, and the step is untimed, with the reason;
on a Mac Core ML runs it on the CPU (ComputeUnit.CPU_ONLY: the setup's device).

Precisions: fp32 and fp16 are the program's compute precision; int8 is Core ML's post-training
weight compression (per-channel symmetric int8 weights, fp16 activations). Activation quantization
needs either a Mac (coremltools calibrates by running Core ML) or its PT2E quantizer, which imports
torch.ao.quantization.quantizer, gone from torch 2.14 (coremltools 9.0)."""

from __future__ import annotations

import logging
import sys

from .base import Backend, PerShape, exporting, is_cuda, require

EXTRA = "coreml"
# its import warns of every untested library version and of the macOS-only modules it cannot load
# on Linux: nothing the user can act on, printed by the process that holds the sweep
logging.getLogger("coremltools").setLevel(logging.ERROR)
RUNS_HERE = sys.platform == "darwin"
UNTIMED = ("Core ML runs models on macOS only: converted here (its .mlpackage's bytes and the conversion's "
           "seconds stored), not timed; time it on a Mac and bring its database in with dnnbench merge")


class CoreML(Backend):
    name = "coreml"

    needs = ("coremltools",)
    extra = EXTRA

    def check(self, precision: str, device: str) -> str | None:
        require("coremltools", EXTRA)
        if is_cuda(device):
            raise self.refuse(precision, device, "Core ML runs on Apple devices: use --device cpu")
        if precision == "bf16":
            raise self.refuse(precision, device, "Core ML computes in fp32 or fp16 (int8: compressed weights): "
                              "use fp32, fp16 or int8")
        return None if RUNS_HERE else UNTIMED

    def _prepare(self, model, example, precision, device, threads, folder):
        import torch

        def convert(shape):
            path = folder / f"model-b{shape[0]}.mlpackage"
            converted(model, torch.zeros(shape, dtype=example.dtype), precision).save(str(path))
            return path

        if not RUNS_HERE:
            return Untimed(UNTIMED, [convert(tuple(example.shape))])

        def build(shape):
            import coremltools as ct

            program = ct.models.MLModel(str(convert(shape)), compute_units=ct.ComputeUnit.CPU_ONLY)
            [given] = program.get_spec().description.input
            [taken] = program.get_spec().description.output

            def step(x):
                out = program.predict({given.name: x.detach().cpu().numpy()})[taken.name]
                return torch.from_numpy(out.copy()).float()

            return step

        forward = PerShape(build)
        forward.ready(tuple(example.shape))
        forward.shipped = [folder / f"model-b{example.shape[0]}.mlpackage"]  # the first batch size's program
        return forward


class Untimed:
    """The step of a setup converted here that cannot run here: its files, and why it is not timed."""

    def __init__(self, why: str, shipped: list):
        self.untimed, self.shipped = why, shipped

    def __call__(self, x):
        raise RuntimeError(self.untimed)


def converted(model, example, precision: str):
    """``model`` exported at ``example``'s shape (static: the shape a deployment ships) and converted
    to a Core ML ML program at ``precision``; ``.save(path)`` writes the .mlpackage."""
    import coremltools as ct
    import torch

    with torch.no_grad(), exporting("coreml"):
        exported = torch.export.export(model, (example,)).run_decompositions({})
    compute = ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16
    program = ct.convert(exported, convert_to="mlprogram", compute_precision=compute,
                         minimum_deployment_target=ct.target.iOS17)
    if precision == "int8":
        op = ct.optimize.coreml.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8",
                                                        granularity="per_channel")
        program = ct.optimize.coreml.linear_quantize_weights(
            program, ct.optimize.coreml.OptimizationConfig(global_config=op))
    return program
