"""Static figures: file size against a real safetensors file, accuracy with its source, density."""

import pytest
import torch
from safetensors.torch import save_model
from torch import nn

import dnnbench
from dnnbench.measure.filesize import safetensors_size
from dnnbench.zoo import get, published_accuracy


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "enet", "timm/mobilenetv1_100", "shufflenet-v1",
                                  "pretrainedmodels/nasnetamobile", "swin_t"])
def test_file_size_is_the_real_safetensors_size(name, tmp_path):
    entry = get(name)
    model = entry.build("cpu")
    path = tmp_path / "w.safetensors"
    save_model(model, str(path))
    assert safetensors_size(model) == path.stat().st_size
    assert safetensors_size(entry.build("meta")) == path.stat().st_size


def test_file_size_stores_tied_weights_once(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(8, 16, bias=False)
            self.head = nn.Linear(16, 8, bias=False)
            self.head.weight = nn.Parameter(self.embed.weight.T.contiguous())
            self.again = nn.Linear(8, 16, bias=False)
            self.again.weight = self.embed.weight

    model = Tied()
    path = tmp_path / "t.safetensors"
    save_model(model, str(path))
    assert safetensors_size(model) == path.stat().st_size


@pytest.mark.parametrize("name,top1,top5,source", [
    ("resnet50", 76.13, 92.862, "torchvision 0.29.1 ResNet50_Weights.IMAGENET1K_V1"),
    ("inception_v3", 77.294, 93.45, "centre crop 299"),
    ("timm/inception_v4", 80.144, 94.99, "inception_v4.tf_in1k evaluated by timm at 299 px"),
    ("pretrainedmodels/bninception", 73.522, 91.56, "Our porting"),
    ("pretrainedmodels/polynet", 81.002, 95.624, "Cadene"),
])
def test_published_accuracy_with_source(name, top1, top5, source):
    accuracy = published_accuracy(get(name))
    assert accuracy.top1 == pytest.approx(top1, abs=1e-3)
    assert accuracy.top5 == pytest.approx(top5, abs=1e-2)
    assert source in accuracy.source


@pytest.mark.parametrize("name", ["enet", "bn-nin", "bn-alexnet", "shufflenet-v1", "timm/resnetv2_152"])
def test_no_source_means_no_accuracy(name):
    assert published_accuracy(get(name)) is None


def test_accuracy_does_not_apply_at_another_input_size():
    assert published_accuracy(get("resnet50", input_size=160)) is None


def test_static_figures_of_resnet50():
    [figures] = dnnbench.inspect(["resnet50"])
    assert figures.params == 25_557_032
    assert figures.macs == 4_089_184_256
    assert figures.flops == 2 * figures.macs
    assert figures.input_size == 224
    assert figures.file_size == pytest.approx(25_557_032 * 4, rel=0.01)
    assert figures.accuracy_density == pytest.approx(76.13 / 25.557032)


def test_native_nets_match_their_papers():
    # ShuffleNet 1x, g=3: 140 MFLOPs (multiply-adds) in Zhang et al. 2017, Table 2
    assert dnnbench.inspect("shufflenet-v1")[0].macs == pytest.approx(140e6, rel=0.03)
    # BN-AlexNet is AlexNet plus a scale and shift per channel of each normalised layer
    bn_channels = 64 + 192 + 384 + 256 + 256 + 4096 + 4096
    bn_alexnet, alexnet = dnnbench.inspect(["bn-alexnet", "alexnet"])
    assert bn_alexnet.params == alexnet.params + 2 * bn_channels
    for name in ("bn-nin", "enet", "bn-alexnet", "shufflenet-v1"):
        with torch.inference_mode():
            out = get(name).build("cpu")(torch.randn(2, 3, 224, 224))
        assert out.shape == (2, 1000)
