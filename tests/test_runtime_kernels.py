"""A runtime's own kernels (`backends.runtime_kernels`): each built from an eager kernel's key, run as
the runtime runs a model (ONNX Runtime fp32, OpenVINO fp32 and int8), timed once per setup, and summed
by `predict --method runtime`."""

import json
import statistics
import sqlite3

import pytest
import torch

import dnnbench
from dnnbench.backends import runtime_kernels as rk
from dnnbench.errors import UserError
from dnnbench.measure.kernels import profile, replay
from dnnbench.store import Store
from dnnbench.zoo import get

SIZE = 64
CALIBRATION = {"squeezenet1_1": 2e-3, "mobilenet_v3_small": 1.5e-3, "shufflenet_v2_x0_5": 1.2e-3, "resnet18": 5e-3,
               "mnasnet0_5": 1.6e-3}


@pytest.mark.parametrize("prefix", sorted(rk.RUNTIMES.values()))
def test_each_runtime_kernel_computes_what_the_eager_kernel_computes_in_shape(prefix):
    seen = set()
    for name, size in (("resnet18", SIZE), ("mobilenet_v3_small", SIZE), ("densenet121", SIZE), ("swin_t", 224),
                       ("timm/deit_tiny_patch16_224", 224), ("shufflenet_v2_x0_5", SIZE)):
        entry = get(name)
        found = profile(entry.build("meta"), torch.empty(1, 3, size, size, device="meta"))
        for key in found.calls:
            if not rk.runs(key):
                continue
            op = json.loads(key)[0]
            if op in seen:
                continue
            seen.add(op)
            runtime = rk.replay(rk.runtime_key(key, prefix), threads=1)()
            eager = replay(key)()
            eager = eager[0] if isinstance(eager, (tuple, list)) else eager
            assert tuple(runtime.shape) == tuple(eager.shape), op
    # convolutions, linear layers, layer norms, attention fused and as batched products, softmax, and
    # between the layers pooling, means and concatenation
    assert seen == {"aten.convolution.default", "aten.addmm.default", "aten.mm.default", "aten.bmm.default",
                    "aten._softmax.default", "aten.native_layer_norm.default",
                    "aten._scaled_dot_product_flash_attention_for_cpu.default",
                    "aten.max_pool2d_with_indices.default", "aten.avg_pool2d.default", "aten.mean.dim",
                    "aten.cat.default", "aten.mul.Tensor", "aten.clone.default"}


_EAGER_EPILOGUE = {"relu": torch.relu, "relu6": torch.nn.functional.relu6, "silu": torch.nn.functional.silu,
                   "gelu": torch.nn.functional.gelu, "hardswish": torch.nn.functional.hardswish,
                   "gelu_tanh": lambda x: torch.nn.functional.gelu(x, approximate="tanh"),
                   "hardsigmoid": torch.nn.functional.hardsigmoid, "sigmoid": torch.sigmoid}


