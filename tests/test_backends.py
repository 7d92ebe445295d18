"""Backends: every backend x precision that this machine runs gives eager fp32's logits at batch 1 and 2;
those it cannot run are refused with the reason; a missing package names its pip extra."""

import copy
import os
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from dnnbench.backends import (BACKENDS, PRECISIONS, calibration_inputs, check_combination, compare_outputs,
                               cpu, get_backend)
from dnnbench.errors import UserError

SIZE = 32  # px: a 4 x 4 map before the head
# The largest error (over the largest logit) each precision may make. fp32 backends reorder sums;
# bf16 keeps 8 bits of mantissa (0.4% per rounding, a few roundings deep); int8 steps of 1/255 of
# each tensor's range, 1/127 with the 7-bit activations or weights of CPUs without VNNI. Over five
# random nets on an AVX2 CPU: bf16 at most 0.013, int8 at most 0.071.
MAX_REL_ERROR = {"fp32": 1e-3, "bf16": 0.05, "fp16": 0.01, "int8": 0.15}
# Agreement of the predicted class. With random weights, some images have two classes within the
# error above, where either answer is honest: only fp32 must agree everywhere.
TOP1 = {"fp32": 1.0, "bf16": 0.75, "fp16": 0.75, "int8": 0.5}


class TinyNet(nn.Module):
    """A CNN's ops (convolutions, BatchNorm, ReLU, a linear head), compiled in seconds. The head
    reads the whole 4 x 4 map, not its average, so that images differ in their logits."""

    def __init__(self):
        super().__init__()

        def block(i, o, stride):
            return [nn.Conv2d(i, o, 3, stride, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]

        self.features = nn.Sequential(*block(3, 16, 2), *block(16, 32, 2), *block(32, 32, 2), nn.Flatten())
        self.head = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x):
        return self.head(self.features(x))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    net = TinyNet()
    # BatchNorm starts at mean 0 / variance 1, which random weights do not give: activations would
    # grow or shrink layer by layer. A few passes in train mode set the running statistics from
    # the activations (a cumulative average), so that every layer is normalised as in a trained net.
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None
    net.train()
    with torch.no_grad():
        for x in calibration_inputs(SIZE, count=4, batch=16, seed=1):
            net(x)
    return net.eval()


@pytest.fixture(scope="module")
def inputs():
    return torch.cat(calibration_inputs(SIZE, count=4, batch=2, seed=2))  # 8 images, not the calibration's


@pytest.fixture(scope="module")
def reference(model, inputs):
    with torch.no_grad():
        return model(inputs)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_combination_runs_close_to_eager_fp32_or_is_refused(backend, precision, model, inputs, reference, tmp_path,
                                                           tmp_path_factory):
    runner = get_backend(backend)
    try:
        check_combination(backend, precision, "cpu")
    except UserError as exc:
        assert precision in str(exc) and ": " in str(exc)  # the reason follows
        with pytest.raises(UserError):
            runner.prepare(copy.deepcopy(model), inputs[:2], precision=precision, threads=2, workdir=tmp_path)
        pytest.skip(f"refused on this CPU: {exc}")
    prepared = runner.prepare(copy.deepcopy(model), inputs[:2], precision=precision, device="cpu", threads=2,
                              workdir=tmp_path)
    with prepared:
        assert prepared.prepare_s > 0
        shipped = [Path(p) for p in prepared.forward.shipped]  # what a deployment of the setup ships
        assert shipped and all(p.parent.parent == tmp_path for p in shipped)  # inside the preparation's folder
        assert prepared.artifact_bytes == sum(_bytes(p) for p in shipped)
        if precision == "fp32":
            weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
            assert prepared.artifact_bytes >= 0.95 * weights, (prepared.artifact_bytes, weights)
        if prepared.untimed:  # converted, not runnable on this OS (Core ML off macOS): says why when called
            with pytest.raises(RuntimeError, match="macOS"):
                prepared.forward(inputs[:2])
            pytest.skip(prepared.untimed)
        pairs = torch.cat([prepared.forward(inputs[i:i + 2]) for i in range(0, 8, 2)])
        singles = torch.cat([prepared.forward(inputs[i:i + 1]) for i in range(8)])  # a new batch size
        restarted = _restarted(runner, prepared, precision, tmp_path_factory.mktemp("cache"))
    if restarted is not None:  # started again from its files alone: the prepared step's logits (compile's
        # bf16 and fp16 code, compiled again, may round in another order)
        limit = 1e-4 if precision in ("fp32", "int8") else MAX_REL_ERROR[precision]
        assert compare_outputs(pairs[:2], restarted(inputs[:2]))["max_rel_error"] < limit
    for out in (pairs, singles):
        got = compare_outputs(reference, out)
        assert got["max_rel_error"] < MAX_REL_ERROR[precision], got
        assert got["top1_agreement"] >= TOP1[precision], got
    assert list(tmp_path.iterdir()) == []  # close() removed what the preparation wrote
    with pytest.raises(RuntimeError):
        prepared.forward(inputs[:1])


