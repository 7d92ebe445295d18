"""Parsing and printing quantities the user types: memory sizes, durations, batch-size lists."""

from __future__ import annotations

import math
import re

from .errors import UserError

# No bare K/M/G/T: tools disagree on them (Docker's 1g is 2^30 bytes, most others' 10^9).
_SIZE_UNITS = {
    "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
}
SIZE_UNITS_TEXT = "B, kB, MB, GB, TB (powers of 1000), KiB, MiB, GiB, TiB (powers of 1024)"


def parse_size(text: str) -> int:
    """Bytes from ``512MB``, ``2GiB`` or ``1.5GB`` (``MB`` = 10^6, ``MiB`` = 2^20).

    A number without a unit is refused: ``1000`` could mean bytes or megabytes, and a wrong guess
    turns a memory limit into one no model meets (or every model meets)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if match and not match.group(2):
        raise UserError(f"memory size {text!r} has no unit: write it like {match.group(1)}MB or "
                        f"{match.group(1)}MiB; units are {SIZE_UNITS_TEXT}")
    unit = match.group(2).lower() if match else None
    if not match or unit not in _SIZE_UNITS:
        raise UserError(f"cannot read memory size {text!r}: write it like 512MB, 2GiB or 1.5GB; "
                        f"units are {SIZE_UNITS_TEXT}")
    value = round(float(match.group(1)) * _SIZE_UNITS[unit])
    if value <= 0:
        raise UserError(f"memory size {text!r} must be at least one byte")
    return value


_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "min": 60.0}
TIME_UNITS_TEXT = "us, ms, s, min"


def parse_duration(text: str) -> float:
    """Seconds from ``50ms``, ``0.2s``, ``200us`` or ``2min``.

    A number without a unit is refused: ``--max-latency 50`` reads as 50 ms to some and 50 s to others."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Zµ]*)\s*", str(text))
    if match and not match.group(2):
        raise UserError(f"duration {text!r} has no unit: write it like {match.group(1)}ms or "
                        f"{match.group(1)}s; units are {TIME_UNITS_TEXT}")
    unit = match.group(2).lower() if match else None
    if not match or unit not in _TIME_UNITS:
        raise UserError(f"cannot read duration {text!r}: write it like 50ms, 0.2s or 200us; "
                        f"units are {TIME_UNITS_TEXT}")
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


def format_significant(value: float, digits: int = 3) -> str:
    """``value`` to ``digits`` significant digits in plain notation, never e-notation: 1,230 and 0.000123
    (``format(v, ".3g")`` gives 1.23e+03 and 0.000123, 1.23e-05)."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    decimals = max(digits - 1 - math.floor(math.log10(abs(value))), 0)
    text = f"{value:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_seconds(value: float | None) -> str:
    if value is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        if abs(value) >= scale * 0.9995 or unit == "ns":
            shown = value / scale
            return f"{format_significant(shown)} {unit}" if abs(shown) < 1000 else f"{shown:,.0f} {unit}"
    raise AssertionError("unreachable")


def above(value: int, limit: int) -> str:
    """``value`` bytes against a ``limit`` bytes, with as many digits as it takes to tell them apart."""
    a, b = format_bytes(value), format_bytes(limit)
    if a == b:
        a, b = f"{value:,} bytes", f"{limit:,} bytes"
    return f"{a}, above --max-memory {b}"


def format_rate(per_second: float | None) -> str:
    """Requests (or images) per second as people read them: ``37.5``, ``1,250``."""
    if per_second is None:
        return "-"
    return f"{per_second:,.0f}" if per_second >= 1000 else f"{per_second:.3g}"
