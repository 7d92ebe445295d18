"""Pareto frontiers: the items no other item beats on both cost and value."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


def _number(v) -> float | None:
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else v


def pareto_front(items: Iterable[T], cost: Callable[[T], float | None],
                 value: Callable[[T], float | None]) -> list[T]:
    """The items not dominated by another, sorted by cost ascending (lower cost is better, higher value
    is better).

    Item p dominates item q when cost(p) <= cost(q) and value(p) >= value(q) with at least one of the two
    strict. Items whose cost or value is None (or NaN) are left out. Items with exactly equal cost and
    value do not dominate each other, so all of them stay; the result is sorted by (cost ascending,
    value descending) and keeps the input order among exact ties, so it is deterministic.
    """
    scored = []
    for item in items:
        c, v = _number(cost(item)), _number(value(item))
        if c is not None and v is not None:
            scored.append((c, v, item))
    scored.sort(key=lambda s: (s[0], -s[1]))  # stable: input order among exact ties
    front = []
    best_value = -math.inf       # the best value among the items of strictly lower cost
    group_cost, group_best = None, -math.inf
    for c, v, item in scored:
        if c != group_cost:      # a new cost: the previous group now has strictly lower cost
            best_value = max(best_value, group_best)
            group_cost, group_best = c, v  # sorted by value descending: the first of a group is its best
        # dominated by a cheaper item with value >= v, or by an equally cheap item with value > v
        if v <= best_value or v < group_best:
            continue
        front.append(item)
    return front
