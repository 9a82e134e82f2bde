"""p-median (assignment) formulation: exact for medoid sharing (:class:`~.costs.MedoidCosts`).

Variables: ``y_j`` = 1 if layer j is a representative (it then serves itself), ``x_ij`` = 1 if layer i is
served by representative j (only for pairs that may share). Rows:

- assignment  ``y_i + sum_j x_ij = 1`` for every layer i;
- linking     ``x_ij <= y_j`` (the strong, disaggregated form);
- conflicts   ``x_uj + x_vj <= y_j`` for every conflict edge (u, v) and common candidate j
  (``x_uv`` itself does not exist, so a conflicting pair never shares);
- budget      ``sum_j size_j * y_j <= budget`` (parameters);
- optionally  ``sum_{j in family} y_j <= k`` (used by the family decomposition).

A representative serving itself removes the color symmetry of coloring models: each class is named by its
representative, so no two solutions differ only by a permutation of colors.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .base import Chosen, Formulation, budget_hi
from .costs import Option
from .graph import SharingGraph
from .program import IntegerProgram, ProgramBuilder

__all__ = ["PMedian"]


class PMedian(Formulation):
    name = "pmedian"
    exact_for = ("medoid",)
    supports_cost_cap = True

    def __init__(
        self, graph: SharingGraph, budget: float, layers: Sequence[int] | None = None, max_classes: int | None = None,
        cost_cap: float | None = None,
    ) -> None:
        self.layers = tuple(range(graph.n)) if layers is None else tuple(layers)
        self.max_classes = max_classes
        super().__init__(graph, budget, cost_cap)

    def _build(self) -> IntegerProgram:
        g = self.graph
        cost = g.cost_matrix
        b = ProgramBuilder()
        layer_set = set(self.layers)
        self.y: dict[int, int] = {j: b.var(0.0, f"y{j}") for j in self.layers}
        self.x: dict[tuple[int, int], int] = {}
        for i in self.layers:
            for j in g.family_members[g.families[i]]:
                if j in layer_set and g.can_share(i, j) and self.keeps(float(cost[i, j])):
                    self.x[i, j] = b.var(cost[i, j], f"x{i}_{j}")
        for i in self.layers:
            cols = [self.y[i]] + [self.x[i, j] for j in g.family_members[g.families[i]] if (i, j) in self.x]
            b.row(cols, [1.0] * len(cols), 1.0, 1.0, f"assign{i}")
        for (i, j), v in self.x.items():
            b.row([v, self.y[j]], [1.0, -1.0], -math.inf, 0.0, f"link{i}_{j}")
        for u, v in g.conflicts:
            if u not in layer_set or v not in layer_set:
                continue
            for j in g.family_members[g.families[u]]:
                if (u, j) in self.x and (v, j) in self.x:
                    b.row([self.x[u, j], self.x[v, j], self.y[j]], [1.0, 1.0, -1.0], -math.inf, 0.0, f"conf{u}_{v}_{j}")
        hi = budget_hi(self.budget)
        if not math.isinf(hi):
            b.row([self.y[j] for j in self.layers], [float(g.sizes[j]) for j in self.layers], -math.inf, hi, "budget")
        if self.max_classes is not None:
            b.row([self.y[j] for j in self.layers], [1.0] * len(self.layers), -math.inf, float(self.max_classes), "k")
        return b.build()

    def decode(self, x: np.ndarray) -> Chosen:
        g = self.graph
        xr = np.round(x)
        served: dict[int, list[int]] = {}
        for i in self.layers:
            if xr[self.y[i]] == 1:
                served.setdefault(i, []).append(i)
        for (i, j), v in self.x.items():
            if xr[v] == 1:
                served.setdefault(j, []).append(i)
        out: Chosen = []
        for j, members in served.items():
            group = tuple(sorted(members))
            size = int(g.sizes[j])
            c = float(g.cost_matrix[list(group), j].sum())
            out.append((group, Option("medoid", c, size, representative=j)))
        return sorted(out, key=lambda t: t[0][0])

    def encode(self, chosen: Chosen) -> np.ndarray | None:
        x = np.zeros(self.program.num_vars)
        for group, opt in chosen:
            rep = opt.representative if opt.representative is not None else group[0]
            if rep not in self.y:
                return None
            x[self.y[rep]] = 1
            for i in group:
                if i != rep:
                    if (i, rep) not in self.x:
                        return None
                    x[self.x[i, rep]] = 1
        return x
