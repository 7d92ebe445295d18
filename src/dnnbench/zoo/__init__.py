"""The model zoo: names, builders, presets and the catalogue of published accuracy."""

from .catalog import Accuracy, published_accuracy
from .presets import PRESETS, preset
from .registry import ModelEntry, all_names, build, get

__all__ = ["Accuracy", "ModelEntry", "PRESETS", "all_names", "build", "get", "preset", "published_accuracy"]
