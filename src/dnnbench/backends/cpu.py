"""What this CPU can compute natively, from the flags in ``/proc/cpuinfo``: the basis of every
precision decision, so that a refusal names the instructions that are missing."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

from ..measure.device import _cpu_model

# Native bf16 arithmetic: AVX512-BF16 (Cooper Lake, Zen 4 and later) or AMX (Sapphire Rapids and
# later); Arm's "bf16" (Neoverse V1/N2). Without them bf16 is converted to fp32 around each op.
BF16 = ("avx512_bf16", "amx_bf16", "bf16")
# Native fp16 arithmetic: AVX512-FP16 or AMX-FP16 (Sapphire / Granite Rapids); Arm's "asimdhp".
FP16 = ("avx512_fp16", "amx_fp16", "asimdhp")
# int8 dot products (VNNI); without them u8 x s8 products go through 16-bit sums that can saturate,
# which is why the int8 paths quantize with reduce_range (7 bits) there.
INT8_DOT = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")


@functools.cache
def flags() -> frozenset[str]:
    """The CPU's feature flags (x86 ``flags``, Arm ``Features``); empty where unreadable."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def has_any(names: tuple[str, ...]) -> bool:
    return not flags().isdisjoint(names)


def lacks(names: tuple[str, ...]) -> str:
    """``this CPU (AMD EPYC) has none of avx512_bf16, amx_bf16, bf16``: the end of a refusal."""
    return f"this CPU ({_cpu_model()}) has none of {', '.join(names)}"


LAST_LEVEL_CACHE_BYTES = 32 << 20  # where sysfs does not say


@functools.cache
def last_level_cache_bytes() -> int:
    """The size of the CPU's last-level cache (sysfs; ``LAST_LEVEL_CACHE_BYTES`` where unreadable)."""
    sizes = {}
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            level, size = int((index / "level").read_text()), (index / "size").read_text().strip()
        except (OSError, ValueError):
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(size[-1:], 1)
        if size.rstrip("KMG").isdigit():
            sizes[level] = int(size.rstrip("KMG")) * scale
    return sizes[max(sizes)] if sizes else LAST_LEVEL_CACHE_BYTES


def is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