@pytest.mark.parametrize("layer", ["conv", "linear"])
def test_a_layer_s_epilogue_computes_what_eager_computes_after_the_layer(layer):
    from onnx import numpy_helper

    from dnnbench.measure.profile import EPILOGUE_TAGS

    if layer == "conv":  # 8 -> 4 channels, 3x3, stride 2, padding 1, on 9x9: 5x5
        args = [{"T": [2, 8, 9, 9]}, {"T": [4, 8, 3, 3]}, {"T": [4]}, [2, 2], [1, 1], [1, 1], False, [0, 0], 1]
        key = json.dumps(["aten.convolution.default", args, {}], separators=(",", ":"))
    else:
        args = [{"T": [4]}, {"T": [3, 8]}, {"T": [8, 4], "s": [1, 8]}]
        key = json.dumps(["aten.addmm.default", args, {}], separators=(",", ":"))
    for tags in [*EPILOGUE_TAGS, "add,relu", "silu,add"]:
        fused = rk.with_epilogue(key, tags)
        assert json.loads(fused)[:2] == json.loads(key)[:2] and rk.runs(fused)
        model, feeds = rk._graph(fused)
        w = {t.name: torch.from_numpy(numpy_helper.to_array(t)) for t in model.graph.initializer}
        x = torch.from_numpy(feeds["x" if layer == "conv" else "a"])
        if layer == "conv":
            y = torch.nn.functional.conv2d(x, w["w"], w["b"], stride=2, padding=1)
        else:
            y = x @ w["w"].T + w["c"]
        for i, tag in enumerate(tags.split(",")):
            y = y + torch.from_numpy(feeds[f"r{i}"]) if tag == "add" else _EAGER_EPILOGUE[tag](y)
        for prefix in ("onnxruntime|", "openvino|"):
            out = torch.from_numpy(rk.replay(rk.runtime_key(fused, prefix), threads=1)())
            assert torch.allclose(out, y, atol=1e-4), (prefix, tags)
        assert tuple(rk.replay(rk.runtime_key(fused, "openvino-int8|"), threads=1)().shape) == tuple(y.shape)


def test_a_profile_s_runtime_kernels_are_its_layers_apart_by_epilogue():
    found = profile(get("resnet18").build("meta"), torch.empty(1, 3, SIZE, SIZE, device="meta")).to_dict()
    calls, specs = rk.kernels(found)
    layers = {k: n for k, n in found["calls"].items() if json.loads(k)[0] == "aten.convolution.default"}
    assert sum(n for k, n in calls.items() if json.loads(k)[0] == "aten.convolution.default") == sum(layers.values())
    convs = [k for k in calls if json.loads(k)[0] == "aten.convolution.default"]
    assert {tuple(json.loads(k)[2].get("then", [])) for k in convs} == {(), ("relu",), ("add", "relu")}  # downsampling: none
    assert sum(n for k, n in calls.items() if json.loads(k)[2].get("then") == ["add", "relu"]) == 8  # 8 blocks
    assert all(rk.with_epilogue(specs[k].key, ",".join(json.loads(k)[2].get("then", []))) == k for k in calls)
    assert not any(json.loads(k)[0] == "aten.relu_.default" for k in calls)  # fused away


def test_a_permuted_tensor_made_contiguous_is_a_transpose_and_a_slice_or_an_expansion_is_not():
    def clone(shape, strides):
        return json.dumps(["aten.clone.default", [{"T": shape, "d": "float32", "s": strides}],
                           {"memory_format": {"memory_format": "contiguous_format"}}], separators=(",", ":"))

    shuffle = clone([2, 24, 2, 8, 8], [3072, 64, 1536, 8, 1])  # ShuffleNet's channel shuffle: groups and channels swapped
    assert rk.runs(shuffle)
    assert not rk.runs(clone([2, 336, 21, 21], [162624, 484, 22, 1]))  # a slice: rows of 22, 21 kept
    assert not rk.runs(clone([2, 8, 8, 8], [64, 0, 8, 1]))  # an expansion
    assert tuple(replay(shuffle)().shape) == (2, 24, 2, 8, 8)  # eager: the strided view made contiguous
    _, feeds = rk._graph(shuffle)  # the runtime's input: the tensor as laid out in memory
    expected = torch.from_numpy(feeds["x"]).flatten().as_strided([2, 24, 2, 8, 8], [3072, 64, 1536, 8, 1]).contiguous()
    for prefix in rk.RUNTIMES.values():
        assert torch.equal(torch.from_numpy(rk.replay(rk.runtime_key(shuffle, prefix), threads=1)()), expected), prefix


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
            assert not rk.runs(key), op  # the normalisation and the activation
    assert transposed is not None and nn_key is not None and not rk.runs(transposed)
    for prefix in rk.RUNTIMES.values():
        with pytest.raises(ValueError, match="not a kernel a runtime runs as one"):
            rk.replay(rk.runtime_key(transposed, prefix), 1)


