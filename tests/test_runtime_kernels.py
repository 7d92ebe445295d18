"""ONNX Runtime's own kernels (`backends.ort_kernels`): each built from an eager kernel's key, run as the
runtime runs a model, timed once per setup, and summed by `predict --method runtime`."""

import json
import sqlite3

import pytest
import torch

import dnnbench
from dnnbench.backends import ort_kernels
from dnnbench.errors import UserError
from dnnbench.measure.kernels import profile, replay
from dnnbench.store import Store
from dnnbench.zoo import get

SIZE = 64
CALIBRATION = {"squeezenet1_1": 2e-3, "mobilenet_v3_small": 1.5e-3, "shufflenet_v2_x0_5": 1.2e-3, "resnet18": 5e-3,
               "mnasnet0_5": 1.6e-3}


def test_each_runtime_kernel_computes_what_the_eager_kernel_computes_in_shape():
    seen = set()
    for name, size in (("resnet18", SIZE), ("mobilenet_v3_small", SIZE), ("swin_t", 224),
                       ("timm/deit_tiny_patch16_224", 224)):
        entry = get(name)
        found = profile(entry.build("meta"), torch.empty(1, 3, size, size, device="meta"))
        for key in found.calls:
            if not ort_kernels.runs(key):
                continue
            op = json.loads(key)[0]
            if op in seen:
                continue
            seen.add(op)
            runtime = ort_kernels.replay(ort_kernels.runtime_key(key), threads=1)()[0]
            eager = replay(key)()
            eager = eager[0] if isinstance(eager, (tuple, list)) else eager
            assert tuple(runtime.shape) == tuple(eager.shape), op
    # convolutions, linear layers, layer norms, attention fused and as batched products, softmax
    assert seen == {"aten.convolution.default", "aten.addmm.default", "aten.mm.default", "aten.bmm.default",
                    "aten._softmax.default", "aten.native_layer_norm.default",
                    "aten._scaled_dot_product_flash_attention_for_cpu.default"}


def test_what_the_runtime_fuses_away_is_not_one_of_its_kernels():
    transposed = nn_key = None
    found = profile(torch.nn.Sequential(torch.nn.ConvTranspose2d(3, 4, 2), torch.nn.BatchNorm2d(4), torch.nn.ReLU())
                    .eval().to("meta"), torch.empty(1, 3, 8, 8, device="meta"))
    for key in found.calls:
        op = json.loads(key)[0]
        if op == "aten.convolution.default":
            transposed = key
        else:
            nn_key = key
            assert not ort_kernels.runs(key), op  # the normalisation and the activation
    assert transposed is not None and nn_key is not None and not ort_kernels.runs(transposed)
    with pytest.raises(ValueError, match="not a kernel onnxruntime runs as one"):
        ort_kernels.replay(ort_kernels.runtime_key(transposed), 1)


def database(path, backend="onnxruntime"):
    with Store(path) as store:
        run = store.start_run(["run"], {}, {"cpu_model": "test CPU"})
        for name, latency in CALIBRATION.items():
            store.put_cell(run, {"model": name, "input_size": SIZE, "machine": "m1", "device": "cpu",
                                 "backend": backend, "precision": "fp32", "threads": 1, "batch_size": 1,
                                 "status": "ok", "latency_median_s": latency, "images_per_s": 1 / latency,
                                 "time_per_image_s": latency})
    return path


def runtime_rows(db):
    with sqlite3.connect(db) as con:
        return con.execute("SELECT kernel, seconds FROM kernels WHERE kernel LIKE 'onnxruntime|%'").fetchall()


def test_the_runtime_method_times_the_runtime_s_kernels_once_and_sums_them(tmp_path):
    db = database(tmp_path / "o.db")
    res = dnnbench.open(db)
    first = res.predict("mnasnet0_75", batch_size=1, input_size=SIZE, method="runtime", progress=False,
                        on_busy="measure")
    row = first[0]
    assert row["method"] == "runtime" and row["low_s"] <= row["latency_s"] <= row["high_s"] and "busy" in row
    timed = runtime_rows(db)
    assert len(timed) > 20 and all(s > 0 for _, s in timed)
    assert all(ort_kernels.runs(ort_kernels.eager_key(k)) for k, _ in timed)
    again = res.predict("mnasnet0_75", batch_size=1, input_size=SIZE, method="runtime", progress=False,
                        on_busy="measure")
    assert runtime_rows(db) == timed and again.to_dicts() == first.to_dicts()  # kept: nothing timed anew
    # auto weighs it on an onnxruntime fp32 setup
    auto = res.predict("mnasnet0_75", batch_size=1, input_size=SIZE, progress=False, on_busy="measure")
    assert auto[0]["method"] in ("kernels", "inside", "runtime", "features", "ops")


def test_the_runtime_method_on_another_runtime_says_what_to_use(tmp_path):
    db = database(tmp_path / "e.db", backend="eager")
    with pytest.raises(UserError, match="--method runtime times ONNX Runtime's kernels.*use --method auto"):
        dnnbench.open(db).predict("mnasnet0_75", batch_size=1, input_size=SIZE, method="runtime", progress=False)
