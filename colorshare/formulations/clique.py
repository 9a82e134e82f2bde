"""Clique partitioning (pairwise) formulation: exact for pairwise-additive costs (:class:`~.costs.PairwiseCosts`).

Variables: ``z_ij`` (i < j, the pair may share) = 1 if i and j are in one class; ``f_i`` = 1 if i is the
first (lowest-index) member of its class. Rows:

- triangle inequalities ``z_ij + z_jk - z_ik <= 1`` (all three rotations) for every triple whose pairs may
  share; where exactly one pair of a triple may not share, ``z_ab + z_bc <= 1`` for the other two;
- first-member indicators ``f_i + sum_{j < i} z_ji >= 1`` (a layer with no earlier classmate opens a class);
- budget ``sum_i size_i * f_i <= budget`` (parameters).

Counting classes by their first member is the symmetry breaking: colors never appear as variables.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np

from .base import Chosen, Formulation, budget_hi
from .program import IntegerProgram, ProgramBuilder

__all__ = ["CliquePartition"]


class CliquePartition(Formulation):
    name = "clique"
    exact_for = ("pairwise",)

    def _build(self) -> IntegerProgram:
        g = self.graph
        w = g.cost_matrix
        b = ProgramBuilder()
        self.z: dict[tuple[int, int], int] = {}
        for members in g.family_members.values():
            for i, j in combinations(members, 2):
                if g.can_share(i, j):
                    self.z[i, j] = b.var(w[i, j], f"z{i}_{j}")
        self.f = [b.var(0.0, f"f{i}") for i in range(g.n)]
        for members in g.family_members.values():
            for i, j, k in combinations(members, 3):
                pairs = [(i, j), (j, k), (i, k)]
                have = [p in self.z for p in pairs]
                if all(have):
                    zij, zjk, zik = (self.z[p] for p in pairs)
                    for a, c, d in ((zij, zjk, zik), (zij, zik, zjk), (zik, zjk, zij)):
                        b.row([a, c, d], [1.0, 1.0, -1.0], -math.inf, 1.0, f"tri{i}_{j}_{k}")
                elif sum(have) == 2:
                    cols = [self.z[p] for p, h in zip(pairs, have) if h]
                    b.row(cols, [1.0, 1.0], -math.inf, 1.0, f"tri{i}_{j}_{k}")
        for i in range(g.n):
            cols = [self.f[i]] + [self.z[j, i] for j in g.family_members[g.families[i]] if j < i and (j, i) in self.z]
            b.row(cols, [1.0] * len(cols), 1.0, math.inf, f"first{i}")
        hi = budget_hi(self.budget)
        if not math.isinf(hi):
            b.row(self.f, [float(s) for s in g.sizes], -math.inf, hi, "budget")
        return b.build()

    def decode(self, x: np.ndarray) -> Chosen:
        g = self.graph
        parent = list(range(g.n))

        def find(a: int) -> int:
            while parent[a] != a:
                parent[a] = parent[parent[a]]
                a = parent[a]
            return a

        for (i, j), v in self.z.items():
            if round(x[v]) == 1:
                parent[find(i)] = find(j)
        groups: dict[int, list[int]] = {}
        for i in range(g.n):
            groups.setdefault(find(i), []).append(i)
        out: Chosen = []
        for members in groups.values():
            group = tuple(members)
            opt = g.best_option(group)
            if opt is None:
                raise ValueError(f"clique solution joins layers {group} that may not share")
            out.append((group, opt))
        return sorted(out, key=lambda t: t[0][0])

    def encode(self, chosen: Chosen) -> np.ndarray | None:
        x = np.zeros(self.program.num_vars)
        for group, _ in chosen:
            x[self.f[group[0]]] = 1
            for i, j in combinations(group, 2):
                if (i, j) not in self.z:
                    return None
                x[self.z[i, j]] = 1
        return x
