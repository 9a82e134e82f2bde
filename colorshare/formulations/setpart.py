"""Set partitioning over enumerated (group, action) columns: exact for every cost model over its columns.

One binary per column (a conflict-free same-family group with one of its actions, carrying the action's
exact cost and memory); every layer covered exactly once; one knapsack row for the budget (parameters).
Because a column fixes both the group and the action (tie, medoid, basis with rank r, dense, ...), the
solver chooses groups and ranks jointly.

Columns are enumerated up to ``max_group_size``; with a cap smaller than a family, or a ``group_filter``,
the model is exact for that restricted column set only (the anchors of design.md section 3 are such
restrictions: adjacent groups, singletons only, one group per family).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from ..validation import check_max_group_size
from .base import Chosen, Formulation, budget_hi
from .costs import Option
from .graph import SharingGraph
from .program import IntegerProgram, ProgramBuilder

__all__ = ["SetPartition", "enumerate_groups", "admits"]

MAX_COLUMNS = 500_000


def enumerate_groups(graph: SharingGraph, max_group_size: int | None = None) -> Iterator[tuple[int, ...]]:
    """Every conflict-free same-family group (sorted tuple) of at most ``max_group_size`` layers, then every
    group the graph's scopes allow (unless ``max_group_size`` is 1: no sharing)."""
    for members in graph.family_members.values():
        cap = len(members) if max_group_size is None else max_group_size

        def extend(group: tuple[int, ...], start: int, cap: int = cap,
                   members: tuple[int, ...] = members) -> Iterator[tuple[int, ...]]:
            yield group
            if len(group) == cap:
                return
            for k in range(start, len(members)):
                j = members[k]
                if all(graph.can_share(i, j) for i in group):
                    yield from extend(group + (j,), k + 1)

        for k, i in enumerate(members):
            yield from extend((i,), k + 1)
    if max_group_size != 1:  # groups across families that a scope allows (a shared input), in full
        yield from graph.scope_groups()


def admits(group: tuple[int, ...], max_group_size: int | None = None,
           group_filter: Callable[[tuple[int, ...]], bool] | None = None, graph: SharingGraph | None = None) -> bool:
    """Whether a set partitioning restricted by ``max_group_size`` / ``group_filter`` has ``group``'s columns
    (a scope group of ``graph`` is not limited by the size, only by 1: no sharing)."""
    size_ok = max_group_size is None or len(group) <= max_group_size or (
        max_group_size > 1 and graph is not None and graph.in_scope(group))
    return size_ok and (group_filter is None or group_filter(group))


class SetPartition(Formulation):
    name = "setpart"
    exact_for = ("medoid", "pairwise", "group")
    supports_cost_cap = True

    def __init__(
        self,
        graph: SharingGraph,
        budget: float,
        max_group_size: int | None = None,
        group_filter: Callable[[tuple[int, ...]], bool] | None = None,
        max_columns: int = MAX_COLUMNS,
        cost_cap: float | None = None,
        groups: Iterable[tuple[int, ...]] | None = None,
        deadline: float | None = None,
    ) -> None:
        """``groups``: an explicit candidate list (e.g. generated columns); the model is then exact over the
        columns of those groups only (``restricted``). ``deadline`` (a ``time.perf_counter()`` value): groups are
        then evaluated smallest first (every singleton before any pair), and those not evaluated when it passes
        are left out: ``cut`` counts them, and the model is exact over the evaluated columns only
        (``uncovered`` lists the layers left with no column at all)."""
        self.max_group_size = check_max_group_size(max_group_size)
        self.group_filter = group_filter
        self.max_columns = max_columns
        self.candidates = None if groups is None else [tuple(sorted(int(i) for i in grp)) for grp in groups]
        self.deadline = deadline
        self.cut = 0
        largest = max(len(m) for m in graph.family_members.values())
        space = largest if graph.max_group_size is None else min(largest, graph.max_group_size)  # the graph's own
        self.restricted = group_filter is not None or (max_group_size is not None and max_group_size < space) \
            or self.candidates is not None
        super().__init__(graph, budget, cost_cap)
        self.restricted = self.restricted or self.cut > 0

    def _groups(self) -> Iterator[tuple[int, ...]]:
        g = self.graph
        table = getattr(g.cost_model, "table", None)
        if self.candidates is not None:
            source: Iterator[tuple[int, ...]] = iter(self.candidates)
        elif table is not None:
            source = iter(sorted(table))
        else:
            source = enumerate_groups(g, self.max_group_size)
        if self.deadline is None:
            yield from (grp for grp in source if admits(grp, self.max_group_size, self.group_filter, g))
            return
        ordered = sorted((grp for grp in source if admits(grp, self.max_group_size, self.group_filter, g)), key=len)
        for k, group in enumerate(ordered):
            if time.perf_counter() > self.deadline:
                self.cut = len(ordered) - k
                return
            yield group

    def _build(self) -> IntegerProgram:
        g = self.graph
        b = ProgramBuilder()
        self.columns: list[tuple[tuple[int, ...], Option]] = []
        cover: list[list[int]] = [[] for _ in range(g.n)]
        for group in self._groups():
            for opt in g.options(group):
                if not self.keeps(opt.cost):
                    continue
                v = b.var(opt.cost, f"c{len(self.columns)}")
                self.columns.append((group, opt))
                for i in group:
                    cover[i].append(v)
                if len(self.columns) > self.max_columns:
                    raise ValueError(
                        f"set partitioning would enumerate more than {self.max_columns} columns; "
                        "pass max_group_size=K (a restriction) or use the pmedian/clique formulation"
                    )
        self.index = {(grp, o.action, o.memory, o.representative): k for k, (grp, o) in enumerate(self.columns)}
        self.uncovered = [i for i in range(g.n) if not cover[i]]
        for i in range(g.n):
            b.row(cover[i], [1.0] * len(cover[i]), 1.0, 1.0, f"cover{i}")
        hi = budget_hi(self.budget)
        if not math.isinf(hi):
            # memory in units of the columns' common divisor: the same integer row, with small coefficients that
            # solvers' feasibility tolerances cannot blur (a 1e-6 slack on 1e5-parameter coefficients would)
            mem = np.array([o.memory for _, o in self.columns], dtype=np.int64)
            unit = self.memory_unit = max(1, int(np.gcd.reduce(mem))) if len(mem) else 1
            b.row(list(range(len(self.columns))), [float(m // unit) for m in mem], -math.inf, float(int(hi) // unit),
                  "budget")
        return b.build()

    def decode(self, x: np.ndarray) -> Chosen:
        out = [self.columns[k] for k in np.flatnonzero(np.round(x) == 1)]
        return sorted(out, key=lambda t: t[0][0])

    def encode(self, chosen: Chosen) -> np.ndarray | None:
        x = np.zeros(self.program.num_vars)
        for group, opt in chosen:
            k = self.index.get((group, opt.action, opt.memory, opt.representative))
            if k is None:
                k = next((k for k, (grp, o) in enumerate(self.columns)
                          if grp == group and o.action == opt.action and o.memory == opt.memory), None)
            if k is None:
                return None
            x[k] = 1
        return x
