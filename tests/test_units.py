"""Quantities the user types (sizes, durations, batch sizes) and how they are printed."""

import pytest

from dnnbench.errors import UserError
from dnnbench.units import (
    format_bytes,
    format_seconds,
    format_significant,
    parse_batch_sizes,
    parse_duration,
    parse_size,
)


@pytest.mark.parametrize("text, expected", [
    ("512MB", 512_000_000), ("512mb", 512_000_000), ("2GiB", 2 * 1024**3), ("1.5GB", 1_500_000_000),
    ("4096B", 4096), (" 8 KiB ", 8192), ("1kB", 1000), ("0.5MiB", 512 * 1024),
    ("3TB", 3 * 1000**4), ("1TiB", 1024**4), (".25GiB", 1024**3 // 4),
])
def test_parse_size(text, expected):
    value = parse_size(text)
    assert value == expected and isinstance(value, int)


@pytest.mark.parametrize("text", ["", "MB", "lots", "12 XB", "1.2.3MB", "-1MB", "1e9", "5 M B", "1,5GB",
                                  "1.5G", "1k", "4m"])  # bare K/M/G/T: decimal to some tools, binary to others
def test_parse_size_rejects_bad_text(text):
    with pytest.raises(UserError, match="cannot read memory size") as err:
        parse_size(text)
    assert "units are B, kB, MB, GB, TB (powers of 1000), KiB, MiB, GiB, TiB (powers of 1024)" in str(err.value)


@pytest.mark.parametrize("text", ["1000", " 4096 ", "0.5", "0", 512])
def test_parse_size_refuses_a_number_without_unit(text):
    with pytest.raises(UserError) as err:
        parse_size(text)
    number = str(text).strip()
    assert str(err.value) == (f"memory size {text!r} has no unit: write it like {number}MB or {number}MiB; "
                              "units are B, kB, MB, GB, TB (powers of 1000), KiB, MiB, GiB, TiB (powers of 1024)")


@pytest.mark.parametrize("text", ["0B", "0MB", "0.0GiB"])
def test_parse_size_rejects_zero(text):
    with pytest.raises(UserError, match="at least one byte"):
        parse_size(text)


@pytest.mark.parametrize("text, expected", [("2.01KB", 2010), ("32.3KB", 32300)])
def test_parse_size_decimal_is_not_truncated(text, expected):
    assert parse_size(text) == expected


def test_parse_size_below_one_byte_is_refused():
    with pytest.raises(UserError, match="at least one byte"):
        parse_size("0.4B")


@pytest.mark.parametrize("text, expected", [
    ("50ms", 0.05), ("0.2s", 0.2), ("200us", 200e-6), ("200µs", 200e-6), ("3s", 3.0), ("2min", 120.0),
    (" 1.5 S ", 1.5), ("10MS", 0.01),
])
def test_parse_duration(text, expected):
    assert parse_duration(text) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("text", ["", "fast", "5h", "1 hour", "-1s", "1e-3s", "ms"])
def test_parse_duration_rejects_bad_text(text):
    with pytest.raises(UserError, match="cannot read duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["50", " 3 ", "0.5", "0", 20])
def test_parse_duration_refuses_a_number_without_unit(text):
    with pytest.raises(UserError) as err:
        parse_duration(text)
    number = str(text).strip()
    assert str(err.value) == (f"duration {text!r} has no unit: write it like {number}ms or {number}s; "
                              "units are us, ms, s, min")


@pytest.mark.parametrize("text", ["0s", "0ms", "0.0s"])
def test_parse_duration_rejects_zero(text):
    with pytest.raises(UserError, match="above zero"):
        parse_duration(text)


@pytest.mark.parametrize("text, expected", [
    ("1,2,4,8", [1, 2, 4, 8]), ("8,1,4,2", [1, 2, 4, 8]), ("4,4,1,4", [1, 4]), (" 16 , 2 ", [2, 16]),
    ("32", [32]), (7, [7]),
])
def test_parse_batch_sizes(text, expected):
    assert parse_batch_sizes(text) == expected


@pytest.mark.parametrize("text", ["0", "-1", "a", "1,,2", "", "1,2,", "1.5", "1,0,2", "2 4"])
def test_parse_batch_sizes_rejects(text):
    with pytest.raises(UserError, match="bad batch size"):
        parse_batch_sizes(text)


def test_parse_batch_sizes_rejects_superscript_digits():
    with pytest.raises(UserError):
        parse_batch_sizes("1,²")


@pytest.mark.parametrize("value, expected", [
    (None, "-"), (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (1536, "1.5 KiB"), (-2048, "-2.0 KiB"),
    (5 * 1024**2, "5.0 MiB"), (300.4 * 1024**2, "300.4 MiB"),
])
def test_format_bytes(value, expected):
    assert format_bytes(value) == expected


def test_format_bytes_gib():
    number, unit = format_bytes(1.5 * 1024**3).split()
    assert unit == "GiB" and float(number) == 1.5
    number, unit = format_bytes(64 * 1024**3).split()
    assert unit == "GiB" and float(number) == 64


@pytest.mark.parametrize("value, expected", [
    (None, "-"), (1.5, "1.5 s"), (12.345, "12.3 s"), (1.0, "1 s"), (0.0123, "12.3 ms"), (0.001, "1 ms"),
    (2.5e-5, "25 us"), (5e-9, "5 ns"), (0, "0 ns"), (1.23e-14, "0.0000123 ns"), (4321.0, "4,321 s"),
])
def test_format_seconds(value, expected):
    assert format_seconds(value) == expected


@pytest.mark.parametrize("value, expected", [
    (0, "0"), (1, "1"), (12.345, "12.3"), (999.7, "1,000"), (1234.5, "1,234"), (123456789, "123,456,789"),
    (0.000123, "0.000123"), (1.23e-5, "0.0000123"), (-0.5, "-0.5"), (0.0009996, "0.001"), (2.5, "2.5"),
])
def test_format_significant_never_uses_e_notation(value, expected):
    assert format_significant(value) == expected
