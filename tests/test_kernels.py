"""Kernel profiles: the features of models with known counts, replaying and timing kernels."""

import json

import pytest
import torch
from torch import nn

from dnnbench.measure.kernels import in_model_times, profile, replay, time_call
from dnnbench.measure.ops import count_macs
from dnnbench.measure.profile import Profile, replayable


def tiny():
    # conv 3->8 (3x3, pad 1), depthwise 8 (3x3), ReLU, global pool, flatten (a view), linear 8->5
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))


def test_features_of_a_model_with_known_counts(meta_input):
    model = tiny().to("meta").eval()
    found = profile(model, meta_input(8, batch=2)).features()
    assert found["macs_dense_conv"] == 2 * 8 * 8 * 8 * 27  # per output element: 3 x 3 x 3
    assert found["macs_grouped_conv"] == 2 * 8 * 8 * 8 * 9  # depthwise: 3 x 3 per output element
    assert found["macs_matmul"] == 2 * 8 * 5
    assert found["macs_attention"] == 0
    # written: conv 1024, depthwise 1024, relu 1024, pool 16, linear 10 (flatten and the weight's
    # transpose are views, and write nothing)
    assert found["activations"] == 1024 * 3 + 16 + 10
    assert found["kernels"] == 5


def test_the_kinds_add_up_to_the_mac_count(meta_input):
    from dnnbench.zoo import get

    for name in ("resnet18", "mobilenet_v2", "vit_b_16"):
        entry = get(name)
        model = entry.build("meta")
        found = profile(model, meta_input(entry.input_size)).features()
        macs = sum(v for k, v in found.items() if k.startswith("macs_"))
        assert macs == count_macs(model, meta_input(entry.input_size)).macs
    assert found["macs_attention"] > 0 and found["macs_matmul"] > found["macs_attention"]  # ViT: mostly linear


def test_kernels_timed_inside_a_real_pass_are_the_profile_s_kernels(meta_input):
    from dnnbench.zoo import get

    for model, size in ((tiny(), 8), (get("mobilenet_v3_small").build("cpu"), 64)):
        recorded = profile(model.to("meta"), meta_input(size, batch=2))
        found, seconds = in_model_times(model.to_empty(device="cpu").eval(), torch.randn(2, 3, size, size),
                                        passes=3, warm=1)
        assert found.calls == recorded.calls  # the same keys as on the meta device, as often
        assert set(seconds) == set(recorded.calls) and all(s > 0 for s in seconds.values())


def test_a_layer_s_epilogue_is_what_takes_its_output_in_order_a_folded_normalisation_passed_over(meta_input):
    class Block(nn.Module):  # a residual block, a squeeze-and-excitation, a ConvNeXt-like late residual
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Conv2d(3, 4, 1), nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 1)
            self.norm, self.fc = nn.BatchNorm2d(4), nn.Linear(4, 4)

        def forward(self, x):
            y = torch.relu(self.norm(self.a(x)))  # relu, after a batch norm that folds
            y = nn.functional.relu6(self.b(y) + y)  # its input y was read by b: the addition is b's
            z = self.c(y)
            gate = torch.sigmoid(z.mean((2, 3), keepdim=True))  # z is read by the mean: c's chain ends
            y = nn.functional.silu(z * gate)  # not a layer's output
            pooled = y.mean((2, 3))
            out = nn.functional.gelu(self.fc(pooled).view(2, 2, 2))  # through a view
            return out + pooled.view(2, 2, 2)  # the sum of a layer's result and another tensor: the layer's

    found = profile(Block().eval().to("meta"), meta_input(8, batch=2))
    by_op = {json.loads(k)[0] + str(json.loads(k)[1][1]["T"]): dict(c) for k, c in found.then.items()}
    assert by_op == {"aten.convolution.default[4, 3, 1, 1]": {"relu": 1},
                     "aten.convolution.default[4, 4, 3, 3]": {"add,relu6": 1},
                     "aten.addmm.default[2, 4]": {"gelu,add": 1}}
    assert Profile.from_dict(json.loads(json.dumps(found.to_dict()))).then == found.then