def _bytes(path: Path) -> int:
    return sum(os.path.getsize(p) for p in path.rglob("*") if p.is_file()) if path.is_dir() else os.path.getsize(path)


def _restarted(runner, prepared, precision, cache):
    """The setup's step started from its shipped files alone (None where they do not make it: the reason
    is one line)."""
    from dnnbench.backends.base import CannotRestart

    try:
        return runner.restart([Path(p) for p in prepared.files], (2, 3, SIZE, SIZE), precision, "cpu", 2, cache,
                              TinyNet)
    except CannotRestart as exc:
        assert (runner.name, precision) == ("compile", "int8") and "\n" not in str(exc)
        return None


AVX2 = frozenset({"avx", "avx2", "fma", "f16c"})
SAPPHIRE_RAPIDS = AVX2 | {"avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_bf16", "amx_int8"}


def test_precision_decisions_follow_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(cpu, "flags", lambda: AVX2)
    assert "avx512_bf16" in check_combination("eager", "bf16", "cpu")  # emulated: a warning, not a refusal
    with pytest.raises(UserError, match="avx512_fp16"):
        check_combination("eager", "fp16", "cpu")
    assert "avx512_vnni" in check_combination("compile", "int8", "cpu")
    assert "avx512_vnni" in check_combination("onnxruntime", "int8", "cpu")
    monkeypatch.setattr(cpu, "flags", lambda: SAPPHIRE_RAPIDS)
    for backend, precision in [("eager", "bf16"), ("eager", "fp16"), ("compile", "bf16"), ("compile", "int8"),
                               ("onnxruntime", "int8"), ("eager", "fp32")]:
        assert check_combination(backend, precision, "cpu") is None, (backend, precision)


@pytest.mark.parametrize("backend, precision, device, reason", [
    ("eager", "int8", "cpu", "compile backend"),
    ("compile", "int8", "cuda", "x86 CPUs"),
    ("onnxruntime", "bf16", "cpu", "no bf16 kernels"),
    ("onnxruntime", "fp16", "cpu", "no fp16 convolution kernel"),
    ("openvino", "fp32", "cuda", "Intel GPUs"),
    ("executorch", "fp32", "cuda", "a CPU runtime"),
    ("executorch", "bf16", "cpu", "fp32 and int8 only"),
    ("litert", "fp16", "cpu", "converts fp32 and int8"),
    ("coreml", "fp32", "cuda", "Apple devices"),
    ("coreml", "bf16", "cpu", "fp32 or fp16"),
])
def test_refusals_say_why(backend, precision, device, reason):
    with pytest.raises(UserError, match=reason):
        check_combination(backend, precision, device)


