"""Column generation for set partitioning over families too large to enumerate (2^30 groups per family).

The restricted master starts from every singleton (all its options) and the contiguous pairs. Each round
solves its LP relaxation (HiGHS), reads the duals ``pi_i`` of the cover rows and the price ``lam >= 0`` of
the budget row, and prices groups with the cost model's :class:`SeparableBound` lists: a group S can only
improve the LP if ``min_b sum_{i in S} (b.costs[i] - pi_i + lam b.per_member) + lam b.fixed < 0``. Groups that
may price out are evaluated exactly (most negative bound first) and join the master. Pairs are priced
exhaustively; larger groups by their best members per bound.

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

__all__ = ["generate_columns", "ColumnSet", "estimated_groups"]


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
    """What generation produced: the groups of the final master, a valid global lower bound (None if none
    could be stated) and what happened, for ``Solution.facts``."""

    groups: list[tuple[int, ...]]
    bound: float | None
    facts: dict[str, Any] = field(default_factory=dict)


def _lp(graph: SharingGraph, budget: float, groups: list[tuple[int, ...]]) -> tuple[SetPartition, float, np.ndarray, float]:
    """Solve the master's LP with an artificial overflow column on the budget row (so duals always exist).
    Returns the formulation, LP value, cover duals pi and the budget price lam >= 0."""
    from .highs import solve_lp

    form = SetPartition(graph, budget, groups=groups)
    p = form.program
    mem = np.array([o.memory for _, o in form.columns], dtype=float)
    over = max(1.0, float(mem.sum()))
    top = max(1.0, float(np.abs(p.c).max()) if len(p.c) else 1.0)
    budget_row = p.num_rows - 1 if math.isfinite(budget) else None
    col = np.zeros((p.num_rows, 1))
    if budget_row is not None:
        col[budget_row, 0] = -over
    A = sp.hstack([p.A, sp.csr_matrix(col)]).tocsr()
    penalty = 1e4 * top * graph.n  # per unit of the overflow column: far above any coloring's cost
    lp = IntegerProgram(np.append(p.c, penalty), A, p.row_lo, p.row_hi, np.append(p.col_lo, 0.0),
                        np.append(p.col_hi, 1.0))
    status, value, _, duals = solve_lp(lp)
    if status != "Optimal":
        raise RuntimeError(f"column generation: the master LP ended with status {status!r}")
    pi = duals[: graph.n]
    lam = max(0.0, -float(duals[budget_row])) if budget_row is not None else 0.0
    return form, value, pi, lam


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
    fams = {f: tuple(m) for f, m in graph.family_members.items()}
    caps = {f: len(m) if max_group_size is None else min(len(m), max_group_size) for f, m in fams.items()}
    groups: list[tuple[int, ...]] = [(i,) for i in range(graph.n)]
    pending: list[tuple[int, ...]] = []  # contiguous pairs first: the neighbours Basis Sharing would pick
    for f, members in fams.items():
        if caps[f] >= 2:
            pending += [(a, b) for a, b in zip(members, members[1:]) if graph.can_share(a, b)]
    have = set(groups)
    bounds = {f: model.bounds(m) for f, m in fams.items()}
    best_bound = -math.inf
    facts: dict[str, Any] = {"rounds": 0, "evaluated_groups": len(groups)}
    lp_value = math.nan
    priced_out = True
    def out_of_time() -> bool:
        return deadline is not None and time.perf_counter() > deadline

    for grp in pending:
        if out_of_time():
            break
        graph.options(grp)  # evaluate now (cached), so the time limit covers it
        groups.append(grp)
        have.add(grp)
    for rnd in range(max_rounds):
        if out_of_time():
            facts["stopped"] = "time limit"
            break
        form, lp_value, pi, lam = _lp(graph, budget, groups)
        facts["rounds"] = rnd + 1
        # singleton reduced costs (their options are all in the master)
        single = np.full(graph.n, math.inf)
        for grp, o in form.columns:
            if len(grp) == 1:
                i = grp[0]
                single[i] = min(single[i], o.cost - pi[i] + lam * o.memory)
        lb_member = single.copy()
        candidates: list[tuple[float, tuple[int, ...]]] = []
        for f, members in fams.items():
            bl = bounds[f]
            if not bl or caps[f] < 2:
                continue
            idx = np.asarray(members)
            T = np.stack([b.costs - pi[idx] + lam * b.per_member for b in bl], axis=1)  # member x bound
            F = lam * np.array([b.fixed for b in bl], dtype=float)
            share = np.min(T + F / caps[f], axis=1)
            lb_member[idx] = np.minimum(lb_member[idx], share)
            # pairs, exhaustively
            n = len(members)
            iu, ju = np.triu_indices(n, 1)
            pair = np.min(T[iu] + T[ju] + F, axis=1)
            for k in np.flatnonzero(pair < -1e-9 * max(1.0, abs(lp_value))):
                grp = (members[iu[k]], members[ju[k]])
                if grp not in have and graph.can_share(*grp):
                    candidates.append((float(pair[k]), grp))
            # larger groups: for each bound, the best members while the sum keeps falling
            if caps[f] >= 3:
                for a in range(len(bl)):
                    order = np.argsort(T[:, a])
                    acc = F[a]
                    chosen: list[int] = []
                    for k in order[: caps[f]]:
                        if T[k, a] >= 0:
                            break
                        acc += T[k, a]
                        chosen.append(members[k])
                        if len(chosen) >= 3 and acc < 0:
                            grp = tuple(sorted(chosen))
                            if grp not in have and graph.is_group(grp):
                                candidates.append((float(acc), grp))
        if math.isfinite(float(lb_member.sum())):
            best_bound = max(best_bound, float(pi.sum() - lam * budget + lb_member.sum()))
        if not candidates:
            priced_out = False
            break
        candidates.sort()
        seen: set[tuple[int, ...]] = set()
        new = []
        for _, grp in candidates:
            if grp not in seen:
                seen.add(grp)
                new.append(grp)
            if len(new) >= per_round:
                break
        for grp in new:
            if out_of_time():
                break
            graph.options(grp)  # evaluate now (cached), so the time limit covers it
            groups.append(grp)
            have.add(grp)
        facts["evaluated_groups"] = len(groups)
        if progress is not None:
            progress(f"round {rnd + 1}: LP {lp_value:.6g}, bound {best_bound:.6g}, {len(groups)} groups")
    if not priced_out:
        # no group of the allowed sizes can improve the LP: its value bounds the whole space
        best_bound = max(best_bound, lp_value)
        facts["lp_optimal_over_all_groups"] = True
    facts["lp_value"] = lp_value
    return ColumnSet(groups, best_bound if math.isfinite(best_bound) else None, facts)
