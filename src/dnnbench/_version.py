"""The version, in a module of its own: a module anywhere in the package reads it without importing
the package root (which loads the API)."""

__version__ = "0.2.0"  # 0.2.0: passes timed with freed memory kept (`measure.memory.speed_mode`)
