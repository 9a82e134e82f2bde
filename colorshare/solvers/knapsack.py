"""Exact multiple-choice knapsack over families, by Pareto-frontier dynamic programming (numpy)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["multiple_choice_knapsack"]


def multiple_choice_knapsack(
    items: Sequence[Sequence[tuple[int, float]]], capacity: float
) -> tuple[float, list[int]] | None:
    """Pick one (memory, cost) item per group minimising total cost with total memory <= ``capacity``.

    Returns (total cost, index of the chosen item in each group), or None if no choice fits. Exact: the DP
    keeps every Pareto-optimal (memory, cost) state, vectorised with numpy.
    """
    mem = np.zeros(1, dtype=np.int64)
    cost = np.zeros(1, dtype=np.float64)
    trail: list[tuple[np.ndarray, np.ndarray]] = []
    for group in items:
        if len(group) == 0:
            return None
        gm = np.array([m for m, _ in group], dtype=np.int64)
        gc = np.array([c for _, c in group], dtype=np.float64)
        m2 = (mem[:, None] + gm[None, :]).ravel()
        c2 = (cost[:, None] + gc[None, :]).ravel()
        parent = np.repeat(np.arange(len(mem)), len(gm))
        choice = np.tile(np.arange(len(gm)), len(mem))
        ok = m2 <= capacity
        if not ok.any():
            return None
        m2, c2, parent, choice = m2[ok], c2[ok], parent[ok], choice[ok]
        order = np.lexsort((c2, m2))
        m2, c2, parent, choice = m2[order], c2[order], parent[order], choice[order]
        best_before = np.minimum.accumulate(np.concatenate(([np.inf], c2[:-1])))
        keep = c2 < best_before
        mem, cost = m2[keep], c2[keep]
        trail.append((parent[keep], choice[keep]))
    k = int(np.argmin(cost))
    total = float(cost[k])
    picks: list[int] = []
    for parent, choice in reversed(trail):
        picks.append(int(choice[k]))
        k = int(parent[k])
    return total, picks[::-1]
