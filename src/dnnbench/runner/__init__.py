"""Running measurements: the plan (which cells), the worker (one process per model), the sweep."""

from .plan import ModelJob, RunConfig, plan
from .sweep import Sweep

__all__ = ["ModelJob", "RunConfig", "Sweep", "plan"]
