"""Exact family decomposition for medoid graphs.

Families interact only through the budget: with ``C_f(k)`` the optimal p-median cost of family f using at
most k classes, the optimum is ``min sum_f C_f(k_f)`` s.t. ``sum_f size_f * k_f <= budget`` (a multiple-choice
knapsack, solved exactly by :func:`~colorshare.solvers.knapsack.multiple_choice_knapsack`).

Not every ``C_f(k)`` is needed. Each family starts with an interval ``[L_f(k), U_f(k)]``: U from a greedy
agglomerative chain, L from a cheap bound (the n-k cheapest nearest-classmate costs) and monotonicity
(C_f is nonincreasing in k). The knapsack over the L's gives a bound, over the U's a solution; while they
differ, the chosen backend solves exactly the (f, k) that the L-knapsack picks and are not yet exact. The
bound returned is the L-knapsack's value, valid at every step (also when a time limit stops the loop).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from ..formulations.base import Chosen
from ..formulations.costs import Option
from ..formulations.graph import SharingGraph
from ..formulations.pmedian import PMedian
from .backend import Backend
from .knapsack import multiple_choice_knapsack
from .solution import SOLVER_GAP, Status
from .swap import greedy_open, medoid_classes, swap_descent

__all__ = ["solve_by_family"]


class _Family:
    """Bounds on C_f(k) for one family, k = 1..k_hi."""

    def __init__(self, graph: SharingGraph, members: tuple[int, ...], k_hi: int) -> None:
        self.graph = graph
        self.members = members
        self.size = int(graph.sizes[members[0]])
        n = len(members)
        self.k_hi = k_hi
        self.lower = np.zeros(k_hi + 1)
        self.upper = np.full(k_hi + 1, np.inf)
        self.sol: list[Chosen | None] = [None] * (k_hi + 1)
        self.exact = np.zeros(k_hi + 1, dtype=bool)
        self.k_min = 1  # every k < k_min is proven infeasible
        self._radius: Any = None  # the family's Benders solver (radius subsolver), built on first use
        cost = graph.cost_matrix
        # L: at least n - k layers are served by another layer, each paying at least its cheapest option.
        cheapest = np.array([
            min((cost[i, j] for j in members if graph.can_share(i, j)), default=np.inf) for i in members
        ])
        ordered = np.sort(cheapest)
        csum = np.concatenate(([0.0], np.cumsum(ordered)))
        for k in range(1, k_hi + 1):
            self.lower[k] = csum[n - k] if n - k >= 0 else 0.0
        if any(graph.conflicts_of(i) for i in members):
            self._greedy_chain()
        else:
            self._open_chain()
        self.close()

    def _open_chain(self) -> None:
        """Upper bounds for every k without conflicts: the greedy's first k representatives, then swap descent."""
        idx = np.asarray(self.members)
        sub = self.graph.cost_matrix[np.ix_(idx, idx)]
        order = greedy_open(sub, self.k_hi) if self.k_hi >= 1 else np.zeros(0, dtype=np.int64)
        for k in range(1, min(len(order), self.k_hi) + 1):
            _, reps = swap_descent(sub, order[:k])
            chosen = medoid_classes(sub, reps, idx, self.size)
            self.offer(k, sorted(chosen), exact=(k == len(self.members)))

    def _greedy_chain(self) -> None:
        g = self.graph
        classes: list[tuple[tuple[int, ...], Option]] = [((i,), Option("medoid", 0.0, self.size, representative=i))
                                                         for i in self.members]
        while True:
            k = len(classes)
            if k <= self.k_hi:
                self.offer(k, list(classes), exact=(k == len(self.members)))
            if k == 1:
                return
            best = None
            for a in range(k):
                for b in range(a + 1, k):
                    group = tuple(sorted(classes[a][0] + classes[b][0]))
                    if not g.is_group(group):
                        continue
                    opt = g.best_option(group)
                    if opt is None:
                        continue
                    c, rep = opt.cost, opt.representative
                    delta = c - classes[a][1].cost - classes[b][1].cost
                    if best is None or delta < best[0]:
                        best = (delta, a, b, group, Option("medoid", c, self.size, representative=rep))
            if best is None:
                return
            _, a, b, group, opt = best
            classes = [cl for t, cl in enumerate(classes) if t not in (a, b)] + [(group, opt)]

    def offer(self, k: int, chosen: Chosen, exact: bool = False, bound: float | None = None) -> None:
        c = math.fsum(o.cost for _, o in chosen)
        if c < self.upper[k]:
            self.upper[k], self.sol[k] = c, chosen
        if bound is not None:
            self.lower[k] = max(self.lower[k], bound)
        if exact:
            self.lower[k] = self.upper[k]
            self.exact[k] = True

    def _member(self, o: Option) -> int:
        """The graph index of a subproblem class's representative (every radius class names one)."""
        if o.representative is None:
            raise RuntimeError("a radius class without a representative")
        return self.members[o.representative]

    def solve_radius(self, k: int, start: Chosen | None, deadline: float | None, seed: int,
                     options: dict[str, Any]) -> tuple[Chosen | None, Status, float | None, dict[str, Any]]:
        """C_f(k) by Benders on the radius formulation of this family alone (sizes 1, budget k classes); one
        live master per family, so its cuts serve every k."""
        from .benders import RadiusSolver

        if self._radius is None:
            idx = np.asarray(self.members)
            sub = SharingGraph.from_matrix(self.graph.cost_matrix[np.ix_(idx, idx)])
            self._radius = RadiusSolver(sub, seed, options.get("threads"))
        where = {g: t for t, g in enumerate(self.members)}
        local = None if start is None else [
            (tuple(where[i] for i in grp), Option(o.action, o.cost, 1, representative=None if o.representative is None
                                                  else where[o.representative])) for grp, o in start]
        if local is None:
            local = self._radius.greedy_start(float(k))
        chosen, claim, bound, facts = self._radius.solve(float(k), local, deadline, bool(options.get("log", False)))
        back = None if chosen is None else [
            (tuple(self.members[t] for t in grp), Option(o.action, o.cost, self.size, representative=self._member(o)))
            for grp, o in chosen]
        return back, claim, bound, facts

    def infeasible_up_to(self, k: int) -> None:
        self.k_min = max(self.k_min, k + 1)

    def close(self) -> None:
        """Monotonicity: a solution with k classes is one with at most k+1; C_f(k) >= C_f(k+1)."""
        for k in range(2, self.k_hi + 1):
            if self.upper[k - 1] < self.upper[k]:
                self.upper[k], self.sol[k] = self.upper[k - 1], self.sol[k - 1]
        for k in range(self.k_hi - 1, 0, -1):
            self.lower[k] = max(self.lower[k], self.lower[k + 1])
        self.lower = np.minimum(self.lower, self.upper)
        finite = np.isfinite(self.upper)
        tol = 1e-12 * np.maximum(1.0, np.abs(np.where(finite, self.upper, 0.0)))
        self.exact |= finite & (self.lower >= np.where(finite, self.upper, 0.0) - tol)

    def items(self, which: str) -> list[tuple[int, float]]:
        vals = self.lower if which == "lower" else self.upper
        return [(k * self.size, float(vals[k])) for k in range(self.k_min, self.k_hi + 1) if np.isfinite(vals[k])]


