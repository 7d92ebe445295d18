"""The accuracy scenario (`dnnbench eval`): builds the model, loads the user's weights (never
unpickling code), prepares it through the backend seam, and counts top-1 and top-5 hits over the
images, read by a parallel data loader. Records: ``setup`` (how classes were mapped, the
preprocessing), ``progress`` (images done and skipped), a ``result`` per setup, or ``error`` with a
one-line message. The model's code runs here only.
"""

from __future__ import annotations

import os
import time

from ..setup import REFERENCE

TORCH = True


def run(spec: dict, emit) -> int:
    from ..errors import UserError

    try:
        evaluate(spec, emit)
    except UserError as exc:
        emit("error", message=str(exc))
        return 2
    except Exception as exc:  # the model's own failure: said in one line, the traceback in the log
        import traceback

        traceback.print_exc()
        first = str(exc).splitlines()[0] if str(exc) else ""
        emit("error", message=f"{spec['model']} failed: {type(exc).__name__}: {first}")
        return 1
    return 0


def _weights(entry, model, path: str | None) -> tuple[str, list[str]]:
    """Load the weights into ``model``: the user's file, else the torchvision cache's file if on disk."""
    from ..errors import UserError
    from ..zoo.weights import load_user_weights_, read_state_dict

    if path is None:
        path = _cached(entry)
        if path is None:
            raise UserError(f"no weights for {entry.name}: give --weights FILE (a .safetensors, .pth or .pt state "
                            "dict); none is in the torchvision or Hugging Face cache either, and nothing is downloaded")
    path = os.path.abspath(path)
    state = read_state_dict(path)
    return path, load_user_weights_(model, state, path, entry.name)


def _cached(entry) -> str | None:
    """The file of ``entry``'s published weights in torch hub's cache (torchvision) or the Hugging Face
    hub's (timm), if it is there."""
    if entry.source == "timm" and entry.weights:
        return _hf_cached(entry.weights)
    if entry.source != "torchvision" or not entry.weights:
        return None
    import torch
    import torchvision.models as tvm

    weights = next((w for w in tvm.get_model_weights(entry.name) if str(w) == entry.weights), None)
    if weights is None:
        return None
    path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))
    return path if os.path.isfile(path) else None


def _hf_cached(weights: str) -> str | None:
    """timm's ``arch.tag`` weights as the Hugging Face hub caches them: HF_HUB_CACHE (or HF_HOME/hub, or
    ~/.cache/huggingface/hub), ``models--timm--arch.tag/snapshots/REVISION/model.safetensors``."""
    import glob

    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface"), "hub")
    for name in ("model.safetensors", "pytorch_model.bin"):
        found = sorted(glob.glob(os.path.join(hub, f"models--timm--{weights}", "snapshots", "*", name)))
        if found:
            return found[-1]
    return None