@pytest.mark.parametrize("module, backend, precision, extra", [
    ("onnxruntime", "onnxruntime", "fp32", "onnx"),
    ("onnxscript", "onnxruntime", "fp32", "onnx"),
    ("openvino", "openvino", "fp32", "openvino"),
    ("nncf", "openvino", "int8", "openvino"),
    ("torchao", "compile", "int8", "quant"),
    ("executorch", "executorch", "fp32", "executorch"),
    ("ai_edge_litert", "litert", "fp32", "litert"),
    ("coremltools", "coreml", "fp32", "coreml"),
])
def test_a_missing_package_names_its_extra(monkeypatch, module, backend, precision, extra):
    monkeypatch.setitem(sys.modules, module, None)  # what an uninstalled package looks like to import
    with pytest.raises(UserError) as exc:
        check_combination(backend, precision, "cpu")
    assert str(exc.value) == f"{module} is not installed: pip install 'dnnbench[{extra}]'"


def test_unknown_names_list_the_choices():
    with pytest.raises(UserError, match="eager, compile, onnxruntime, openvino"):
        get_backend("tensorrt")
    with pytest.raises(UserError, match="fp32, bf16, fp16, int8"):
        check_combination("eager", "int4", "cpu")
    with pytest.raises(UserError, match="cpu, cuda or cuda:N"):
        check_combination("eager", "fp32", "mps")


def test_compare_outputs():
    reference = torch.tensor([[1.0, 2.0, 0.0], [3.0, -4.0, 0.0]])
    other = torch.tensor([[1.0, 2.4, 0.0], [3.0, -4.0, 3.5]])
    got = compare_outputs(reference, other)
    assert got["max_rel_error"] == pytest.approx(3.5 / 4)  # largest difference over the largest |reference|
    assert got["top1_agreement"] == 0.5  # the second row's class changed
    assert compare_outputs(reference, reference) == {"max_rel_error": 0.0, "top1_agreement": 1.0}
    assert compare_outputs(reference, other.where(other != 3.5, float("nan")))["max_rel_error"] == float("inf")
    with pytest.raises(ValueError):
        compare_outputs(reference, other[:1])


def test_only_images_whose_classes_are_far_apart_judge_a_precision():
    # first image: classes 1 and 0 within 5% of the largest logit (a near-tie bf16 may decide either
    # way); second: 7 apart; third: 2 apart, 25% of the largest logit, beyond bf16's 15%
    reference = torch.tensor([[7.6, 8.0, 0.0], [1.0, -6.0, 8.0], [8.0, 6.0, 0.0]])
    flipped = torch.tensor([[8.0, 7.6, 0.0], [1.0, -6.0, 8.0], [6.0, 8.0, 0.0]])
    assert compare_outputs(reference, flipped)["top1_agreement"] == pytest.approx(1 / 3)  # every image
    assert compare_outputs(reference, flipped, "bf16")["top1_agreement"] == 0.5  # the near-tie left out
    assert compare_outputs(reference, flipped, "int8")["top1_agreement"] == 1.0  # 25% is within int8's 30%
    ties = torch.tensor([[8.0, 7.9, 0.0]])
    assert compare_outputs(ties, ties.flip(1), "fp16")["top1_agreement"] is None  # nothing can judge it


def test_a_setup_is_wrong_by_its_decisive_images_or_by_an_error_its_precision_cannot_explain():
    from dnnbench.analysis.data import Measured, wrong_results
    from dnnbench.setup import Setup

    def measured(precision, agreement, error):
        m = Measured("m", 224, Setup(precision=precision))
        m.cells[1] = {"status": "ok", "top1_agreement": agreement, "max_rel_error": error}
        return m

    assert wrong_results(measured("bf16", None, 0.14)) is None  # near-ties only, bf16-sized error
    assert "agrees with eager fp32 on 50% of the images that can judge bf16" in wrong_results(measured("bf16", 0.5, 0.1))
    assert "more than the 0.02 that fp32 rounding explains" in wrong_results(measured("fp32", 1.0, 0.05))
    assert wrong_results(measured("int8", 0.2, 0.9)) is None  # int8 is judged on real data


def test_calibration_inputs_are_seeded():
    a, b = calibration_inputs(16, count=2, batch=3), calibration_inputs((3, 16, 16), count=2, batch=3)
    assert [x.shape for x in a] == [torch.Size([3, 3, 16, 16])] * 2
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not torch.equal(a[0], calibration_inputs(16, count=1, batch=3, seed=1)[0])
