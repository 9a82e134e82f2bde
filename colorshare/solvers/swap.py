"""Swap (interchange) local search for one family of a medoid graph: Teitz-Bart moves, evaluated as FasterPAM.

A family with ``k`` representatives keeps ``k`` (so its memory is unchanged): a move closes one and opens
another member. Every one of the ``k * m`` moves is scored at once from each layer's nearest and second
nearest open representative (Schubert and Rousseeuw's FasterPAM decomposition), in O(m^2) numpy work; the
best improving move is applied until none improves.
"""

from __future__ import annotations

import numpy as np

from ..formulations.base import Chosen
from ..formulations.costs import Option

__all__ = ["swap_descent", "service_cost", "greedy_open", "nearest", "medoid_classes"]


def service_cost(cost: np.ndarray, reps: np.ndarray) -> float:
    """Total cost of serving every row (layer) of the square ``cost`` by its cheapest column in ``reps``."""
    return float(cost[:, reps].min(axis=1).sum())


def greedy_open(cost: np.ndarray, k: int) -> np.ndarray:
    """``k`` representatives opened one at a time, each the one that lowers the total service cost most, in the
    order they were opened (so its first j entries are the greedy choice of j)."""
    m = cost.shape[0]
    k = max(1, min(int(k), m))
    best = np.full(m, np.inf)
    reps: list[int] = []
    for _ in range(k):
        totals = np.minimum(cost, best[:, None]).sum(axis=0)
        totals[reps] = np.inf
        x = int(np.argmin(totals))
        reps.append(x)
        best = np.minimum(best, cost[:, x])
    return np.array(reps, dtype=np.int64)


def nearest(cost: np.ndarray, reps: np.ndarray) -> np.ndarray:
    """Each row's cheapest column among ``reps`` (a representative serves itself)."""
    near = np.asarray(reps)[np.argmin(cost[:, reps], axis=1)]
    near[reps] = reps
    return near


def medoid_classes(cost: np.ndarray, reps: np.ndarray, members: np.ndarray, size: int) -> Chosen:
    """The classes of one family with representatives ``reps`` (positions in ``cost``): every member with its
    cheapest one; ``members`` maps positions to layer indices, ``size`` is the family's layer size."""
    near = nearest(cost, reps)
    out: Chosen = []
    for x in np.asarray(reps).tolist():
        grp = np.flatnonzero(near == x)
        out.append((tuple(int(members[t]) for t in grp),
                    Option("medoid", float(cost[grp, x].sum()), int(size), representative=int(members[x]))))
    return out


def swap_descent(cost: np.ndarray, reps: np.ndarray, max_moves: int = 100_000) -> tuple[float, np.ndarray]:
    """Best-improvement swaps from representatives ``reps`` (column indices of the square ``cost``, where
    ``cost[i, j]`` is layer i served by j); returns (total cost, sorted representatives), a local optimum."""
    m = cost.shape[0]
    reps = np.array(sorted(set(int(r) for r in reps)), dtype=np.int64)
    if len(reps) == 0 or len(reps) >= m:
        return (service_cost(cost, reps) if len(reps) else float("inf")), reps
    rows = np.arange(m)
    if len(reps) == 1:
        totals = cost.sum(axis=0)
        best = int(np.argmin(totals))
        return float(totals[best]), np.array([best])
    for _ in range(max_moves):
        sub = cost[:, reps]
        two = np.argpartition(sub, 1, axis=1)[:, :2]
        a, b = sub[rows, two[:, 0]], sub[rows, two[:, 1]]
        swap = a > b
        near_k = np.where(swap, two[:, 1], two[:, 0])
        d1, d2 = np.minimum(a, b), np.maximum(a, b)
        current = float(d1.sum())
        # closing representative k alone: its layers move to their second choice
        remove = np.bincount(near_k, weights=d2 - d1, minlength=len(reps))
        # opening x alone: every layer that x serves better
        add = np.minimum(cost - d1[:, None], 0.0).sum(axis=0)
        # the correction for closing k and opening x together, summed over k's own layers
        corr = np.where(cost < d1[:, None], (d1 - d2)[:, None],
                        np.where(cost < d2[:, None], cost - d2[:, None], 0.0))
        by = np.argsort(near_k, kind="stable")
        starts = np.searchsorted(near_k[by], np.arange(len(reps)))
        per_k = np.zeros((len(reps), m))
        nonempty = np.bincount(near_k, minlength=len(reps)) > 0
        if nonempty.any():
            per_k[nonempty] = np.add.reduceat(corr[by], starts[nonempty], axis=0)
        delta = remove[:, None] + add[None, :] + per_k
        delta[:, reps] = np.inf
        k, x = np.unravel_index(int(np.argmin(delta)), delta.shape)
        if not delta[k, x] < -1e-12 * max(1.0, abs(current)):
            return current, reps
        reps = np.sort(np.concatenate([np.delete(reps, k), [x]]))
    return service_cost(cost, reps), reps
