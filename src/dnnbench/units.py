"""Parsing and printing quantities the user types: memory sizes, durations, batch-size lists."""

from __future__ import annotations

import re

from .errors import UserError

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3, "t": 1000**4, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}


def parse_size(text: str) -> int:
    """Bytes from ``512MB``, ``2GiB``, ``1.5G`` or a plain number of bytes (``MB`` = 10^6, ``MiB`` = 2^20)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if not match or unit not in _SIZE_UNITS:
        raise UserError(f"cannot read memory size {text!r}: write it like 512MB, 2GiB or 1.5GB")
    value = round(float(match.group(1)) * _SIZE_UNITS[unit])
    if value <= 0:
        raise UserError(f"memory size {text!r} must be at least one byte")
    return value


_TIME_UNITS = {"": 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "min": 60.0}


def parse_duration(text: str) -> float:
    """Seconds from ``50ms``, ``0.2s``, ``200us`` or a plain number of seconds."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Zµ]*)\s*", str(text))
    unit = match.group(2).lower() if match else None
    if not match or unit not in _TIME_UNITS:
        raise UserError(f"cannot read duration {text!r}: write it like 50ms, 0.2s or 200us")
    value = float(match.group(1)) * _TIME_UNITS[unit]
    if value <= 0:
        raise UserError(f"duration {text!r} must be above zero")
    return value


def parse_batch_sizes(text: str) -> list[int]:
    """``1,2,4,8`` -> [1, 2, 4, 8], sorted and without repeats; every size a positive whole number."""
    sizes = []
    for part in str(text).split(","):
        part = part.strip()
        if not (part.isascii() and part.isdigit()) or int(part) <= 0:
            raise UserError(f"bad batch size {part!r} in {text!r}: give positive whole numbers separated by commas, "
                            "like 1,2,4,8,16,32,64")
        sizes.append(int(part))
    return sorted(set(sizes))


def format_bytes(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, scale, digits in (("GiB", 1024**3, 2), ("MiB", 1024**2, 1), ("KiB", 1024, 1)):
        if abs(value) >= scale:
            return f"{value / scale:.{digits}f} {unit}"
    return f"{value:.0f} B"


def format_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if abs(value) >= scale * 0.9995 or unit == "ns":
            shown = value / scale
            return f"{shown:.3g} {unit}" if abs(shown) < 1000 else f"{shown:,.0f} {unit}"
    raise AssertionError("unreachable")
