"""Cost models: what a sharing class costs (surrogate loss) and stores (parameters).

A cost model answers one question, :meth:`CostModel.options`: for a group of layers that may share,
which sharing actions exist and what does each cost and store? Three models cover design.md section 2:

- :class:`MedoidCosts`: ``cost[i][j]`` = loss when layer ``i`` is served by layer ``j``'s parameters; a
  class stores one member's weights (memory = one layer) and costs ``min_j sum_i cost[i][j]``.
- :class:`PairwiseCosts`: a class costs the sum of its pairwise weights ``w[i][j]`` (i < j); memory = one layer.
- :class:`GroupCosts`: an oracle or table giving, for any group, the exact cost and memory of each action
  (tie, medoid, basis with rank r, dense, ...). The set-partitioning formulation is exact for it.

This module is numpy-only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .bounds import FamilyBound, KindBound

__all__ = ["Option", "CostModel", "MedoidCosts", "PairwiseCosts", "GroupCosts"]


@dataclass(frozen=True)
class Option:
    """One way a group can share: an action label, its exact cost and its memory.

    ``cost`` is in the units of the surrogate (loss); ``memory`` in parameters stored for the whole group.
    ``representative`` is the serving layer of a medoid class; ``params`` holds anything else an action
    needs to be applied later (for example ``{"rank": 16}``).
    """

    action: str
    cost: float
    memory: int
    representative: int | None = None
    params: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)


def _check_square(name: str, matrix: Any, n: int | None) -> np.ndarray:
    try:
        a = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric n x n matrix: {exc}") from None
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"{name} must be a square n x n matrix, got shape {a.shape}")
    if n is not None and a.shape[0] != n:
        raise ValueError(f"{name} is {a.shape[0]} x {a.shape[0]} but the graph has {n} layers")
    if np.isnan(a).any():
        i, j = map(int, np.argwhere(np.isnan(a))[0])
        raise ValueError(f"{name}[{i}][{j}] is NaN; costs must be finite and >= 0")
    if np.isinf(a).any():
        i, j = map(int, np.argwhere(np.isinf(a))[0])
        raise ValueError(
            f"{name}[{i}][{j}] is infinite; costs must be finite and >= 0 "
            "(to forbid a pair from sharing, give it as a conflict)"
        )
    if (a < 0).any():
        i, j = map(int, np.argwhere(a < 0)[0])
        raise ValueError(f"{name}[{i}][{j}] = {a[i, j]} is negative; costs must be >= 0")
    return a


class CostModel:
    """Base class. Subclasses implement :meth:`options` for a sorted tuple of layer indices; the rest has neutral
    defaults (no table, no bounds, every group evaluable) that group costs override."""

    kind: str = "abstract"
    seconds: float = 0.0
    """Seconds spent computing costs and bounds on demand (an oracle's evaluations, pair statistics): the
    graph's own work, which ``solve`` reports apart from the solver's (``facts["graph_seconds"]``)."""
    table: dict[tuple[int, ...], list[Option]] | None = None
    """The listed groups' options, for a model given as a table (None: computed on demand)."""

    def options(self, group: tuple[int, ...], size: int) -> list[Option]:
        """Actions available to ``group`` (sorted, same family, conflict-free); ``size`` = one layer's parameters."""
        raise NotImplementedError

    @property
    def has_bounds(self) -> bool:
        """Whether :meth:`bounds` is known (it makes column generation possible, with a global bound)."""
        return False

    def bounds(self, family: tuple[int, ...]) -> FamilyBound | None:
        """Lower bounds on every option of every group (2+ members) of ``family``; None when none is known."""
        return None

    def refine(self, pairs: Sequence[tuple[int, int]], deadline: float | None = None) -> int:
        """Make the bounds exact on ``pairs`` where the model can; how many were done."""
        return 0

    def known_pairs(self, family: tuple[int, ...]) -> set[tuple[int, int]]:
        """Pairs of ``family`` whose bound is exact."""
        return set()

    def evaluable(self, group: tuple[int, ...]) -> bool:
        """Whether the costs of ``group`` (sorted) can be had."""
        return True

    def forget(self, group: tuple[int, ...]) -> None:
        """Drop any cached options of ``group`` (an oracle whose answer for it changed)."""

    def evaluated(self) -> dict[tuple[int, ...], list[Option]]:
        """Every group whose options are known so far."""
        return dict(self.table or {})


class MedoidCosts(CostModel):
    """``cost[i][j]`` = surrogate loss when layer ``i`` is served by layer ``j``'s own weights (p-median)."""

    kind = "medoid"

    def __init__(self, cost: Any, n: int | None = None) -> None:
        a = _check_square("cost", cost, n)
        diag = np.diag(a)
        if (diag != 0).any():
            i = int(np.flatnonzero(diag != 0)[0])
            raise ValueError(f"cost[{i}][{i}] = {diag[i]} but a layer serving itself costs 0 (diagonal must be 0)")
        self.matrix = a
        self.matrix.setflags(write=False)

    def group_cost(self, group: tuple[int, ...]) -> tuple[float, int]:
        """Best medoid of ``group``: (cost, representative)."""
        idx = np.asarray(group)
        if len(idx) == 1:
            return 0.0, int(idx[0])
        col = self.matrix[np.ix_(idx, idx)].sum(axis=0)
        k = int(np.argmin(col))
        return float(col[k]), int(idx[k])

    def options(self, group: tuple[int, ...], size: int) -> list[Option]:
        cost, rep = self.group_cost(group)
        return [Option("medoid", cost, size, representative=rep)]


class PairwiseCosts(CostModel):
    """A class costs ``sum over pairs {i, j} in S of w[i][j]``; ``w`` symmetric with a zero diagonal."""

    kind = "pairwise"

    def __init__(self, weights: Any, n: int | None = None) -> None:
        a = _check_square("weights", weights, n)
        if not np.allclose(a, a.T, rtol=1e-12, atol=0):
            i, j = map(int, np.argwhere(~np.isclose(a, a.T, rtol=1e-12, atol=0))[0])
            raise ValueError(f"weights must be symmetric: weights[{i}][{j}] = {a[i, j]} != "
                             f"weights[{j}][{i}] = {a[j, i]}")
        if (np.diag(a) != 0).any():
            i = int(np.flatnonzero(np.diag(a) != 0)[0])
            raise ValueError(f"weights[{i}][{i}] must be 0")
        self.matrix = (a + a.T) / 2
        self.matrix.setflags(write=False)

    def group_cost(self, group: tuple[int, ...]) -> float:
        idx = np.asarray(group)
        return float(np.triu(self.matrix[np.ix_(idx, idx)], 1).sum())

    def options(self, group: tuple[int, ...], size: int) -> list[Option]:
        return [Option("tie", self.group_cost(group), size)]


OptionLike = Option | tuple | Mapping[str, Any]


def _as_option(raw: OptionLike, group: tuple[int, ...]) -> Option:
    if isinstance(raw, Option):
        opt = raw
    elif isinstance(raw, Mapping):
        try:
            opt = Option(
                str(raw["action"]), raw["cost"], raw["memory"], raw.get("representative"), dict(raw.get("params", {}))
            )
        except KeyError as exc:
            raise ValueError(f"option for group {group} lacks key {exc}; need action, cost, memory") from None
    else:
        t = tuple(raw)
        if len(t) not in (3, 4):
            raise ValueError(f"option for group {group} must be (action, cost, memory[, params]), got {raw!r}")
        opt = Option(str(t[0]), t[1], t[2], None, dict(t[3]) if len(t) == 4 else {})
    cost, memory = opt.cost, opt.memory
    if isinstance(cost, bool) or not isinstance(cost, (int, float, np.integer, np.floating)):
        raise ValueError(f"cost of action {opt.action!r} for group {group} is not a number: {cost!r}")
    if not np.isfinite(cost) or cost < 0:
        raise ValueError(f"cost of action {opt.action!r} for group {group} is {cost}; must be finite and >= 0")
    if isinstance(memory, bool) or not isinstance(memory, (int, np.integer)) or memory < 0:
        raise ValueError(
            f"memory of action {opt.action!r} for group {group} is {memory!r}; must be an integer >= 0 (parameters)"
        )
    return Option(opt.action, float(cost), int(memory), opt.representative, opt.params)


class GroupCosts(CostModel):
    """Exact cost and memory of every (group, action), from a table or an oracle.

    ``source`` is either a mapping ``{group: [options]}`` (groups as tuples of layer indices; a group not in the
    table may not form) or a callable ``source(group) -> iterable of options``. An option is an
    :class:`Option`, a tuple ``(action, cost, memory[, params])`` or a mapping with those keys. Results of the
    oracle are cached per group.
    """

    kind = "group"

    def __init__(self, source: Mapping[tuple[int, ...], Iterable[OptionLike]] | Callable[..., Any],
                 bounds: Callable[[tuple[int, ...]], FamilyBound | Sequence[KindBound] | None] | None = None,
                 refine: Callable[..., int] | None = None,
                 known_pairs: Callable[[tuple[int, ...]], set[tuple[int, int]]] | None = None) -> None:
        """``bounds(family)``: see :meth:`bounds`. ``refine(pairs, deadline)``: make the bounds exact on those
        pairs (cheaper than their options; returns how many were done) and ``known_pairs(family)``: the pairs
        whose bound is exact, for cost models whose bounds tighten with pair statistics."""
        self._cache: dict[tuple[int, ...], list[Option]] = {}
        self._depth = 0
        self.seconds = 0.0
        self._bounds = bounds
        self._refine = refine
        self._known_pairs = known_pairs
        if callable(source) and not isinstance(source, Mapping):
            self._oracle: Callable[..., Any] | None = source
            self.table = None
        elif isinstance(source, Mapping):
            self._oracle = None
            self.table = {}
            for group, opts in source.items():
                key = tuple(sorted(int(i) for i in group))
                if len(key) == 0 or len(set(key)) != len(key):
                    raise ValueError(f"group {group!r} in the cost table is empty or repeats a layer")
                self.table[key] = [_as_option(o, key) for o in opts]
        else:
            raise TypeError(f"group costs must be a mapping or a callable, got {type(source).__name__}")

    @property
    def has_bounds(self) -> bool:
        """Whether :meth:`bounds` is known (it makes column generation possible, with a global bound)."""
        return self._bounds is not None

    def _timed(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, its seconds added to :attr:`seconds` (once: calls made inside it are not counted twice)."""
        if self._depth:
            return fn(*args)
        self._depth += 1
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self._depth -= 1
            self.seconds += time.perf_counter() - t

    def bounds(self, family: tuple[int, ...]) -> FamilyBound | None:
        """The :class:`~colorshare.formulations.bounds.FamilyBound` of a family (sorted member indices) on every
        option of its groups of 2+ members; None when none is known. Asked again as groups are evaluated (a
        bound may tighten with every pair priced)."""
        if self._bounds is None:
            return None
        fb = self._timed(self._bounds, family)
        return fb if fb is None or isinstance(fb, FamilyBound) else FamilyBound(list(fb))

    def refine(self, pairs: Sequence[tuple[int, int]], deadline: float | None = None) -> int:
        """Make the family bounds exact on ``pairs`` where the cost model can (see ``__init__``); how many."""
        return 0 if self._refine is None else int(self._timed(self._refine, pairs, deadline))

    def known_pairs(self, family: tuple[int, ...]) -> set[tuple[int, int]]:
        """Pairs of ``family`` whose bound is exact (evaluated pairs count too)."""
        known = set() if self._known_pairs is None else set(self._known_pairs(family))
        fam = set(family)
        return known | {g for g in (self.table if self.table is not None else self._cache)
                        if len(g) == 2 and g[0] in fam and g[1] in fam}

    def forget(self, group: tuple[int, ...]) -> None:
        """Drop the cached options of ``group`` (an oracle whose answer for it changed)."""
        self._cache.pop(tuple(sorted(group)), None)

    def forget_all(self) -> None:
        """Drop every cached option (an oracle whose prices all changed, e.g. rescaled curvatures)."""
        self._cache.clear()

    def evaluable(self, group: tuple[int, ...]) -> bool:
        """Whether the costs of ``group`` (sorted) can be had: any group for an oracle, a listed one for a table.
        A table with bounds stands for the evaluated columns of a larger space: the groups it does not list
        exist there, priced by the bounds only."""
        return self.table is None or group in self.table

    def evaluated(self) -> dict[tuple[int, ...], list[Option]]:
        """Every group whose options are known (the table, or what the oracle has been asked so far)."""
        return dict(self.table) if self.table is not None else dict(self._cache)

    def options(self, group: tuple[int, ...], size: int) -> list[Option]:
        if self.table is not None:
            return self.table.get(group, [])
        hit = self._cache.get(group)
        if hit is None:
            if self._oracle is None:
                raise RuntimeError("group costs without a table or an oracle")
            raw = self._timed(self._oracle, group)
            hit = [_as_option(o, group) for o in (raw or ())]
            if len(self._cache) < 1_000_000:
                self._cache[group] = hit
        return hit