def test_a_squeeze_and_excitation_s_product_is_a_runtime_kernel_and_other_products_are_not():
    def mul(a, b):
        return json.dumps(["aten.mul.Tensor", [{"T": a}, {"T": b}], {}])

    found = profile(get("mobilenet_v3_small").build("meta"), torch.empty(2, 3, SIZE, SIZE, device="meta"))
    gates = [k for k in found.calls if json.loads(k)[0] == "aten.mul.Tensor" and rk.runs(k)]
    assert gates  # mobilenet_v3's
    se = mul([2, 16, 1, 1], [2, 16, 8, 8])
    assert rk.runs(se) and rk.runs(mul([2, 16, 8, 8], [2, 16, 1, 1]))
    assert not rk.runs(mul([2, 16, 8, 8], [2, 16, 8, 8]))  # element by element: fused into the layer before
    assert not rk.runs(mul([2, 8, 8, 16], [16]))  # a layer scale over channels last
    assert not rk.runs(mul([2, 16, 8, 8], [1, 16, 1, 1]))  # a weight over a batch of 2


def _conv_key(channels: int, size: int, groups: int = 1, in_channels: int | None = None) -> str:
    x = {"T": [1, in_channels or channels, size, size]}
    return json.dumps(["aten.convolution.default", [x, {"T": [channels, channels // groups, 3, 3]}, None, [1, 1],
                                                    [1, 1], [1, 1], False, [0, 0], groups], {}])


def test_an_openvino_int8_kernel_runs_in_int8_and_computes_what_fp32_computes():
    import numpy as np

    from dnnbench.backends.runtime_kernels import _graph, _openvino

    key = _conv_key(32, 16)
    out = {}
    for runtime in ("openvino", "openvino-int8"):
        request, inputs = _openvino(*_graph(key, quantized=runtime == "openvino-int8"), runtime, 1)
        out[runtime] = request.infer(inputs)[0]
        types = {p.exec_type for p in request.get_profiling_info() if p.node_type == "Convolution"}
        assert any(("I8" in t or "i8" in t or "u8" in t) for t in types) == (runtime == "openvino-int8"), types
    error = np.linalg.norm(out["openvino-int8"] - out["openvino"]) / np.linalg.norm(out["openvino"])
    assert error < 0.05  # quantized inputs and weights, the same convolution
    # as in a model NNCF quantized: a depthwise convolution stays f32, pooling after a layer runs in u8
    pool = json.dumps(["aten.max_pool2d_with_indices.default", [{"T": [1, 32, 16, 16]}, [3, 3], [2, 2], [1, 1]], {}])
    for key, node_type, int8 in ((_conv_key(32, 16, groups=32), "GroupConvolution", False), (pool, "MaxPool", True)):
        request, inputs = _openvino(*_graph(key, quantized=True), "openvino-int8", 1)
        request.infer(inputs)
        types = {p.exec_type.lower() for p in request.get_profiling_info() if p.node_type == node_type}
        assert types and any(("i8" in t or "u8" in t) for t in types) == int8, types


def test_in_int8_a_silu_after_a_layer_runs_apart_from_it_as_nncf_quantizes_it_and_is_the_kernel_s_time():
    """NNCF quantizes a SiLU's Mul (its inputs and output), so OpenVINO runs it as an element-wise
    Subgraph apart from the layer (32 of efficientnet_b0's 59 ms at batch 16), not fused into it."""
    from dnnbench.backends.runtime_kernels import _group_graph, _openvino, _openvino_owners

    for key, runtime, apart in [(rk.with_epilogue(layer, "silu"), runtime, runtime == "openvino-int8")
                                for layer in (_conv_key(32, 28), _conv_key(32, 28, groups=32))  # int8, and f32
                                for runtime in ("openvino", "openvino-int8")]:
        request, inputs = _openvino(*_group_graph((f"{runtime}|{key}",)), runtime, 1)
        request.infer(inputs)
        owners = _openvino_owners(request.get_compiled_model().get_runtime_model(), 1)
        counted = {p.node_type for p in request.get_profiling_info() if p.node_name in owners}
        assert ("Subgraph" in counted or "Eltwise" in counted) == apart, counted


@pytest.mark.parametrize("prefix", ["onnxruntime|", "openvino|"])
def test_kernels_timed_in_a_group_each_get_their_own_time_and_are_timed_again_when_asked_again(prefix):
    keys = [rk.runtime_key(_conv_key(c, 14), prefix) for c in (8, 16, 32)]
    keys.append(rk.runtime_key(_conv_key(16, 14, groups=16), "openvino-int8|"))  # another runtime: its own group
    timer = rk.Timer(keys, threads=1)
    assert timer.group_of[keys[0]] == keys[:3] and timer.group_of[keys[3]] == keys[3:]
    first = timer.time(keys[0])
    assert set(timer.ready) == set(keys[1:3])  # timed with it, kept for their asking
    assert all(timer.time(k)[0] > 0 for k in keys[1:]) and not timer.ready
    again = timer.time(keys[0])
    assert first[0] > 0 and again[0] > 0 and first[1] >= 3 and set(timer.ready) == set(keys[1:3])
    timer.ready.clear()
    assert timer.time(keys[1], again=True)[0] > 0 and not timer.ready  # timed afresh for it alone


def test_every_node_of_a_layer_and_its_epilogue_is_counted_for_it_fused_or_not():
    # ONNX Runtime fuses a linear layer's ReLU into a node it names "fused k0_n0", and runs a SiLU beside
    # the convolution (its Sigmoid and Mul fused into a QuickGelu): all are the layer's
    linear = json.dumps(["aten.addmm.default", [{"T": [64]}, {"T": [2, 128]}, {"T": [128, 64], "s": [1, 128]}], {}])
    keys = [rk.runtime_key(rk.with_epilogue(linear, "relu"), "onnxruntime|"),
            rk.runtime_key(rk.with_epilogue(_conv_key(16, 14), "silu"), "onnxruntime|")]
    model, feeds = rk._group_graph(tuple(keys))
    group = rk._OnnxRuntimeGroup(model, feeds, "onnxruntime", 1, len(keys))
    for _ in range(3):
        group.run()
    with open(group.session.end_profiling()) as f:
        nodes = {e["name"].removesuffix("_kernel_time"): e["args"]["op_name"] for e in json.load(f)
                 if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")}
    assert nodes.pop(rk._PROBE) == "Relu"  # the branch that measures what the profiler counts for a node
    owned = {op: rk._owner(name, len(keys)) for name, op in nodes.items() if op not in rk._ORT_AROUND}
    assert owned.pop("FusedGemm") == 0 and owned.pop("Conv") == 1 and None not in owned.values()
    assert set(owned.values()) == {1}  # the SiLU, apart from the convolution
    timer = rk.Timer(keys, threads=1)
    assert all(timer.time(k)[0] > 0 for k in keys)


def test_a_kernel_s_time_on_onnx_runtime_is_its_nodes_less_what_the_profiler_counts_for_a_node_with_no_work():
    # the profiler counted 3 µs for a ReLU of one value: a small model's kernels at batch 1 summed to
    # 1.5x to 1.75x its latency with it, so each node of a kernel is charged the probe's median less
    us = 1e-6
    by_node = {"k0_n0": [9 * us, 5 * us, 6 * us, 5 * us],  # the first call warms, and is left out
               "fused k1_n0": [9 * us, 20 * us, 20 * us, 22 * us], "k1_n1": [9 * us, 4 * us, 4 * us, 4 * us],
               "k2_n0": [9 * us, 2 * us, 3 * us, 2 * us],  # no more than an empty node: nothing of its own
               rk._PROBE: [9 * us, 3 * us, 3 * us, 4 * us], "ReorderOutput_1": [1 * us] * 4}
    own = rk._net_of_probe(by_node, 3)
    assert [[round(t / us, 6) for t in calls] for calls in own] == [[2, 3, 2], [18, 18, 20], [0, 0, 0]]
    assert rk._fast_half_mean(own[2]) == rk.COUNTER_S / 2  # then half of the counter's microsecond
    without_probe = rk._net_of_probe({k: v for k, v in by_node.items() if k != rk._PROBE}, 3)
    assert [round(t / us, 6) for t in without_probe[0]] == [5, 6, 5]


def test_a_group_grows_past_32_kernels_only_where_they_move_more_than_the_cache_holds():
    from dnnbench.backends.cpu import last_level_cache_bytes

    keys = [rk.runtime_key(_conv_key(c, 14), "openvino|") for c in range(8, 88)]  # 80 kernels
    small = rk.Timer(keys, threads=1, work={k: [0, 1 << 10] for k in keys})
    assert [len(small.group_of[k]) for k in (keys[0], keys[32], keys[64])] == [32, 32, 16]
    big = last_level_cache_bytes() // 4  # beyond the cache after 5 kernels: cold whatever the group's size
    cold = rk.Timer(keys, threads=1, work={k: [0, big] for k in keys})
    assert len(cold.group_of[keys[0]]) == min(rk.GROUP_KERNELS_COLD, rk.GROUP_BYTES // big)
    assert len(cold.group_of[keys[0]]) > rk.GROUP_KERNELS or rk.GROUP_BYTES // big <= rk.GROUP_KERNELS


def test_a_group_holds_kernels_of_like_traffic_so_that_a_small_one_is_not_timed_behind_a_large_one():
    keys = [rk.runtime_key(_conv_key(c, 14), "openvino|") for c in range(8, 72)]  # 64 kernels
    work = {k: [0, (1 << 10) if i % 2 else (1 << 22)] for i, k in enumerate(keys)}  # small and large, alternating
    timer = rk.Timer(keys, threads=1, work=work)
    groups = {tuple(g) for g in timer.group_of.values()}
    assert len(groups) == 2 and all(len({work[k][1] for k in g}) == 1 for g in groups)
    plain = rk.Timer(keys, threads=1)  # without traffic, grouped as given
    assert [plain.group_of[k] for k in keys[::32]] == [keys[:32], keys[32:]]


def test_groups_are_timed_in_an_order_drawn_at_random_and_eager_kernels_likewise():
    from dnnbench.measure.kernels import spread

    keys = [rk.runtime_key(_conv_key(c, 14), "openvino|") for c in range(8, 168)]  # 160 kernels, 5 groups
    timer = rk.Timer(keys, threads=1, work={k: [0, 1 << 10 + i // 32] for i, k in enumerate(keys)})
    starts = [timer.order.index(k) for k in keys[::32]]
    assert sorted(timer.order) == sorted(keys) and starts != sorted(starts)  # not smallest traffic first
    assert all(timer.order[s:s + 32] == timer.group_of[k] for s, k in zip(starts, keys[::32]))  # a group together
    assert spread(keys) == spread(keys) != keys and sorted(spread(keys)) == sorted(keys)


@pytest.mark.parametrize("prefix", ["onnxruntime|", "openvino|"])
def test_a_kernel_the_runtime_cannot_build_fails_alone_and_its_group_is_timed_without_it(prefix):
    bad = rk.runtime_key(_conv_key(8, 14, in_channels=5), prefix)  # 5 channels into a 8-channel weight
    good = [rk.runtime_key(_conv_key(c, 14), prefix) for c in (8, 16)]
    timer = rk.Timer([good[0], bad, good[1]], threads=1)
    assert timer.time(good[0])[0] > 0
    with pytest.raises(Exception):  # noqa: B017 - whatever the runtime raises, for this kernel only
        timer.time(bad)
    assert timer.time(good[1])[0] > 0


@pytest.mark.parametrize("prefix", ["openvino|", "openvino-int8|"])
def test_openvino_s_own_nodes_of_each_kernel_are_counted_whatever_it_names_them(prefix):
    # OpenVINO splits a layer norm into nodes it names itself (ReduceMean_3782, ...) and fuses attention
    # into a Subgraph: each is its kernel's, while the graph's ends, reorders and int8's quantizers are not
    norm = json.dumps(["aten.native_layer_norm.default", [{"T": [4, 197, 192]}, [192], {"T": [192]}, {"T": [192]},
                                                          1e-6], {}])
    qkv = {"T": [1, 3, 197, 64]}
    attention = json.dumps(["aten._scaled_dot_product_flash_attention_for_cpu.default", [qkv, qkv, qkv], {}])
    linear = json.dumps(["aten.addmm.default", [{"T": [384]}, {"T": [394, 192]}, {"T": [192, 384]}], {}])
    keys = tuple(rk.runtime_key(k, prefix) for k in (norm, attention, _conv_key(32, 28), linear))
    group = rk._OpenVinoGroup(*rk._group_graph(keys), prefix[:-1], 1, len(keys))
    for _ in range(4):
        group.run()
    ran = {p.node_name: p.node_type for p in group.request.get_profiling_info() if p.real_time.total_seconds() > 0}
    counted = {name for name in ran if name in group.owner}
    assert {group.owner[name] for name in counted} == {0, 1, 2, 3}  # int8's linear layer dequantizes itself
    assert any(not name.startswith("k") for name in counted)  # a node OpenVINO named, found by its branch
    left = {name: kind for name, kind in ran.items() if name not in counted}
    assert all(kind in ("Reorder", "Subgraph", "FakeQuantize") for kind in left.values()), left
    assert all(rk._QUANTIZER.fullmatch(name) or "Reorder" == kind or name.endswith("_y")
               for name, kind in left.items()), left  # int8: the input's quantizer, the output's dequantization
    norm_s, attention_s, _, linear_s = (statistics.median(t) for t in group.times())
    assert min(norm_s, attention_s, linear_s) > 10 * rk.COUNTER_S  # not the counters' floor


def database(path, backend="onnxruntime", precision="fp32"):
    with Store(path) as store:
        run = store.start_run(["run"], {}, {"cpu_model": "test CPU"})
        for name, latency in CALIBRATION.items():
            store.put_cell(run, {"model": name, "input_size": SIZE, "machine": "m1", "device": "cpu",
                                 "backend": backend, "precision": precision, "threads": 1, "batch_size": 1,
                                 "status": "ok", "latency_median_s": latency, "images_per_s": 1 / latency,
                                 "time_per_image_s": latency})
    return path


def runtime_rows(db, prefix="onnxruntime|"):
    with sqlite3.connect(db) as con:
        return con.execute("SELECT kernel, seconds FROM kernels WHERE kernel LIKE ?", (prefix + "%",)).fetchall()


def test_the_runtime_method_times_the_runtime_s_kernels_once_and_sums_them(tmp_path):
    db = database(tmp_path / "o.db")
    res = dnnbench.open(db)
    first = res.predict("mnasnet0_75", batch_size=1, input_size=SIZE, method="runtime", progress=False,
                        on_busy="measure")
    row = first[0]
    assert row["method"] == "runtime" and row["low_s"] <= row["latency_s"] <= row["high_s"] and "busy" in row
    timed = runtime_rows(db)
    assert len(timed) > 20 and all(s > 0 for _, s in timed)
    assert all(rk.runs(rk.eager_key(k)) for k, _ in timed)
    again = res.predict("mnasnet0_75", batch_size=1, input_size=SIZE, method="runtime", progress=False,
                        on_busy="measure")
    assert runtime_rows(db) == timed and again.to_dicts() == first.to_dicts()  # kept: nothing timed anew
    # auto weighs it on an onnxruntime fp32 setup, with the methods that time nothing: eager's kernels
    # sum what the runtime does not run, and are not timed
    auto = res.predict("mnasnet0_75", batch_size=1, input_size=SIZE, progress=False, on_busy="measure")
    assert auto.weighed == ["runtime", "features", "ops"] and auto[0]["method"] in auto.weighed
    assert "of runtime, features, ops" in str(auto)
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM kernels WHERE kernel NOT LIKE 'onnxruntime|%'").fetchone()[0] == 0


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_runtime_method_on_openvino_times_its_kernels_in_its_precision(tmp_path, monkeypatch, precision):
    db = database(tmp_path / "v.db", backend="openvino", precision=precision)
    row = dnnbench.open(db).predict("mnasnet0_75", batch_size=1, input_size=SIZE, method="runtime", progress=False,
                                    on_busy="measure")[0]
    assert row["method"] == "runtime" and row["low_s"] <= row["latency_s"] <= row["high_s"]
    prefix = rk.RUNTIMES[("openvino", precision)]
    timed = runtime_rows(db, prefix)
    assert len(timed) > 20 and all(s > 0 for _, s in timed) and not runtime_rows(db, "onnxruntime|")
    assert all(k.startswith(prefix) and rk.runs(rk.eager_key(k)) for k, _ in timed)
    # the report weighs what predict stored: this runtime's kernels, by their eager keys
    from dnnbench.analysis import predictor
    from dnnbench.analysis.data import load
    from dnnbench.measure.busy import DISTURBED_SHARE
    from dnnbench.report.build import _predictions

    given = {}
    monkeypatch.setattr(predictor, "for_report", lambda *args: given.update(timed=args[2], runtime=args[4])
                        or {"predicted": []})
    stale = timed[0][0]  # timed by an earlier way of building this runtime's kernels: left out
    with sqlite3.connect(db) as con:
        con.execute("UPDATE kernels SET stamp = ? WHERE kernel = ?",
                    (rk.stamp(stale).replace(f"={rk.FORMATS[prefix[:-1]]};", f"={rk.FORMATS[prefix[:-1]] - 1};"), stale))
    with Store(db) as store:
        models = load(store)
        setup = models[0].setup
        # an eager kernel timed on this machine (by a predict on an eager setup): not weighed here
        store.put_kernels(setup.machine, setup.device, setup.threads, "float32",
                          [{"key": (eager := next(k for k, _ in timed).split("|", 1)[1]), "seconds": 1e-4, "calls": 5,
                            "stamp": rk.stamp(eager)},
                           {"key": timed[1][0].split("|", 1)[1], "seconds": 1e-4, "calls": 5,
                            "stamp": None}])  # taken otherwise too, but not weighed here: not counted
        found = _predictions(store, models, setup, 1)
    assert given["timed"] == {} and stale.split("|", 1)[1] not in given["runtime"]
    assert found["stale_kernels"] == 1  # the report says so
    with sqlite3.connect(db) as con:  # a kernel timed on a busy machine is left out (estimated instead)
        quiet = con.execute("SELECT kernel, seconds FROM kernels WHERE kernel LIKE ? AND "
                            "(contention IS NULL OR contention <= ?) AND kernel != ?",
                            (prefix + "%", DISTURBED_SHARE, stale)).fetchall()
    assert given["runtime"] is not None and given["runtime"] == {rk.eager_key(k): s for k, s in quiet}


def test_the_runtime_method_on_another_runtime_says_what_to_use(tmp_path):
    db = database(tmp_path / "e.db", backend="eager")
    with pytest.raises(UserError, match="--method runtime times a runtime's own kernels.*use --method auto"):
        dnnbench.open(db).predict("mnasnet0_75", batch_size=1, input_size=SIZE, method="runtime", progress=False)
