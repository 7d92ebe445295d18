"""`dnnbench eval`: accuracy on labelled images the test makes, with weights the test saves, against
an independent count; weights read without running code; every bad input one clear line."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import dnnbench
from dnnbench.errors import UserError
from dnnbench.measure.accuracy import topk_hits, wilson
from dnnbench.zoo.weights import read_state_dict

COLOURNET = f"{Path(__file__).parent / 'data' / 'colour_models.py'}:colournet"
COLOURS = {"blue": (20, 20, 230), "green": (20, 230, 20), "red": (230, 20, 20)}  # sorted: outputs 0, 1, 2


from clitool import cli  # noqa: E402


def one_error_line(out) -> str:
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("dnnbench: error: ")]
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    return lines[0]


def colour_state() -> dict:
    """Weights under which colournet answers the class of an image's strongest colour channel:
    channels pass through the 1x1 convolution (shifted to stay above the ReLU), the head picks
    blue -> 0, green -> 1, red -> 2 (the sorted class names)."""
    conv = torch.zeros(8, 3, 1, 1)
    for c in range(3):
        conv[c, c] = 1.0
    bias = torch.zeros(8)
    bias[:3] = 3.0
    head = torch.zeros(3, 8)
    head[0, 2] = head[1, 1] = head[2, 0] = 1.0
    return {"0.weight": conv, "0.bias": bias, "4.weight": head, "4.bias": torch.zeros(3)}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """4 images per colour of varied sizes, one red image filed under green (the model must miss it),
    one file that is not an image, and the weights as safetensors and as a .pth state dict."""
    root = tmp_path_factory.mktemp("eval")
    data = root / "data"
    for name, rgb in COLOURS.items():
        (data / name).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (40 + 7 * i, 30 + 5 * i), rgb).save(data / name / f"{i}.png")
    Image.new("RGB", (33, 33), COLOURS["red"]).save(data / "green" / "mislabelled.jpg")
    (data / "blue" / "broken.jpg").write_bytes(b"this is not an image")
    save_file(colour_state(), root / "colour.safetensors")
    torch.save(colour_state(), root / "colour.pth")
    return root


def independent_top1(data: Path) -> tuple[int, int]:
    """Hits and images counted without dnnbench: torchvision's transforms, the model built by hand."""
    from torchvision import transforms

    sys.path.insert(0, str(Path(__file__).parent / "data"))
    from colour_models import colournet

    model = colournet()
    model[4] = torch.nn.Linear(8, 3)
    model.load_state_dict(colour_state())
    model.eval()
    pre = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                              transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    hits = n = 0
    for label, name in enumerate(sorted(COLOURS)):
        for path in sorted((data / name).iterdir()):
            try:
                image = Image.open(path).convert("RGB")
            except OSError:
                continue
            with torch.no_grad():
                hits += int(model(pre(image)[None]).argmax(1).item() == label)
            n += 1
    return hits, n


def test_eval_reports_exactly_the_independently_counted_accuracy_in_every_runtime(dataset, tmp_path):
    hits, n = independent_top1(dataset / "data")
    assert (hits, n) == (12, 13)  # the mislabelled red image is the one miss
    # the on-device runtimes too: their programs are built per batch size (4, then the last image alone)
    out = cli("eval", COLOURNET, "--data", dataset / "data", "--weights", dataset / "colour.safetensors",
              "--backend", "eager,onnxruntime,executorch,litert", "--batch-size", "4", "--db", tmp_path / "e.db",
              "--json")
    assert out.returncode == 0, out.stderr
    rows = {(r["backend"], r["precision"]): r for r in json.loads(out.stdout)}
    assert set(rows) == {("eager", "fp32"), ("onnxruntime", "fp32"), ("executorch", "fp32"), ("litert", "fp32")}
    low, high = wilson(hits, n)
    for r in rows.values():
        assert (r["top1_hits"], r["images"], r["skipped"]) == (hits, n, 1)
        assert r["top1"] == pytest.approx(100 * hits / n) and (r["top1_low"], r["top1_high"]) == pytest.approx(
            (100 * low, 100 * high))
        assert r["top5"] is None  # 3 classes: every image is in the top five
        assert "broken.jpg" in r["skipped_examples"][0]
    assert {rows[k]["top1_drop"] for k in rows if k[0] != "eager"} == {0}
    assert "your own classes, by sorted name" in out.stderr and "4 (1000 -> 3 outputs)" in out.stderr
    stored = dnnbench.open(tmp_path / "e.db").accuracy
    assert sorted((r["backend"], r["top1_hits"]) for r in stored) == [
        ("eager", hits), ("executorch", hits), ("litert", hits), ("onnxruntime", hits)]
    # a head resized to the file's classes is another model: named as `run --weights` names its cells
    assert {r["model"] for r in stored} == {f"{COLOURNET} [colour.safetensors]"}