def test_a_meta_profile_has_the_kernels_the_cpu_chooses_for_attention(meta_input):
    # on meta tensors PyTorch takes attention's math path (bmm, softmax) and skips the multi-head
    # attention fast path; the CPU runs one fused kernel for each: the profile must name the CPU's
    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Conv2d(3, 32, 4, stride=4)
            self.mha = nn.MultiheadAttention(32, 4, batch_first=True)
            self.qkv = nn.Linear(32, 96)

        def forward(self, x):
            tokens = self.embed(x).flatten(2).transpose(1, 2)
            tokens = self.mha(tokens, tokens, tokens, need_weights=False)[0]
            q, k, v = self.qkv(tokens).reshape(x.shape[0], -1, 3, 4, 8).permute(2, 0, 3, 1, 4)
            return nn.functional.scaled_dot_product_attention(q, k, v).sum()

    model = Attention().eval()
    recorded = profile(model.to("meta"), meta_input(16, batch=2))
    real = profile(model.to_empty(device="cpu"), torch.randn(2, 3, 16, 16))
    assert recorded.calls == real.calls
    ops = {json.loads(key)[0] for key in recorded.calls}
    assert {"aten._native_multi_head_attention.default",
            "aten._scaled_dot_product_flash_attention_for_cpu.default"} <= ops
    assert "aten.bmm.default" not in ops and recorded.features()["macs_attention"] > 0


def test_a_recorded_kernel_replays_on_the_cpu_with_its_shapes(meta_input):
    model = tiny().to("meta").eval()
    found = profile(model, meta_input(8))
    conv = next(k for k, s in found.specs.items() if s.kind == "grouped_conv")
    assert replayable(conv)
    out = replay(conv)()
    assert out.shape == (1, 8, 8, 8) and out.device.type == "cpu" and out.dtype == torch.float32
    assert replay(conv, torch.bfloat16)().dtype == torch.bfloat16
    # a profile survives the database's JSON
    again = Profile.from_dict(json.loads(json.dumps(found.to_dict())))
    assert again.features() == found.features()


def test_a_replayed_kernel_s_inputs_are_normal_draws_of_their_own_even_beyond_the_pool():
    """Copied from one pool of draws (drawing them anew was 14 of 70 s of timing at batch 16), each from
    a start of its own: a difference of two inputs must not be all zeros."""
    from dnnbench.measure import kernels

    key = json.dumps(["aten.sub.Tensor", [{"T": [3, 50], "d": "float32"}, {"T": [3, 50], "d": "float32"}], {}])
    assert torch.count_nonzero(replay(key)()) == 150
    big = kernels._tensor({"T": [kernels._POOL + 7], "d": "float32"}, torch.bfloat16)
    assert big.dtype == torch.bfloat16 and torch.count_nonzero(big) == big.numel()
    assert 0.9 < big.float().std() < 1.1 and abs(big.float().mean()) < 0.01


def test_an_in_place_kernel_called_again_and_again_never_runs_on_denormals():
    """silu_ or hardswish_ on its own output halves values near zero on each call: after about 120 calls
    they pass through denormals (up to 4x slower), so a timing's median depended on its number of calls.
    What it writes starts at zero, where each activation stays; what it only reads keeps its draws."""
    tiny = torch.finfo(torch.float32).tiny
    for op in ("aten.silu_.default", "aten.hardswish_.default", "aten.leaky_relu_.default"):
        call = replay(json.dumps([op, [{"T": [4, 64], "d": "float32"}], {}]))
        written = call.args[0]
        for _ in range(200):
            call()
            assert not torch.any((written != 0) & (written.abs() < tiny)), op
    add = replay(json.dumps(["aten.add_.Tensor", [{"T": [4, 64], "d": "float32"}] * 2, {}]))
    assert torch.count_nonzero(add.args[0]) == 0 and torch.count_nonzero(add.args[1]) == 256
    assert torch.count_nonzero(replay(json.dumps(["aten.silu.default", [{"T": [4, 64], "d": "float32"}], {}])).args[0]) == 256


