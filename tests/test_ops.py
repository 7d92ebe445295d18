"""MAC counting: formulas on hand-sized layers, and the published counts of torchvision and timm."""

import csv
from pathlib import Path

import pytest
import torch
import torchvision.models as tvm
from torch import nn

from dnnbench.measure.ops import MacCounter, count_macs
from dnnbench.zoo import PRESETS, get

DATA = Path(__file__).parent / "data"


def macs_of(module, x, inference=False):
    ctx = torch.inference_mode() if inference else torch.no_grad()
    with ctx, MacCounter() as counter:
        module(x)
    return counter.count


def test_conv_formulas():
    x = torch.randn(2, 8, 10, 10)
    assert macs_of(nn.Conv2d(8, 16, 3, padding=1), x).macs == 2 * 16 * 10 * 10 * 8 * 9
    assert macs_of(nn.Conv2d(8, 16, 3, padding=1, groups=4), x).macs == 2 * 16 * 10 * 10 * 2 * 9
    assert macs_of(nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), x).macs == 2 * 8 * 5 * 5 * 9
    assert macs_of(nn.Conv2d(8, 4, 3, padding=2, dilation=2), x).macs == 2 * 4 * 10 * 10 * 8 * 9
    # transposed: every input element meets C_out * k*k weights
    assert macs_of(nn.ConvTranspose2d(8, 4, 2, stride=2), x).macs == 2 * 8 * 10 * 10 * 4 * 4


@pytest.mark.parametrize("inference", [False, True])
def test_linear_matmul_einsum(inference):
    x = torch.randn(3, 7, 16)
    assert macs_of(nn.Linear(16, 32), x, inference).macs == 3 * 7 * 16 * 32
    a, b = torch.randn(4, 5, 6), torch.randn(4, 6, 7)
    assert macs_of(lambda t: torch.matmul(t, b), a, inference).macs == 4 * 5 * 6 * 7
    assert macs_of(lambda t: torch.einsum("bij,bjk->bik", t, b), a, inference).macs == 4 * 5 * 6 * 7
    assert macs_of(lambda t: t @ torch.randn(6, 2), a, inference).macs == 4 * 5 * 6 * 2


def _encoder_expected(batch, length, embed, ffn, layers):
    per_layer = (batch * length * embed * 3 * embed  # q, k, v projections
                 + batch * length * length * embed * 2  # Q K^T and P V, all heads
                 + batch * length * embed * embed  # output projection
                 + 2 * batch * length * embed * ffn)  # feed-forward
    return layers * per_layer


@pytest.mark.parametrize("fastpath", [True, False])
@pytest.mark.parametrize("inference", [True, False])
def test_attention_fast_and_slow_paths_agree(fastpath, inference):
    """The fused encoder-layer and multi-head-attention kernels of eval mode count like the plain path."""
    embed, heads, ffn, length, batch = 64, 4, 128, 10, 2
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(embed, heads, ffn, batch_first=True, dropout=0.0),
                                    2, enable_nested_tensor=False).eval()
    mha = nn.MultiheadAttention(embed, heads, batch_first=True).eval()
    x = torch.randn(batch, length, embed)
    previous = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(fastpath)
    try:
        assert macs_of(encoder, x, inference).macs == _encoder_expected(batch, length, embed, ffn, 2)
        got = macs_of(lambda t: mha(t, t, t, need_weights=False), x, inference).macs
        assert got == _encoder_expected(batch, length, embed, 0, 1)
    finally:
        torch.backends.mha.set_fastpath_enabled(previous)


def test_vit_b16_counts_attention_on_meta(meta_input):
    """FlopCounterMode gives 11.3 GMACs here; the truth (torchvision's _ops) is 17.564."""
    count = count_macs(get("vit_b_16").build("meta"), meta_input(224))
    assert abs(count.macs / 1e9 - 17.564) < 0.001


def test_counts_scale_with_batch(meta_input):
    model = get("resnet18").build("meta")
    assert count_macs(model, meta_input(224, 8)).macs == 8 * count_macs(model, meta_input(224)).macs


def test_meta_count_equals_real_count():
    entry = get("mobilenet_v3_small")
    x = torch.randn(1, 3, 224, 224)
    real = macs_of(entry.build("cpu"), x, inference=True)
    meta = count_macs(entry.build("meta"), x.to("meta"))
    assert real.macs == meta.macs and real.extras == meta.extras


def _published_tolerance(published: float, relative: float) -> float:
    """Relative tolerance, widened to the rounding of the published figure (0.04 is 0.035 to 0.045)."""
    decimals = len(repr(published).split(".")[1]) if "." in repr(published) else 0
    return max(relative * published, 0.5 * 10 ** -decimals)


# Where torchvision's weights include an auxiliary classifier, the inference form does not.
AUX_HEAD = {
    # Inception-v3's AuxLogits: conv 768->128 (98,304 + 256 BN), conv 128->768 5x5 (2,457,600 + 1,536 BN),
    # fc 768->1000 (769,000): 3,326,696 parameters used only in training.
    "inception_v3": 3_326_696,
}


def _torchvision_cases():
    for name in tvm.list_models(module=tvm):
        for weights in tvm.get_model_weights(name):
            yield pytest.param(name, weights, id=f"{name}-{weights.name}")


@pytest.mark.parametrize("name,weights", list(_torchvision_cases()))
def test_torchvision_published_params_and_ops(name, weights, meta_input):
    crop = weights.transforms.keywords.get("crop_size", 224)
    entry = get(name, input_size=crop)
    model = entry.build("meta")
    params = sum(p.numel() for p in model.parameters())
    assert params + AUX_HEAD.get(name, 0) == weights.meta["num_params"]
    gmacs = count_macs(model, meta_input(crop)).macs / 1e9
    published = weights.meta["_ops"]
    assert abs(gmacs - published) <= _published_tolerance(published, 0.01), (gmacs, published)


def _timm_published():
    table = {}
    for path in sorted(DATA.glob("timm_benchmark_*.csv")):
        with path.open() as f:
            for row in csv.DictReader(f):
                if row["infer_gmacs"]:
                    table.setdefault((row["model"], int(row["infer_img_size"])), float(row["infer_gmacs"]))
    return table


TIMM_PRESET_MODELS = sorted({n for names in PRESETS.values() for n in names if n.startswith("timm/")})


@pytest.mark.parametrize("name", TIMM_PRESET_MODELS)
def test_timm_presets_against_published_gmacs(name, meta_input):
    """timm's infer_gmacs is fvcore's count: MACs plus norm and pooling work, compared like with like."""
    entry = get(name)
    published = _timm_published().get((name[5:], entry.input_size))
    assert published is not None, f"no published infer_gmacs for {name} at {entry.input_size} px"
    count = count_macs(entry.build("meta"), meta_input(entry.input_size))
    assert abs(count.fvcore_macs / 1e9 - published) <= _published_tolerance(published, 0.02)
    # the headline figure leaves the element-wise work out, and it is a small share of it
    assert count.macs < count.fvcore_macs < 1.07 * count.macs
