"""Column generation for set partitioning over families too large to enumerate (2^30 groups per family).

The restricted master starts from every singleton (all its options). Each round
solves its LP relaxation (HiGHS), reads the duals ``pi_i`` of the cover rows and the price ``lam >= 0`` of
the budget row, and prices groups with the cost model's :class:`SeparableBound` lists: a group S can only
improve the LP if ``min_b sum_{i in S} (b.costs[i] - pi_i + lam b.per_member) + lam b.fixed < 0``. Groups that
may price out are evaluated exactly (most negative bound first) and join the master. Pairs are priced
exhaustively; larger groups in increasing order of their bound (k smallest subset sums), listed up to
``GENERATED_GROUP_SIZE`` members.

Lower bound: for any ``pi`` and ``lam >= 0`` the Lagrangian ``sum pi - lam B + min over partitions of the
reduced costs`` bounds the optimum; each class's reduced cost is at least the sum over its members of
``min(their singleton reduced costs, min_b (b.costs[i] - pi_i + lam b.per_member + lam b.fixed / K))`` with K
the largest group size allowed, so that sum is a valid global bound, reported as the Solution's bound. When no
group prices out, the master's LP value itself is the LP bound of the whole space.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..formulations.costs import GroupCosts
from ..formulations.graph import SharingGraph
from ..formulations.program import IntegerProgram
from ..formulations.setpart import SetPartition

__all__ = ["generate_columns", "ColumnSet", "estimated_groups", "GENERATED_GROUP_SIZE"]

GENERATED_GROUP_SIZE = 4
"""Largest group that pricing lists for evaluation (Basis Sharing's groups go up to this size on LLaMA-7B)."""


def estimated_groups(graph: SharingGraph, max_group_size: int | None) -> int:
    """How many groups full enumeration would visit (conflicts ignored)."""
    total = 0
    for members in graph.family_members.values():
        n = len(members)
        cap = n if max_group_size is None else min(n, max_group_size)
        total += sum(math.comb(n, k) for k in range(1, cap + 1))
    return total


@dataclass
class ColumnSet:
    """The restricted master's groups (growing), a valid global lower bound (None if none could be stated) and
    what happened, for ``Solution.facts``. When the master's LP is optimal over every group (``lp_complete``),
    :meth:`below` lists the groups that could still improve an integer solution."""

    graph: SharingGraph
    groups: list[tuple[int, ...]]
    bound: float | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    lp_complete: bool = False
    lp_value: float = math.nan
    pricing: _Pricing | None = None
    have: set[tuple[int, ...]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.have.update(self.groups)

    def add(self, group: tuple[int, ...]) -> None:
        """Evaluate ``group``'s options now (cached, so the time limit covers it) and put it in the master."""
        self.graph.options(group)
        self.groups.append(group)
        self.have.add(group)

    def below(self, threshold: float) -> tuple[list[tuple[int, ...]], bool]:
        """Groups not in the master whose reduced cost may be below ``threshold`` (pairs exactly, larger groups
        by their bound), sorted by that bound; and whether every larger group is certified at or above it."""
        if self.pricing is None:
            return [], False
        cands, larger_min = self.pricing(threshold)
        return [g for _, g in cands], larger_min >= threshold


def _lp(graph: SharingGraph, budget: float, groups: list[tuple[int, ...]]) -> tuple[SetPartition, float, np.ndarray, float]:
    """Solve the master's LP with an artificial overflow column on the budget row (so duals always exist).
    Returns the formulation, LP value, cover duals pi and the budget price lam >= 0."""
    from .highs import solve_lp

    form = SetPartition(graph, budget, groups=groups)
    p = form.program
    unit = getattr(form, "memory_unit", 1)  # the budget row counts memory in this many parameters
    mem = np.array([o.memory for _, o in form.columns], dtype=float) / unit
    over = max(1.0, float(mem.sum()))
    scale = float(np.abs(p.c).max()) if len(p.c) else 0.0
    scale = scale if scale > 0 and np.isfinite(scale) else 1.0  # costs scaled to at most 1 (solver tolerances)
    budget_row = p.num_rows - 1 if math.isfinite(budget) else None
    col = np.zeros((p.num_rows, 1))
    if budget_row is not None:
        col[budget_row, 0] = -over
    A = sp.hstack([p.A, sp.csr_matrix(col)]).tocsr()
    penalty = 1e4 * graph.n  # per unit of the overflow column: far above any (scaled) coloring's cost
    lp = IntegerProgram(np.append(p.c / scale, penalty), A, p.row_lo, p.row_hi, np.append(p.col_lo, 0.0),
                        np.append(p.col_hi, 1.0))
    status, value, _, duals = solve_lp(lp)
    if status != "Optimal":
        raise RuntimeError(f"column generation: the master LP ended with status {status!r}")
    value *= scale
    duals = duals * scale
    pi = duals[: graph.n]
    lam = max(0.0, -float(duals[budget_row])) / unit if budget_row is not None else 0.0  # per parameter
    return form, value, pi, lam


def _least_sum(t: np.ndarray, fixed: float, lo: int, hi: int) -> float:
    """The least ``fixed + sum(t[S])`` over subsets S of ``lo..hi`` elements."""
    srt = np.sort(t)
    if len(srt) < lo:
        return math.inf
    prefix = fixed + np.cumsum(srt)
    return float(prefix[lo - 1: hi].min())


def _subsets_in_order(t: np.ndarray, fixed: float, threshold: float, lo: int, hi: int, limit: int):
    """Subsets S (positions into ``t``) of ``lo..hi`` elements with ``fixed + sum(t[S]) < threshold``, in
    increasing order of that sum, at most ``limit`` of them: the k-smallest-subset-sums enumeration on
    toggles of the all-negatives subset (each toggle adds ``|t_k|``)."""
    import heapq

    neg = t < 0
    base = fixed + float(t[neg].sum())
    order = np.argsort(np.abs(t))
    cost = np.abs(t)[order]
    start = frozenset(np.flatnonzero(neg).tolist())

    def members(toggles: tuple[int, ...]) -> frozenset:
        return start.symmetric_difference(int(order[k]) for k in toggles)

    out = []
    if base < threshold and lo <= len(start) <= hi:
        out.append((base, tuple(sorted(start))))
    heap = [(base + float(cost[0]), (0,))] if len(cost) else []
    popped = 0
    while heap and len(out) < limit and popped < 50 * limit:
        val, tog = heapq.heappop(heap)
        popped += 1
        if val >= threshold:
            break
        last = tog[-1]
        if last + 1 < len(cost):
            heapq.heappush(heap, (val + float(cost[last + 1]), tog + (last + 1,)))
            heapq.heappush(heap, (val - float(cost[last]) + float(cost[last + 1]), tog[:-1] + (last + 1,)))
        m = members(tog)
        if lo <= len(m) <= hi:
            out.append((val, tuple(sorted(m))))
    return out


class _Pricing:
    """Pricing with the separable bounds under duals (pi, lam): per member and bound kind, the term
    ``T = b.costs - pi + lam b.per_member`` and per bound the fixed part ``F = lam b.fixed``."""

    def __init__(self, graph: SharingGraph, caps: dict[str, int], bounds: dict[str, list], have: set,
                 pi: np.ndarray, lam: float) -> None:
        self.graph, self.caps, self.have = graph, caps, have
        self.tables = {}
        for f, members in graph.family_members.items():
            bl = bounds[f]
            if not bl or caps[f] < 2:
                continue
            idx = np.asarray(members)
            T = np.stack([b.costs - pi[idx] + lam * b.per_member for b in bl], axis=1)  # member x bound
            F = lam * np.array([b.fixed for b in bl], dtype=float)
            self.tables[f] = (T, F)

    def member_bounds(self, lb: np.ndarray) -> np.ndarray:
        """``lb`` (each layer's least singleton reduced cost) lowered to each member's least share of any group's
        reduced cost, the fixed part split over the largest allowed group."""
        out = lb.copy()
        for f, (T, F) in self.tables.items():
            idx = np.asarray(self.graph.family_members[f])
            out[idx] = np.minimum(out[idx], np.min(T + F / self.caps[f], axis=1))
        return out

    def __call__(self, threshold: float) -> tuple[list[tuple[float, tuple[int, ...]]], float]:
        """Groups not in the master whose reduced-cost bound is below ``threshold`` (sorted), and the least bound
        over groups of 3+ members (which are listed only up to GENERATED_GROUP_SIZE)."""
        out: list[tuple[float, tuple[int, ...]]] = []
        larger_min = math.inf
        for f, (T, F) in self.tables.items():
            members = self.graph.family_members[f]
            iu, ju = np.triu_indices(len(members), 1)
            pair = np.min(T[iu] + T[ju] + F, axis=1)
            for k in np.flatnonzero(pair < threshold):
                grp = (members[iu[k]], members[ju[k]])
                if grp not in self.have and self.graph.can_share(*grp):
                    out.append((float(pair[k]), grp))
            if self.caps[f] < 3:
                continue
            for a in range(T.shape[1]):
                # large groups are expensive to evaluate and their bound is weak: list them up to
                # GENERATED_GROUP_SIZE members; the least bound still covers every size, so claims stay honest
                for val, pos in _subsets_in_order(T[:, a], F[a], threshold, 3,
                                                  min(self.caps[f], GENERATED_GROUP_SIZE), limit=4 * 64):
                    grp = tuple(sorted(members[k] for k in pos))
                    if grp not in self.have and self.graph.is_group(grp):
                        out.append((val, grp))
                larger_min = min(larger_min, _least_sum(T[:, a], F[a], 3, self.caps[f]))
        out.sort()
        return out, larger_min


def generate_columns(
    graph: SharingGraph,
    budget: float,
    deadline: float | None,
    max_group_size: int | None = None,
    per_round: int = 64,
    max_rounds: int = 50,
    progress: Callable[[str], None] | None = None,
) -> ColumnSet:
    """Grow a restricted master until no group prices out, the rounds run out or ``deadline`` (a
    ``time.perf_counter()`` value) passes. See the module docstring for what the bound means."""
    model = graph.model
    if not isinstance(model, GroupCosts) or not model.has_bounds:
        raise ValueError("column generation needs group costs with separable bounds (colorshare.torch graphs "
                         "have them); pass max_group_size=K to enumerate a smaller space instead")
    caps = {f: len(m) if max_group_size is None else min(len(m), max_group_size)
            for f, m in graph.family_members.items()}
    bounds = {f: model.bounds(tuple(m)) for f, m in graph.family_members.items()}
    cs = ColumnSet(graph, [(i,) for i in range(graph.n)], facts={"rounds": 0, "evaluated_groups": graph.n})
    best_bound = 0.0  # every group cost is >= 0 (truncated curvature-weighted energy): 0 bounds the optimum
    priced_out = True
    price = None

    def out_of_time() -> bool:
        return deadline is not None and time.perf_counter() > deadline

    for rnd in range(max_rounds):
        if out_of_time():
            cs.facts["stopped"] = "time limit"
            break
        form, cs.lp_value, pi, lam = _lp(graph, budget, cs.groups)
        cs.facts["rounds"] = rnd + 1
        price = _Pricing(graph, caps, bounds, cs.have, pi, lam)
        # singleton reduced costs (their options are all in the master), lowered by every group's share
        single = np.full(graph.n, math.inf)
        for grp, o in form.columns:
            if len(grp) == 1:
                single[grp[0]] = min(single[grp[0]], o.cost - pi[grp[0]] + lam * o.memory)
        lb_member = price.member_bounds(single)
        if math.isfinite(float(lb_member.sum())):
            best_bound = max(best_bound, float(pi.sum() - lam * budget + lb_member.sum()))
        threshold = -1e-9 * max(1.0, abs(cs.lp_value))
        candidates, larger_min = price(threshold)
        if not candidates:
            # complete only if no group of 3+ members can price out either (those are listed only in part, so
            # one such group already in the master can hide unevaluated ones)
            priced_out = larger_min < threshold
            if priced_out:
                cs.facts["stopped"] = "larger groups may still price out; none left to list"
            break
        new = list(dict.fromkeys(grp for _, grp in candidates))[:per_round]
        for grp in new:
            if out_of_time():
                break
            cs.add(grp)
        cs.facts["evaluated_groups"] = len(cs.groups)
        if progress is not None:
            progress(f"round {rnd + 1}: LP {cs.lp_value:.6g}, bound {best_bound:.6g}, {len(cs.groups)} groups")
    if not priced_out:
        # no group of the allowed sizes can improve the LP: its value bounds the whole space
        best_bound = max(best_bound, cs.lp_value)
        cs.facts["lp_optimal_over_all_groups"] = True
        cs.lp_complete, cs.pricing = True, price
    cs.facts["lp_value"] = cs.lp_value
    cs.bound = best_bound if math.isfinite(best_bound) else None
    return cs