def test_kernels_are_timed_in_windows_of_about_group_s_each_not_all_in_one(monkeypatch):
    """A window's load of other processes is read around it, and a disturbed one is timed again: all
    2,000 kernels of a registry in one window (as they were) shared one reading of 57 s."""
    import time

    from dnnbench.worker import kernels as worker

    monkeypatch.setattr(worker, "GROUP_S", 0.05)
    watch = worker._watch({"on_busy": "measure"}, 1, lambda *a, **k: None)

    def one(key):
        time.sleep(0.02)
        return 0.02, 1, None

    pending = list(range(20))
    first, _ = worker._timed_window(watch, pending, one)
    assert 1 <= len(first) < 20 and list(first) == pending[:len(first)]
    # a runtime's group timed ahead ends in the window it began
    whole, _ = worker._timed_window(watch, pending, one, timed_ahead=lambda: True)
    assert list(whole) == pending


def test_every_kernel_of_real_models_replays(meta_input):
    from dnnbench.zoo import get

    for name in ("mobilenet_v3_small", "vit_b_32", "densenet121"):
        entry = get(name)
        found = profile(entry.build("meta"), meta_input(64 if name != "vit_b_32" else 224))
        for key in found.specs:
            assert replayable(key), key
        for key in list(found.specs)[:40]:
            replay(key)()


def test_non_contiguous_arguments_keep_their_strides(meta_input):
    class Transposed(nn.Module):
        def forward(self, x):
            return (x.transpose(1, 3) * 2).sum()

    found = profile(Transposed(), meta_input(4))
    mul = next(k for k in found.specs if "mul" in k)
    assert json.loads(mul)[1][0]["s"] == [48, 1, 4, 16]
    replay(mul)()


def test_time_call_counts_calls_and_stops_by_its_rules():
    ticks = iter(range(10**6))

    def clock():
        return next(ticks) * 0.001  # every reading 1 ms later

    calls = []
    median, n = time_call(lambda: calls.append(1), min_calls=5, min_s=0.02, clock=clock)
    assert n >= 5 and median == pytest.approx(0.001) and len(calls) == n + 1  # one warm call
    slow = iter(range(10**6))
    median, n = time_call(lambda: None, min_calls=5, min_s=0.0, max_s=1.0, clock=lambda: next(slow) * 2.0)
    assert n == 1  # a call longer than the budget is timed once
    steady_clock = iter(range(10**6))
    _, n = time_call(lambda: None, min_calls=20, min_s=0.005, steady=0.01, clock=lambda: next(steady_clock) * 0.001)
    assert n == 5  # calls that repeat themselves: 5 are enough
    jitter = iter([0, 0, 0.001, 0.001, 0.004] * 10**4)  # every other call 3 ms slower
    readings = iter(range(10**6))
    _, n = time_call(lambda: None, min_calls=20, min_s=0.005, steady=0.01,
                     clock=lambda: next(readings) * 0.001 + next(jitter))
    assert n == 20  # calls that do not: the usual count
    # a kernel called ``settled`` times stops at half the floor, one called fewer times does not
    def ticking(step):
        readings = iter(range(10**6))
        return lambda: next(readings) * step  # a call lasts one step, and so does the gap to the next

    _, n = time_call(lambda: None, min_calls=5, min_s=0.02, settled=50, clock=ticking(0.0001))
    assert n == 50  # 10 ms
    _, n = time_call(lambda: None, min_calls=5, min_s=0.02, clock=ticking(0.0001))
    assert n == 100  # 20 ms without the rule
    _, n = time_call(lambda: None, min_calls=5, min_s=0.02, settled=50, clock=ticking(0.001))
    assert n == 10  # 10 calls in 20 ms: the whole floor
