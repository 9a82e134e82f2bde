"""Lower bounds on what the groups of one family cost, for pricing generated columns (numpy only).

A family's bound is a list of :class:`KindBound`, one per kind of option (a shared basis of rank r; a tie or
medoid). Every option ``o`` of every group ``S`` of 2+ members has a kind ``b`` of the list with

    o.cost   >= sum_{i in S} b.costs[i] + c(|S|) * sum_{i < j in S} b.excess[i, j]
    o.memory >= b.fixed + |S| * b.per_member                      (parameters)

with ``c(k) = 1/(k-1)`` (:func:`matching_factor`). Without an excess matrix the bound is separable (each
member's cost alone).

Why the quadratic term is valid. A shared rank-r basis costs half the tail (the eigenvalues beyond r) of the
sum of its members' PSD Grams, and that tail is concave and positively homogeneous in the matrix (Ky Fan's
minimum principle); a tie costs the minimum over one tensor of a sum of quadratics, also concave and
homogeneous as a function of the members' weights on it. So ``cost(sum_P w_P X_P) >= sum_P w_P cost(X_P)``
for any fractional cover of S by parts P (``sum of w_P over the parts containing i = 1`` for every member).
With every pair of S at weight ``1/(k-1)``: ``cost(S) >= sum_{i<j} p_ij / (k-1) = sum_i s_i + sum_{i<j} e_ij /
(k-1)``, with ``p_ij`` a pair's cost and ``e_ij = p_ij - s_i - s_j >= 0`` its excess. A pair whose cost is
unknown has excess 0, which is always valid. (Measured on SmolLM2's MLP projections, a triple's true excess
is about 0.8 of the sum of its pairs', so this bound, half of that sum for a triple, captures about 60 %.)

Under the duals ``pi`` (cover rows) and ``lam >= 0`` (budget row, per parameter) of a restricted master LP,
:meth:`FamilyBound.under` gives a :class:`PricedFamily`, which answers the questions pricing asks:
:meth:`~PricedFamily.pairs` and :meth:`~PricedFamily.listed` (groups whose reduced-cost bound is below a
threshold, to evaluate them), :meth:`~PricedFamily.least` (a certified minimum over every group of some
sizes) and :meth:`~PricedFamily.floors` (each member's least share of any group's bound, for the global
Lagrangian bound).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["KindBound", "FamilyBound", "PricedFamily", "matching_factor"]


def matching_factor(k: int) -> float:
    """``1 / (k - 1)``: the weight of each pair in the uniform fractional cover of ``k`` members by pairs (every
    member lies in ``k - 1`` of them), 0 below 2 members."""
    return 0.0 if k < 2 else 1.0 / (k - 1)


@dataclass(frozen=True)
class KindBound:
    """A lower bound on one kind of option of every group (2+ members) of a family; see the module docstring.

    ``costs`` and ``excess`` are indexed by position in the family; ``costs[i] = inf`` means no group
    containing that member has this kind of option. ``excess`` (k x k, symmetric, >= 0, or None) is each
    pair's cost above its members' ``costs`` (negative where a pair is priced below its members' sum, e.g. by
    measurement: still valid, only weaker, for the groups that contain it); memory in parameters.
    """

    label: str
    fixed: int
    per_member: int
    costs: np.ndarray
    excess: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.costs)
        if self.excess is not None:
            e = np.asarray(self.excess, dtype=float)
            if e.shape != (n, n):
                raise ValueError(f"bound {self.label!r}: excess is {e.shape}, expected {(n, n)}")
            if not np.all(np.isfinite(e)) or not np.allclose(e, e.T, rtol=0, atol=0):
                raise ValueError(f"bound {self.label!r}: pair excesses must be finite and symmetric")


class FamilyBound:
    """The bounds of one family (a list of :class:`KindBound` over the same members)."""

    def __init__(self, kinds: Sequence[KindBound]) -> None:
        self.kinds = list(kinds)
        sizes = {len(k.costs) for k in self.kinds}
        if len(sizes) > 1:
            raise ValueError(f"the kinds of a family bound cover different numbers of members: {sorted(sizes)}")

    def __len__(self) -> int:
        return len(self.kinds)

    def cost_bound(self, positions: Sequence[int]) -> float:
        """The least cost any option of the group (positions in the family, 2+) may have, over every kind
        (0 without kinds: costs are >= 0)."""
        if not self.kinds:
            return 0.0
        return max(0.0, self.under(np.zeros(len(self.kinds[0].costs)), 0.0, len(positions)).value(positions))

    def under(self, pi: np.ndarray, lam: float, cap: int) -> PricedFamily:
        """The bound priced under cover duals ``pi`` (this family's members, by position) and budget price ``lam``
        (per parameter, >= 0), for groups of at most ``cap`` members."""
        return PricedFamily(self.kinds, np.asarray(pi, dtype=float), float(lam), int(cap))


class PricedFamily:
    """A family's bounds under duals: per kind the term ``T = costs - pi + lam per_member``, the fixed part
    ``F = lam fixed`` and the pair excesses ``E``. A group's reduced cost is at least
    ``min over kinds of F + sum_S T + c(|S|) sum_{i<j in S} E_ij``. Arrays are stacked over kinds
    (kinds x members, kinds x members x members)."""

    def __init__(self, kinds: Sequence[KindBound], pi: np.ndarray, lam: float, cap: int) -> None:
        self.cap = cap
        self.n = n = len(pi)
        a = len(kinds)
        self.T = np.array([np.asarray(k.costs, dtype=float) for k in kinds]).reshape(a, n) - pi[None, :] \
            + lam * np.array([k.per_member for k in kinds], dtype=float)[:, None]
        self.F = lam * np.array([k.fixed for k in kinds], dtype=float)
        self.E = np.zeros((a, n, n))
        for q, k in enumerate(kinds):
            if k.excess is not None:
                self.E[q] = k.excess
        # M[a, i, q]: the q smallest excesses of member i with any other member (q = 0..n-1)
        off = np.sort(np.where(np.eye(n, dtype=bool)[None], np.inf, self.E), axis=2)[:, :, : n - 1]
        self.M = np.concatenate([np.zeros((a, n, 1)), np.cumsum(off, axis=2)], axis=2)

    def _terms(self, k: int) -> np.ndarray:
        """Per kind and member (kinds x members), a separable lower bound on its part of a k-member group's
        bound of that kind."""
        return self.T + 0.5 * matching_factor(k) * self.M[:, :, k - 1]

    def _values(self, a: int, groups: np.ndarray) -> np.ndarray:
        """The kind-``a`` bound of each group (rows of positions, all of one size)."""
        k = groups.shape[1]
        v = self.F[a] + self.T[a][groups].sum(axis=1)
        if k > 1:
            p, q = np.triu_indices(k, 1)
            v = v + matching_factor(k) * self.E[a][groups[:, p], groups[:, q]].sum(axis=1)
        return v

    def value(self, positions: Sequence[int]) -> float:
        """The bound of one group (positions in the family): its least reduced cost over every kind."""
        idx = np.asarray(positions, dtype=int)[None, :]
        return min((float(self._values(a, idx)[0]) for a in range(len(self.F))), default=math.inf)

    def pairs(self, threshold: float) -> list[tuple[float, tuple[int, int]]]:
        """Every pair (positions) whose bound is below ``threshold``, with that bound."""
        if self.n < 2 or self.cap < 2 or not len(self.F):
            return []
        iu, ju = np.triu_indices(self.n, 1)
        vals = (self.F[:, None] + self.T[:, iu] + self.T[:, ju] + self.E[:, iu, ju]).min(axis=0)
        return [(float(vals[k]), (int(iu[k]), int(ju[k]))) for k in np.flatnonzero(vals < threshold)]

    def _least_by_kind(self, k: int) -> np.ndarray:
        """Per kind, a certified lower bound on the bound of every group of exactly k members."""
        return self.F + np.sort(self._terms(k), axis=1)[:, :k].sum(axis=1)

    def least(self, lo: int, hi: int | None = None) -> float:
        """A certified lower bound on the bound of every group of ``lo..hi`` members (``hi`` default: the cap)."""
        hi = self.cap if hi is None else min(hi, self.cap)
        best = math.inf
        for k in range(max(lo, 2), min(hi, self.n) + 1):
            if len(self.F):
                best = min(best, float(self._least_by_kind(k).min()))
        return best

    def floors(self) -> np.ndarray:
        """Per member, its least share of any group's bound (groups of 2..cap members; the fixed part split
        evenly over the members): the bound of a group is at least the sum of its members' floors."""
        out = np.full(self.n, np.inf)
        for k in range(2, min(self.cap, self.n) + 1):
            if len(self.F):
                out = np.minimum(out, (self._terms(k) + self.F[:, None] / k).min(axis=0))
        return out

    def listed(self, threshold: float, lo: int, hi: int,
               limit: int) -> tuple[list[tuple[float, tuple[int, ...]]], bool]:
        """Groups (positions) of ``lo..hi`` members whose bound is below ``threshold``, with their bounds, sorted;
        each kind and size walked in increasing order of a separable lower bound on the bound, at most
        ``limit`` groups each. The flag says whether the list is complete (no walk stopped at its limit)."""
        found: dict[tuple[int, ...], float] = {}
        complete = True
        for k in range(max(lo, 2), min(hi, self.cap, self.n) + 1):
            terms = self._terms(k)
            for a in np.flatnonzero(self._least_by_kind(k) < threshold):  # the other kinds list nothing
                walk = _k_subsets_in_order(terms[a], k, threshold - self.F[a], limit)
                complete = complete and len(walk) < limit
                if not walk:
                    continue
                vals = self._values(int(a), np.array(walk, dtype=int))
                for pos, v in zip(walk, vals.tolist()):
                    if v < threshold and v < found.get(pos, math.inf):
                        found[pos] = v
        return sorted((v, p) for p, v in found.items()), complete


def _k_subsets_in_order(t: np.ndarray, k: int, threshold: float, limit: int) -> list[tuple[int, ...]]:
    """The ``k``-subsets S (sorted positions) with ``sum(t[S]) < threshold``, in increasing order of that sum,
    at most ``limit`` of them (a best-first walk over index combinations of the sorted values)."""
    order = np.argsort(t, kind="stable")
    v = t[order]
    n = len(v)
    if k > n or not math.isfinite(float(v[:k].sum())):
        return []
    start = tuple(range(k))
    heap = [(float(v[:k].sum()), start)]
    seen = {start}
    out: list[tuple[int, ...]] = []
    while heap and len(out) < limit:
        val, comb = heapq.heappop(heap)
        if val >= threshold:
            break
        out.append(tuple(sorted(int(order[c]) for c in comb)))
        for p in range(k):
            nxt = comb[p] + 1
            if nxt < n and (p == k - 1 or nxt < comb[p + 1]):
                child = comb[:p] + (nxt,) + comb[p + 1:]
                if child not in seen:
                    seen.add(child)
                    cv = val - float(v[comb[p]]) + float(v[nxt])
                    if math.isfinite(cv):
                        heapq.heappush(heap, (cv, child))
    return out
