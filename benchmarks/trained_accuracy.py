"""Accuracy of a model trained here, in eager fp32, eager bf16 and ONNX Runtime int8, by `dnnbench eval`.

Makes a labelled image set of four texture classes (horizontal stripes, vertical stripes, checkers,
blobs; random colours, frequencies and noise), trains benchmarks/models/small_cnn.py on 1,600 images
for a few epochs on the CPU, saves its weights as safetensors, and evaluates 800 held-out images
through dnnbench.evaluate. Prints the table with 95% intervals. About two minutes on 2 cores.

    .venv/bin/python benchmarks/trained_accuracy.py [--out DIR]
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).parent
MODEL = f"{ROOT / 'models' / 'small_cnn.py'}:small_cnn"
CLASSES = ("checkers", "horizontal", "spots", "vertical")
SIZE = 64  # the crop; dnnbench's default preprocessing resizes to 73 px (crop 0.875) first


def texture(kind: str, rng: random.Random, side: int = 73) -> Image.Image:
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    period = rng.uniform(5, 14)
    phase = rng.uniform(0, 2 * math.pi)
    if kind == "horizontal":
        wave = np.sin(2 * math.pi * y / period + phase)
    elif kind == "vertical":
        wave = np.sin(2 * math.pi * x / period + phase)
    elif kind == "checkers":
        wave = np.sin(2 * math.pi * x / period + phase) * np.sin(2 * math.pi * y / period + phase)
    else:
        wave = np.zeros_like(x) - 1
        for _ in range(rng.randint(3, 7)):
            cx, cy, r = rng.uniform(0, side), rng.uniform(0, side), rng.uniform(4, 10)
            wave = np.maximum(wave, 1 - ((x - cx) ** 2 + (y - cy) ** 2) / r ** 2)
    a, b = np.array([rng.uniform(0, 255) for _ in range(3)]), np.array([rng.uniform(0, 255) for _ in range(3)])
    mix = (np.clip(wave, -1, 1)[..., None] + 1) / 2
    pixels = a * mix + b * (1 - mix) + np.random.default_rng(rng.randint(0, 2**31)).normal(0, rng.uniform(20, 70),
                                                                                           (side, side, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def make_set(folder: Path, per_class: int, seed: int) -> None:
    rng = random.Random(seed)
    for kind in CLASSES:
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            texture(kind, rng).save(folder / kind / f"{i}.png")


def train(folder: Path, weights: Path, epochs: int = 6) -> None:
    from safetensors.torch import save_model

    from dnnbench.worker.images import IMAGENET_MEAN, IMAGENET_STD, ImageDataset, Preprocess, find_images
    from dnnbench.zoo import get

    images = find_images(folder)
    pre = Preprocess(int(SIZE / 0.875), SIZE, IMAGENET_MEAN, IMAGENET_STD, "bilinear", "ImageNet defaults")
    data = ImageDataset([(p, CLASSES.index(c)) for p, c in images.samples], pre)
    xs = torch.stack([data[i][0] for i in range(len(data))])
    ys = torch.tensor([data[i][1] for i in range(len(data))])
    model = get(MODEL, SIZE).builder()
    model[-1] = torch.nn.Linear(64, len(CLASSES))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(xs), generator=gen)
        total = 0.0
        for i in range(0, len(xs), 64):
            idx = order[i:i + 64]
            loss = torch.nn.functional.cross_entropy(model(xs[idx]), ys[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss) * len(idx)
        print(f"epoch {epoch + 1}: training loss {total / len(xs):.3f}", file=sys.stderr)
    model.eval()
    save_model(model, str(weights))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="keep the images and weights here (default: a temporary folder)")
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        make_set(out / "train", 400, seed=1)
        make_set(out / "val", 200, seed=2)
        weights = out / "small_cnn.safetensors"
        train(out / "train", weights)
        import dnnbench

        rows = dnnbench.evaluate(MODEL, out / "val", weights=weights, input_size=SIZE, batch_size=50,
                                 setup=[dnnbench.Setup(backend="eager", precision="bf16"),
                                        dnnbench.Setup(backend="onnxruntime", precision="int8")])
        print(rows)


if __name__ == "__main__":
    main()
