"""Radius (Elloumi) formulation of medoid sharing, in Benders form: the cuts, their separation and decoding.

For medoid costs without conflict edges a layer is best served by the cheapest open representative of its
family, so a coloring is fixed by its representatives ``y`` alone. With ``d_i1 < d_i2 < ...`` the distinct
costs of serving layer ``i`` (by each member of its family), the radius formulation (Elloumi 2010) charges
``theta_i`` for every level not covered by an open representative; projecting its level variables out
leaves, for every layer ``i`` and threshold ``D`` (Durán-Mateluna, Alès, Elloumi 2023):

    theta_i + sum_j max(0, D - cost[i, j]) * y_j >= D

These cuts are valid for every 0/1 ``y`` with an open representative per family, and at the right ``D`` they
are tight: the LP with all of them equals the p-median LP's strong relaxation. The most violated cut of a
layer at a fractional ``y`` is found in one pass over its sorted costs (``D`` = the first level where the
open mass reaches 1). numpy only; the loop that adds cuts lives in ``solvers/benders.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from .base import Chosen
from .costs import Option
from .graph import SharingGraph

__all__ = ["RadiusCuts", "Cut"]


@dataclass(frozen=True)
class Cut:
    """``theta[layer] + coefs @ y[sites] >= rhs`` (costs in the graph's units)."""

    layer: int
    sites: np.ndarray
    coefs: np.ndarray
    rhs: float


class RadiusCuts:
    """Per-family sorted service costs of a medoid graph without conflicts, and the cuts they give: the radius
    formulation, solved by adding cuts to a live model (a backend with the ``"cuts"`` capability)."""

    name: ClassVar[str] = "radius"
    exact_for: ClassVar[tuple[str, ...]] = ("medoid",)
    requires: ClassVar[str] = "cuts"

    @staticmethod
    def check(graph: SharingGraph) -> None:
        """ValueError naming why the radius formulation is not exact for ``graph`` (if it is not)."""
        if graph.kind != "medoid":
            raise ValueError("the radius formulation is exact only for medoid costs; this graph has "
                             f"{graph.kind} costs")
        if graph.conflicts:
            raise ValueError("the radius formulation serves every layer by its cheapest open representative, "
                             "which a conflict edge may forbid: use formulation='pmedian' for graphs with conflicts")

    def __init__(self, graph: SharingGraph) -> None:
        self.check(graph)
        self.graph = graph
        matrix = np.asarray(graph.cost_matrix, dtype=np.float64)
        self.families: list[np.ndarray] = [np.asarray(m, dtype=np.int64) for m in graph.family_members.values()]
        self._order: list[np.ndarray] = []  # per family: members' positions sorted by cost, one row per member
        self.sorted_costs: list[np.ndarray] = []  # the matching costs
        for idx in self.families:
            sub = matrix[np.ix_(idx, idx)]
            # a layer serves itself first among equal costs (its own cost is 0)
            key = sub + 0.0
            key[np.arange(len(idx)), np.arange(len(idx))] = -1.0
            order = np.argsort(key, axis=1, kind="stable")
            self._order.append(order)
            self.sorted_costs.append(np.take_along_axis(sub, order, axis=1))

    def separate(self, y: np.ndarray, theta: np.ndarray, rel_tol: float = 1e-9) -> list[Cut]:
        """The most violated cut of every layer whose ``theta`` is below what ``y`` implies (y in [0, 1])."""
        out: list[Cut] = []
        for idx, order, sd in zip(self.families, self._order, self.sorted_costs):
            m = len(idx)
            Y = y[idx][order]
            reach = np.cumsum(Y, axis=1) >= 1.0 - 1e-9
            k = np.where(reach.any(axis=1), np.argmax(reach, axis=1), m - 1)
            D = sd[np.arange(m), k]
            below = sd < D[:, None]
            value = D - (np.where(below, D[:, None] - sd, 0.0) * Y).sum(axis=1)
            th = theta[idx]
            for r in np.flatnonzero(value > th + rel_tol * np.maximum(1.0, np.abs(value))):
                keep = below[r]
                out.append(Cut(int(idx[r]), idx[order[r][keep]], D[r] - sd[r][keep], float(D[r])))
        return out

    def served(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For 0/1 ``y``: (each layer's representative, its cost); -1 / inf where its family has none open."""
        rep = np.full(self.graph.n, -1, dtype=np.int64)
        cost = np.full(self.graph.n, np.inf)
        for idx, order, sd in zip(self.families, self._order, self.sorted_costs):
            is_open = y[idx][order] > 0.5
            if not is_open.any():
                continue
            first = np.argmax(is_open, axis=1)
            rows = np.arange(len(idx))
            rep[idx] = idx[order[rows, first]]
            cost[idx] = sd[rows, first]
        return rep, cost

    def decode(self, y: np.ndarray) -> Chosen:
        """The classes of 0/1 ``y``: every layer with its cheapest open representative."""
        rep, _ = self.served(y)
        groups: dict[int, list[int]] = {}
        for i, j in enumerate(rep.tolist()):
            groups.setdefault(j, []).append(i)
        out: Chosen = []
        matrix = self.graph.cost_matrix
        for j, members in groups.items():
            group = tuple(sorted(members))
            out.append((group, Option("medoid", float(matrix[list(group), j].sum()), int(self.graph.sizes[j]),
                                      representative=j)))
        return sorted(out, key=lambda t: t[0][0])

    def encode(self, chosen: Chosen) -> np.ndarray:
        """The representatives of a coloring as a 0/1 vector (a class without a named one: its first member)."""
        y = np.zeros(self.graph.n)
        for group, opt in chosen:
            y[opt.representative if opt.representative is not None else group[0]] = 1.0
        return y
