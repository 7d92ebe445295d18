"""Plain-text output shared by the commands: aligned tables, and names sorted as people read them."""

from __future__ import annotations

import re

from .errors import UserError


def table(headings: list[str], rows: list[list[str]], right: set[int]) -> str:
    """An aligned text table; columns in ``right`` are right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headings)]

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return "\n".join([line(headings), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def natural_key(text: str) -> list:
    """Sort key that orders resnet18 < resnet34 < resnet101 (numbers by value, not as text)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def names_of(value, what: str) -> list:
    """A list from a list, or from one string of comma-separated names (as the command line takes)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [n.strip() for n in value.split(",") if n.strip()]
    try:
        names = list(value)
    except TypeError:
        raise UserError(f"{what} must be a name or a list of names, got {value!r}") from None
    wrong = [n for n in names if not isinstance(n, str) or not n.strip()]
    if wrong:
        raise UserError(f"{what} must be names (text), got {wrong[0]!r} in {names!r}")
    return [n.strip() for n in names]


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_cell(value):
    """A CSV field that a spreadsheet shows as the text it is: text starting as a formula does
    (``=``, ``+``, ``-``, ``@``, a tab or carriage return) gets a leading apostrophe, as OWASP advises
    against CSV injection. Names come from databases others measured (a machine called ``=HYPERLINK(...)``);
    numbers are left as they are."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


NAME_SHOWN = 40  # characters of a name a figure's legend or a heading shows


def short_name(name, limit: int = NAME_SHOWN) -> str:
    """``name`` as a legend or a heading shows it: at most ``limit`` characters, the middle elided
    (a machine name comes from databases others measured, and may be any length)."""
    name = str(name)
    if len(name) <= limit:
        return name
    keep = limit - 1
    return name[:keep - keep // 3] + "…" + name[len(name) - keep // 3:]