def _fates(fates: dict[str, int]) -> str:
    """One word when every subproblem's start met the same fate, else e.g. "used 70, rejected 7"."""
    if len(fates) == 1:
        return next(iter(fates))
    return ", ".join(f"{k} {v}" for k, v in sorted(fates.items(), key=lambda kv: -kv[1])) or "not given"


def solve_by_family(
    graph: SharingGraph,
    budget: float,
    backend: Backend,
    time_limit: float | None,
    seed: int,
    warm_start: bool,
    options: dict[str, Any],
    radius: bool = False,
) -> tuple[Chosen | None, Status, float | None, dict[str, Any]]:
    """Solve a medoid graph family by family; returns (classes, solver claim, bound, facts). With ``radius``
    (HiGHS, no conflicts) each C_f(k) is solved by Benders cuts (``benders.solve_radius``) instead of the
    backend's p-median program."""
    deadline = None if time_limit is None else time.perf_counter() + time_limit
    sizes = {f: int(graph.sizes[m[0]]) for f, m in graph.family_members.items()}
    floor_mem = sum(sizes.values())
    fams: list[_Family] = []
    for f, members in graph.family_members.items():
        room = budget - (floor_mem - sizes[f])
        k_hi = len(members) if math.isinf(room) else min(len(members), int(room // sizes[f]))
        fams.append(_Family(graph, members, k_hi))
    solved = 0
    fates: dict[str, int] = {}
    rounds = 0
    timed_out = False
    while True:
        rounds += 1
        lb = multiple_choice_knapsack([fm.items("lower") for fm in fams], budget)
        if lb is None:  # every remaining choice is proven infeasible
            facts = {"decomposition": "by family", "subproblems": solved, "warm_start": _fates(fates), "rounds": rounds}
            return None, Status.INFEASIBLE, None, facts
        ub = multiple_choice_knapsack([fm.items("upper") for fm in fams], budget)
        if ub is not None and lb[0] >= ub[0] - SOLVER_GAP * max(1.0, abs(ub[0])):
            break
        lb_ks = [fm.k_min + pick for fm, pick in zip(fams, lb[1])]
        todo = [(fm, k) for fm, k in zip(fams, lb_ks) if not fm.exact[k]]
        if not todo or timed_out:  # no todo: the bound's own choice is exact, so it is optimal
            break
        for fm, k in todo:
            left = None if deadline is None else deadline - time.perf_counter()
            if left is not None and left <= 0:
                timed_out = True
                break
            start = next((fm.sol[j] for j in range(k, 0, -1) if fm.sol[j] is not None), None)
            if radius:
                chosen, status, bound, more = fm.solve_radius(k, start if warm_start else None, deadline, seed,
                                                              options)
                fate = more.get("warm_start", "not given")
            else:
                form = PMedian(graph, math.inf, layers=fm.members, max_classes=k)
                hint = form.encode(start) if (warm_start and start is not None) else None
                raw = backend.solve_program(form.program, left, seed, hint, **options)
                chosen = form.decode(raw.x) if raw.x is not None else None
                status, bound, fate = raw.status, raw.bound, raw.facts.get("warm_start", "not given")
            solved += 1
            fates[fate] = fates.get(fate, 0) + 1
            if status == Status.INFEASIBLE:
                fm.infeasible_up_to(k)
            elif chosen is not None:
                fm.offer(k, chosen, exact=status == Status.OPTIMAL, bound=bound)
            else:
                timed_out = True
            if status not in (Status.OPTIMAL, Status.INFEASIBLE):
                timed_out = True
            fm.close()
    facts = {"decomposition": "by family", "subproblems": solved, "warm_start": _fates(fates), "rounds": rounds}
    lb = multiple_choice_knapsack([fm.items("lower") for fm in fams], budget)
    ub = multiple_choice_knapsack([fm.items("upper") for fm in fams], budget)
    bound = None if lb is None else lb[0]
    if ub is None:
        return None, Status.UNKNOWN, bound, facts
    classes: Chosen = []
    for fm, pick in zip(fams, ub[1]):
        items = [k for k in range(fm.k_min, fm.k_hi + 1) if np.isfinite(fm.upper[k])]
        sol = fm.sol[items[pick]]
        assert sol is not None  # a finite upper bound has its coloring
        classes.extend(sol)
    proved = bound is not None and bound >= ub[0] - SOLVER_GAP * max(1.0, abs(ub[0]))
    return sorted(classes, key=lambda t: t[0][0]), Status.OPTIMAL if proved else Status.FEASIBLE, bound, facts