def test_int8_is_evaluated_on_calibration_from_the_images_and_a_pth_state_dict_loads(dataset):
    rows = dnnbench.evaluate(COLOURNET, dataset / "data", weights=dataset / "colour.pth", backend="onnxruntime",
                             precision="int8", batch_size=4, progress=False)
    int8 = next(r for r in rows if r["precision"] == "int8")
    assert int8["images"] == 13 and int8["top1_hits"] == 12 and int8["top1_drop"] == 0
    assert "calibrated on 12 of the images, spread evenly over the set" in int8["calibration"]
    assert "onnxruntime int8" in str(rows)


def test_wilson_interval_matches_published_values():
    # Newcombe (1998), Table I: 0/10 -> 0 to 0.2775; 81/263 -> 0.2553 to 0.3662 (Wilson, no continuity correction)
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert topk_hits(torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]]), torch.tensor([1, 2]), ks=(1, 2)) == {1: 1, 2: 1}


class _Creates:
    """Unpickled, this would create the file ``path``: a pickle that runs code."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_weights_that_would_run_code_are_refused_and_the_code_never_runs(dataset, tmp_path, how):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    payload = {"0.weight": torch.zeros(1), "trap": _Creates(marker)}
    if how == "torch.save":
        torch.save(payload, evil)
    else:
        evil.write_bytes(pickle.dumps(payload))
    with pytest.raises(UserError, match="holds Python objects besides tensors .* so dnnbench does not"):
        read_state_dict(evil)
    line = one_error_line(cli("eval", COLOURNET, "--data", dataset / "data", "--weights", evil, "--db", tmp_path / "x.db"))
    assert "holds Python objects besides tensors (it refers to " in line  # the global it stopped at
    line = one_error_line(cli("run", COLOURNET, "--weights", evil, "--quick", "--db", tmp_path / "x.db"))
    assert "holds Python objects besides tensors" in line
    assert not marker.exists()


@pytest.mark.parametrize("seed", [0, 2, 20, 195])  # torch.load fails on these bytes with UnpicklingError,
def test_random_bytes_are_no_weights_file_however_torch_fails_on_them(tmp_path, seed):  # IndexError, KeyError,
    junk = tmp_path / "junk.pth"  # UnicodeDecodeError: each is the same one clear line
    junk.write_bytes(__import__("random").Random(seed).randbytes(256))
    with pytest.raises(UserError, match="is not a PyTorch weights file"):
        read_state_dict(junk)


def test_run_with_the_users_weights_measures_the_resized_model_under_its_own_name(dataset, tmp_path):
    res = dnnbench.run(COLOURNET, weights=dataset / "colour.safetensors", input_size=32, batch_sizes=[1], quick=True,
                       max_seconds_per_cell=0.2, on_busy="measure", db=tmp_path / "w.db", progress=False)
    [cell] = res.cells
    assert cell["model"] == f"{COLOURNET} [colour.safetensors]" and cell["status"] == "ok"
    from dnnbench.store import Store

    with Store(tmp_path / "w.db", create=False) as store:
        [model] = store.models()
    assert model["params"] == 3 * 8 + 8 + 8 * 3 + 3  # the head resized to the file's 3 classes
    assert model["top1"] is None  # the user's weights: no published accuracy


@pytest.mark.parametrize("make, message", [
    (lambda d, r: (d.mkdir(), {})[1], "no images found"),
    (lambda d, r: (d.mkdir(), (d / "n01440764").mkdir(), (d / "n99999999").mkdir(),
                   Image.new("RGB", (8, 8)).save(d / "n01440764" / "a.png"),
                   Image.new("RGB", (8, 8)).save(d / "n99999999" / "b.png"), {})[-1],
     "not ImageNet-1k WordNet ids: n99999999"),
    (lambda d, r: (d.mkdir(), *[((d / c).mkdir(), Image.new("RGB", (8, 8)).save(d / c / "a.png")) for c in "ab"],
                   {"weights": r / "colour.safetensors"})[-1],
     r"2 classes of your own \(a, b\) for a model with 3 outputs"),
    (lambda d, r: ((d / "x").mkdir(parents=True), Image.new("RGB", (8, 8)).save(d / "x" / "a.png"),
                   (r / "junk.pth").write_bytes(b"\x80\x02junk" * 32), {"weights": r / "junk.pth"})[-1],
     "is not a PyTorch weights file"),
    (lambda d, r: ((d / "x").mkdir(parents=True), Image.new("RGB", (8, 8)).save(d / "x" / "a.png"),
                   (r / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}"),
                   {"weights": r / "bad.safetensors"})[-1],
     "is not a readable safetensors file"),
    (lambda d, r: ((d / "x").mkdir(parents=True), Image.new("RGB", (8, 8)).save(d / "x" / "a.png"),
                   save_file({"0.weight": torch.zeros(8, 5, 1, 1)}, r / "other.safetensors"),
                   {"weights": r / "other.safetensors"})[-1],
     "does not fit .*shapes differ: 0.weight: file 8x5x1x1, model 8x3x1x1"),
])
def test_bad_data_and_weights_are_one_clear_line(tmp_path, dataset, make, message):
    data = tmp_path / "d"
    options = make(data, dataset)
    weights = options.get("weights", dataset / "colour.safetensors")
    line = one_error_line(cli("eval", COLOURNET, "--data", data, "--weights", weights, "--db", tmp_path / "x.db"))
    assert __import__("re").search(message, line), line


def decompression_bomb(path: Path) -> None:
    """A 57-byte PNG whose header claims 20000 x 20000 pixels (no pixel data follows)."""
    import struct
    import zlib

    header = b"IHDR" + struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + header + struct.pack(">I", zlib.crc32(header))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk + b"\x00\x00\x00\x00IEND\xaeB`\x82")


def test_a_spreadsheets_labels_file_a_bomb_among_the_images_and_a_limit_spread_over_the_classes(tmp_path, dataset):
    data = tmp_path / "flat"
    data.mkdir()
    decompression_bomb(data / "bomb.png")
    rows = ["file,label", "bomb.png,blue"]
    for name, rgb in COLOURS.items():
        for i in range(3):
            Image.new("RGB", (20, 20), rgb).save(data / f"{name}{i}.png")
            rows.append(f"{name}{i}.png,{name}")
    (data / "labels.csv").write_text("\n".join(rows) + "\n", encoding="utf-8-sig")  # as a spreadsheet saves it
    found = dnnbench.evaluate(COLOURNET, data, weights=dataset / "colour.safetensors", limit=5, progress=False)
    assert (found[0]["images"], found[0]["top1_hits"], found[0]["skipped"]) == (4, 4, 1)
    assert "bomb.png" in found[0]["skipped_examples"][0] and "decompression bomb" in found[0]["skipped_examples"][0]


@pytest.mark.parametrize("entry", ["../outside.png", "/etc/hostname", "sub/../../outside.png"])
def test_a_labels_file_names_only_images_inside_the_data_folder(tmp_path, entry):
    from dnnbench.worker.images import find_images

    data = tmp_path / "flat"
    data.mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "outside.png")
    (data / "labels.csv").write_text(f"file,label\n{entry},x\n")
    with pytest.raises(UserError, match=f"row 1: '{entry}' is outside --data .*: list each image by its path inside"):
        find_images(data)


def test_measured_accuracy_replaces_the_published_one_and_int8_never_borrows_fp32s(tmp_path, synthetic):
    from dnnbench.analysis.data import load
    from dnnbench.store import Store

    db = synthetic.make_db(tmp_path / "s.db", setups=True)
    with Store(db) as store:
        store.put_accuracy({"model": "resnet18", "input_size": 224, "machine": "m1", "device": "cpu",
                            "backend": "onnxruntime", "precision": "fp32", "threads": 2, "layout": "nchw",
                            "weights": "w.safetensors", "data": "/data", "images": 500, "top1_hits": 340,
                            "top5_hits": 450, "top1": 68.0, "top1_low": 63.8, "top1_high": 71.9, "top5": 90.0,
                            "top5_low": 87.0, "top5_high": 92.3, "skipped": 0, "mapping": "WordNet ids"})
        models = load(store)
    by = {(m.model, m.setup.backend, m.setup.precision): m for m in models}
    measured = by[("resnet18", "onnxruntime", "fp32")]
    assert (measured.top1, measured.accuracy, measured.top1_published) == (68.0, "measured", 69.8)
    assert by[("resnet18", "eager", "fp32")].top1 == 69.8  # published, where nothing was measured
    int8 = by[("resnet18", "onnxruntime", "int8")]
    assert int8.top1 is None and int8.accuracy == "none"
    answer = dnnbench.open(db).recommend(max_memory="2GB", max_latency="1s", min_top1=60)
    rows = {(r["model"], r["backend"], r["precision"]): r for r in answer}
    assert rows[("resnet18", "onnxruntime", "int8")]["broken"] == ["top-1 not measured in int8: measure it with "
                                                                   "dnnbench eval"]
    assert rows[("resnet18", "onnxruntime", "fp32")]["top1_source"] == "measured"
    assert "Top-1 measured by dnnbench eval" in str(answer) and "published 69.80%, -1.80" in str(answer)


def test_a_resized_heads_accuracy_is_never_the_imagenet_models_top1(tmp_path, synthetic):
    from dnnbench.analysis.data import load
    from dnnbench.store import Store

    db = synthetic.make_db(tmp_path / "s.db")
    with Store(db) as store:  # as an older version stored it: under the ImageNet model's own name
        store.put_accuracy({"model": "resnet18", "input_size": 224, "machine": "m1", "device": "cpu",
                            "backend": "eager", "precision": "fp32", "threads": 2, "layout": "nchw",
                            "weights": "/w/r18_2cls.safetensors", "data": "/data", "images": 10, "top1_hits": 5,
                            "top1": 50.0, "top1_low": 23.7, "top1_high": 76.3, "skipped": 0,
                            "mapping": "your own classes", "heads_resized": ["fc (1000 -> 2 outputs)"]})
        models = load(store)
    resnet18 = next(m for m in models if m.model == "resnet18" and m.setup.precision == "fp32")
    assert (resnet18.top1, resnet18.accuracy) == (69.8, "published")
    assert [r["model"] for r in dnnbench.open(db).accuracy] == ["resnet18 [r18_2cls.safetensors]"]
    assert "50.00%" not in str(dnnbench.open(db).recommend(max_memory="2GB", max_latency="1s"))


def test_wordnet_folders_map_to_imagenet_outputs_and_inspect_shows_the_measured_top1(tmp_path):
    data = tmp_path / "val"
    for wnid, rgb in (("n01440764", COLOURS["red"]), ("n01443537", COLOURS["blue"])):  # outputs 0 and 1
        (data / wnid).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (30, 30), rgb).save(data / wnid / f"{i}.JPEG")
    state = colour_state()
    head = torch.zeros(1000, 8)
    head[0, 0] = head[1, 2] = 1.0  # red -> output 0, blue -> output 1
    state["4.weight"], state["4.bias"] = head, torch.zeros(1000)
    save_file(state, tmp_path / "imagenet.safetensors")
    rows = dnnbench.evaluate(COLOURNET, data, weights=tmp_path / "imagenet.safetensors", db=tmp_path / "a.db",
                             progress=False)
    assert (rows[0]["top1_hits"], rows[0]["images"], rows[0]["mapping"]) == (6, 6, "WordNet ids in ImageNet-1k order")
    assert rows[0]["top5"] == 100.0
    [figures] = dnnbench.inspect(COLOURNET, db=tmp_path / "a.db", progress=False)
    assert figures.measured_top1 == 100.0 and "6 images" in figures.measured_source
    out = cli("inspect", COLOURNET, "--db", tmp_path / "a.db")
    assert "measured top-1 (%)" in out.stdout and f"measured top-1 of {COLOURNET}: dnnbench eval on 6 images" in out.stdout


def test_weights_that_are_not_the_papers_are_said_in_inspect_and_the_report():
    from dnnbench.analysis.data import Measured
    from dnnbench.report.build import _accuracy_words
    from dnnbench.setup import Setup

    found = {f.name: f for f in dnnbench.inspect(["googlenet", "resnet50", "timm/resnext101_32x4d"], progress=False)}
    assert found["googlenet"].paper_top1 == 66.454 and found["resnet50"].paper_top1 == 76.002
    text = str(dnnbench.inspect(["googlenet", "resnet50"], progress=False))
    assert "another training than the paper's for: googlenet (69.78 against 66.45)" in text and "resnet50 (" not in text
    models = [Measured("googlenet", 224, Setup(threads=1), top1=69.778), Measured("resnet50", 224, Setup(threads=1),
                                                                                  top1=76.13)]
    [words] = _accuracy_words(models)
    assert "googlenet 69.78% against 66.45%" in words and "resnet50" not in words


def test_without_weights_the_timm_weights_in_the_hugging_face_cache_are_used(tmp_path, monkeypatch):
    import timm
    from safetensors.torch import save_model

    data = tmp_path / "val"
    (data / "0").mkdir(parents=True)
    Image.new("RGB", (40, 40), COLOURS["red"]).save(data / "0" / "a.png")
    cache = tmp_path / "hub"
    snapshot = cache / "models--timm--resnet18.a1_in1k" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    save_model(timm.create_model("resnet18", pretrained=False), str(snapshot / "model.safetensors"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    [row] = dnnbench.evaluate("timm/resnet18", data, progress=False)
    assert row["weights"] == str(snapshot / "model.safetensors") and row["images"] == 1
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    with pytest.raises(UserError, match="no weights for timm/resnet18: give --weights FILE"):
        dnnbench.evaluate("timm/resnet18", data, progress=False)
