"""Names, aliases, presets, native input sizes and the user's own models."""

import textwrap

import pytest
import torch

from dnnbench.errors import UserError
from dnnbench.zoo import PRESETS, all_names, get, preset
from dnnbench.zoo.registry import SOURCES


@pytest.mark.parametrize("alias,name", [
    ("vgg-16", "vgg16"), ("VGG_16", "vgg16"), ("inception-v4", "timm/inception_v4"), ("ResNet-50", "resnet50"),
    ("squeezenet-1.0", "squeezenet1_0"), ("nasnet-a-mobile", "pretrainedmodels/nasnetamobile"),
    ("bn-inception", "pretrainedmodels/bninception"), ("shufflenet", "shufflenet-v1"), ("Inception_V3", "inception_v3"),
])
def test_aliases(alias, name):
    assert get(alias).name == name


def test_every_torchvision_classifier_and_timm_model_is_registered():
    import timm
    import torchvision.models as tvm

    names = set(all_names())
    assert set(tvm.list_models(module=tvm)) <= names
    assert {f"timm/{n}" for n in timm.list_models()} <= names


@pytest.mark.parametrize("name,size", [
    ("resnet50", 224), ("inception_v3", 299), ("timm/inception_v4", 299), ("timm/nasnetalarge", 331),
    ("efficientnet_b7", 600), ("vit_h_14", 518), ("vit_b_16", 224), ("pretrainedmodels/polynet", 331), ("timm/legacy_xception", 299), ("enet", 224),
])
def test_native_input_sizes(name, size):
    assert get(name).input_size == size


def test_input_size_override():
    assert get("resnet50", input_size=160).input_size == 160
    for name in ("vit_b_16", "timm/vit_tiny_patch16_224", "timm/resnet18"):  # transformers are rebuilt for the size
        model = get(name, input_size=160).build("cpu")
        with torch.inference_mode():
            assert model(torch.randn(1, 3, 160, 160)).shape == (1, 1000)


def test_unknown_name_suggests_close_names():
    with pytest.raises(UserError, match=r"unknown model 'resnet5'.*did you mean.*resnet50"):
        get("resnet5")
    with pytest.raises(UserError, match="did you mean"):
        get("timm/inception_v44")


def test_did_you_mean_lists_each_model_once():
    with pytest.raises(UserError) as err:
        get("resnet5")
    assert str(err.value) == "unknown model 'resnet5'; did you mean resnet50, resnet152, resnet34?"


@pytest.mark.parametrize("name", ["resnet5", "Resnet-5", "densenet-12", "vgg-1", "efficientnet-b", "dpn-9"])
def test_did_you_mean_never_names_one_model_twice(name):
    with pytest.raises(UserError) as err:
        get(name)
    suggested = str(err.value).split("did you mean ")[1].rstrip("?").split(", ")
    assert len({get(s).name for s in suggested}) == len(suggested) == 3


def test_presets():
    assert len(preset("canziani2016")) == 14
    assert set(preset("canziani2016")) < set(preset("culurciello2018"))
    assert len(preset("keras")) == 33
    with pytest.raises(UserError, match="unknown zoo 'nope'; choose one of canziani2016"):
        preset("nope")


@pytest.mark.parametrize("zoo", sorted(PRESETS))
def test_every_preset_name_resolves(zoo):
    for name in preset(zoo):
        entry = get(name)
        assert entry.name == name
        assert entry.source in SOURCES and entry.source != "user"


def test_inference_form_has_no_aux_heads():
    assert get("googlenet").build("meta").aux1 is None
    assert get("inception_v3").build("meta").AuxLogits is None
    assert not get("resnet18").build("meta").training


def test_user_model_from_file(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(textwrap.dedent("""
        from torch import nn
        def tiny():
            return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
        def not_a_model():
            return 42
    """))
    entry = get(f"{path}:tiny", input_size=32)
    assert (entry.source, entry.family, entry.input_size) == ("user", "user", 32)
    model = entry.build("cpu")
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    assert get(f"{path}:tiny").input_size == 224
    with pytest.raises(UserError, match="has no function 'nope'"):  # found when built: the file runs only then
        get(f"{path}:nope").build("cpu")
    with pytest.raises(UserError, match="returned int, not a torch.nn.Module"):
        get(f"{path}:not_a_model").build("cpu")
    with pytest.raises(UserError, match="not found"):
        get(f"{tmp_path}/missing.py:tiny")


def test_naming_a_user_model_does_not_run_its_file(tmp_path):
    path = tmp_path / "loud.py"
    marker = tmp_path / "ran"
    path.write_text(f"open({str(marker)!r}, 'w').close()\nfrom torch import nn\ndef m():\n    return nn.Linear(3, 2)\n")
    entry = get(f"{path}:m", input_size=8)
    assert not marker.exists()  # resolving the name ran nothing: a sweep resolves names in its own process
    entry.build("cpu")
    entry.build("meta")
    assert marker.exists()


def test_user_model_from_module(tmp_path, monkeypatch):
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "nets.py").write_text("from torch import nn\ndef lin():\n    return nn.Linear(3, 2)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert isinstance(get("mypkg.nets:lin").build("cpu"), torch.nn.Linear)
    with pytest.raises(UserError, match="cannot import module 'mypkg.absent'"):
        get("mypkg.absent:lin").build("cpu")


def test_user_model_that_fails_to_import(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(UserError, match="importing .* failed: RuntimeError: boom"):
        get(f"{path}:anything").build("cpu")


def test_published_weights_are_timms_default_at_timms_test_size_and_families_are_right():
    from dnnbench.zoo import published_accuracy

    # list_pretrained is alphabetical: it picked the adversarial ensemble (79.998) over the standard weights
    entry = get("timm/inception_resnet_v2")
    assert entry.weights == "inception_resnet_v2.tf_in1k" and published_accuracy(entry).top1 == 80.434
    # timm tests tf_efficientnetv2_b0 at 224 px (trained at 192): accuracy and operations at the size of the table
    entry = get("timm/tf_efficientnetv2_b0")
    assert entry.input_size == 224 and published_accuracy(entry).top1 == 78.386
    assert get("timm/tf_efficientnetv2_b3").weights == "tf_efficientnetv2_b3.in21k_ft_in1k"
    assert [get(n).family for n in ("densenet121", "timm/densenet201", "timm/seresnext50_32x4d")] == \
        ["DenseNet", "DenseNet", "SENet"]
