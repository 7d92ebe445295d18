"""The report: every figure of the two papers drawn from the user's database (PNG and SVG), the
tables as CSV, and one self-contained interactive HTML page."""

from .build import build_report

__all__ = ["build_report"]
