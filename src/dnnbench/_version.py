"""The version, in a module of its own: a module anywhere in the package reads it without importing
the package root (which loads the API)."""

__version__ = "0.1.0"