def evaluate(spec: dict, emit) -> None:
    import contextlib
    import copy

    import torch

    from ..backends import get_backend
    from ..backends.correctness import calibrating_on
    from ..measure.accuracy import topk_hits
    from ..zoo import get
    from .images import ImageDataset, class_mapping, collate, preprocessing

    torch.set_num_threads(spec["threads"])
    device = spec["device"]
    entry = get(spec["model"], spec["input_size"])
    model = entry.build("cpu")
    weights, resized = _weights(entry, model, spec.get("weights"))
    model.eval()
    pre = preprocessing(entry, model, spec.get("eval_input_size"), spec.get("crop_pct"))
    with torch.inference_mode():
        outputs = model(torch.zeros(1, 3, pre.crop, pre.crop)).shape[1]
    mapping, how = class_mapping(spec["classes"], outputs)
    emit("setup", mapping=how, preprocess=pre.to_dict(), weights=weights, heads_resized=resized, outputs=outputs)

    data = ImageDataset([(p, mapping[c]) for p, c in spec["samples"]], pre)
    setups = [REFERENCE] + [tuple(s) for s in spec["setups"] if tuple(s) != REFERENCE]  # eager fp32 beside: the drop, paired
    calibration, calibration_note = _calibration_images(spec, data) if any(p == "int8" for _, p in setups) else \
        ([], None)

    example = torch.zeros(spec["batch_size"], 3, pre.crop, pre.crop, device=device)
    steps = []
    for backend, precision in setups:
        net = copy.deepcopy(model).to(device) if (backend, precision) != setups[-1] else model.to(device)
        with calibrating_on(calibration) if calibration else contextlib.nullcontext():
            steps.append(get_backend(backend).prepare(net, example, precision, device, spec["threads"]))

    loader = torch.utils.data.DataLoader(data, batch_size=spec["batch_size"], num_workers=spec["workers"],
                                         collate_fn=collate, shuffle=False)
    hits = [{1: 0, 5: 0} for _ in steps]
    # seconds and images of each setup's forward passes over full batches (a padded one computes more
    # images than it counts): its images per second; padded ones only when no batch is full
    busy = [[0.0, 0, 0.0, 0] for _ in steps]
    seen = skipped = 0
    reasons: list[str] = []
    with torch.inference_mode():
        for step in steps:  # compiled or built for the batch shape before the clock runs
            step.forward(example)
        for x, y, bad in loader:
            skipped += len(bad)
            reasons += bad[: max(0, 5 - len(reasons))]
            if x is not None:
                n = len(x)
                # a short batch (the last, or one with unreadable images) is padded to the batch size: one
                # shape throughout, so a backend compiled per shape is not compiled again mid-evaluation
                x = torch.cat([x, x.new_zeros(spec["batch_size"] - n, *x.shape[1:])]) if n < spec["batch_size"] else x
                x = x.to(device)
                for i, step in enumerate(steps):
                    t0 = time.perf_counter()
                    logits = step.forward(x)[:n].cpu()
                    at = 0 if n == spec["batch_size"] else 2
                    busy[i][at] += time.perf_counter() - t0
                    busy[i][at + 1] += n
                    for k, v in topk_hits(logits, y).items():
                        hits[i][k] += v
                seen += len(y)
            emit("progress", done=seen + skipped, skipped=skipped)
    for step in steps:
        step.close()
    if seen == 0:
        raise _no_images(spec, reasons)
    for (backend, precision), h, (full_s, full_n, short_s, short_n) in zip(setups, hits, busy, strict=True):
        seconds, images = (full_s, full_n) if full_n else (short_s, short_n)
        emit("result", backend=backend, precision=precision, images=seen, top1_hits=h[1], top5_hits=h[5],
             skipped=skipped, skipped_examples=reasons, images_per_s=images / seconds if seconds > 0 else None,
             calibration=calibration_note if precision == "int8" else None)


def _calibration_images(spec: dict, data) -> tuple[list, str]:
    """int8's calibration batches: images spread evenly over the set (it is in class order), so that the
    scales see every kind of input; and the sentence that says so."""
    import torch

    from ..backends.correctness import CALIBRATION_BATCH, CALIBRATION_BATCHES

    wanted = CALIBRATION_BATCHES * CALIBRATION_BATCH
    step = max(1, len(data) // (2 * wanted))
    images = [x for x, _, _ in (data[i] for i in range(0, len(data), step)) if x is not None]
    images = images[:: max(1, len(images) // wanted)][:wanted]
    if len(images) < CALIBRATION_BATCH:
        raise _no_images(spec)
    batches = [torch.stack(images[i:i + CALIBRATION_BATCH]) for i in range(0, len(images), CALIBRATION_BATCH)]
    batches = [b for b in batches if len(b) == CALIBRATION_BATCH]
    return batches, (f"int8 scales calibrated on {sum(len(b) for b in batches)} of the images, spread evenly over "
                     "the set")


def _no_images(spec, reasons=()):
    from ..errors import UserError

    why = f" (e.g. {reasons[0]})" if reasons else ""
    return UserError(f"none of the {len(spec['samples'])} images could be read{why}: give a folder of JPEG or PNG "
                     "images")
