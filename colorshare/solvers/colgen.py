"""Column generation for set partitioning over families too large to enumerate (2^30 groups per family).

The restricted master starts from every singleton (all its options). Each round solves its LP relaxation
(HiGHS, whatever backend then solves the integer program), reads the duals ``pi_i`` of the cover rows and the
price ``lam >= 0`` of the budget row, and prices groups with each family's
:class:`~colorshare.formulations.bounds.FamilyBound`, asked again every round because it tightens as pairs are
priced exactly (superadditive costs: a group costs at least the average over matchings of its pairs). A
group can only improve the LP if its reduced-cost bound is negative. Pairs are priced exhaustively; groups of
3..``GENERATED_GROUP_SIZE`` members are listed in increasing order of their bound; larger groups are covered by
the bound's certified minimum. Groups that may price out are evaluated exactly and join the master.

Lower bound: for any ``pi`` and ``lam >= 0`` the Lagrangian ``sum pi - lam B + min over partitions of the
reduced costs`` bounds the optimum; each class's reduced cost is at least the sum over its members of
``min(their singleton reduced costs, their floor)``, the floor being a member's least share of any group's
reduced-cost bound (:meth:`~colorshare.formulations.bounds.PricedFamily.floors`), so that sum is a valid
global bound. When no group prices out, the master's LP value itself is the LP bound of the whole space, and
its duals give the integer certificate of :func:`colorshare.solvers.api._solve_generated`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..formulations.bounds import FamilyBound, PricedFamily
from ..formulations.costs import GroupCosts
from ..formulations.graph import SharingGraph
from ..formulations.program import IntegerProgram
from ..formulations.setpart import SetPartition

__all__ = ["generate_columns", "ColumnSet", "estimated_groups", "GENERATED_GROUP_SIZE"]

GENERATED_GROUP_SIZE = 4
"""Largest group that pricing lists for evaluation (Basis Sharing's groups go up to this size on LLaMA-7B)."""

LISTED_PER_KIND = 256
"""Groups of 3+ members that pricing lists per kind of bound and group size in one round."""


def estimated_groups(graph: SharingGraph, max_group_size: int | None) -> int:
    """How many groups full enumeration would visit (conflicts ignored)."""
    total = 0
    for members in graph.family_members.values():
        n = len(members)
        cap = n if max_group_size is None else min(n, max_group_size)
        total += sum(math.comb(n, k) for k in range(1, cap + 1))
    return total + (len(graph.scope_groups()) if max_group_size != 1 else 0)


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
    duals: tuple[np.ndarray, float] | None = None
    caps: dict[str, int] = field(default_factory=dict)
    have: set[tuple[int, ...]] = field(default_factory=set)
    unevaluable: set[tuple[int, ...]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.have.update(self.groups)

    @property
    def pricing(self) -> _Pricing | None:
        """Pricing under the duals of the LP that was optimal over every group, with the bounds as they are
        now (tighter as pairs were evaluated since); None unless ``lp_complete``."""
        if self.duals is None:
            return None
        return _Pricing(self.graph, self.caps, _family_bounds(self.graph, self.caps), self.have, *self.duals)

    def add(self, group: tuple[int, ...]) -> bool:
        """Evaluate ``group``'s options now (cached, so the time limit covers it) and put it in the master; False
        (and remembered in ``unevaluable``) for a group whose costs the cost model cannot give (a table's)."""
        if not self.graph.cost_model.evaluable(group):
            self.unevaluable.add(group)
            return False
        self.graph.options(group)
        self.groups.append(group)
        self.have.add(group)
        return True

    def below(self, threshold: float) -> tuple[list[tuple[int, ...]], bool]:
        """Groups not in the master whose reduced cost may be below ``threshold`` (pairs exactly, larger groups
        by their bound), sorted by that bound; and whether every larger group is certified at or above it."""
        pricing = self.pricing
        if pricing is None:
            return [], False
        cands, larger_min = pricing(threshold)
        return [g for _, g in cands], larger_min >= threshold

    def least_outside(self) -> float:
        """A certified lower bound on the reduced cost, under the complete LP's duals, of every group not in the
        master (-inf unless ``lp_complete``)."""
        pricing = self.pricing
        return -math.inf if pricing is None else pricing.least_outside()


def _lp(graph: SharingGraph, budget: float, groups: list[tuple[int, ...]],
        time_limit: float | None = None) -> tuple[SetPartition, float, np.ndarray, float] | None:
    """Solve the master's LP (HiGHS) with an artificial overflow column on the budget row (so duals always
    exist). Returns the formulation, LP value, cover duals pi and the budget price lam >= 0; None if the time
    limit (seconds) stopped it."""
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
    status, value, _, duals = solve_lp(lp, time_limit)
    if status == "Time limit reached":
        return None
    if status != "Optimal":
        raise RuntimeError(f"column generation: the master LP ended with status {status!r}")
    value *= scale
    duals = duals * scale
    pi = duals[: graph.n]
    lam = max(0.0, -float(duals[budget_row])) / unit if budget_row is not None else 0.0  # per parameter
    return form, value, pi, lam


class _Pricing:
    """Pricing under the duals (pi, lam) of one master LP: each family's :class:`FamilyBound` priced
    (:class:`~colorshare.formulations.bounds.PricedFamily`), and the groups already in the master."""

    def __init__(self, graph: SharingGraph, caps: dict[str, int], bounds: dict[str, FamilyBound], have: set,
                 pi: np.ndarray, lam: float) -> None:
        self.graph, self.caps, self.have = graph, caps, have
        self.priced: dict[str, PricedFamily] = {}
        for f, members in graph.family_members.items():
            fb = bounds[f]
            if len(fb) and caps[f] >= 2:
                self.priced[f] = fb.under(pi[np.asarray(members)], lam, caps[f])

    def member_bounds(self, lb: np.ndarray) -> np.ndarray:
        """``lb`` (each layer's least singleton reduced cost) lowered to each member's least share of any group's
        reduced cost bound (:meth:`PricedFamily.floors`)."""
        out = lb.copy()
        for f, pf in self.priced.items():
            idx = np.asarray(self.graph.family_members[f])
            out[idx] = np.minimum(out[idx], pf.floors())
        return out

    def __call__(self, threshold: float) -> tuple[list[tuple[float, tuple[int, ...]]], float]:
        """Groups not in the master whose reduced-cost bound is below ``threshold`` (sorted), and a certified
        lower bound on the reduced cost of every group of 3+ members not listed. Pairs are listed
        exhaustively; groups of 3..GENERATED_GROUP_SIZE members in order of their bound, up to a limit; larger
        ones only when nothing smaller is left and the bound says some may price out. A listing that was
        complete leaves nothing to the certified minimum (inf)."""
        out: list[tuple[float, tuple[int, ...]]] = []
        larger_min = math.inf
        for f, pf in self.priced.items():
            members = self.graph.family_members[f]
            for val, (a, b) in pf.pairs(threshold):
                grp = (members[a], members[b])
                if grp not in self.have and self.graph.can_share(*grp):
                    out.append((val, grp))
            cap = self.caps[f]
            lo = 3
            for hi in (min(cap, GENERATED_GROUP_SIZE), cap):
                if lo > hi:
                    break
                listed, complete = pf.listed(threshold, lo, hi, limit=LISTED_PER_KIND)
                new = [(val, tuple(members[k] for k in pos)) for val, pos in listed]
                new = [(val, grp) for val, grp in new if grp not in self.have and self.graph.is_group(grp)]
                out.extend(new)
                if not complete:  # some groups of lo..hi members below the threshold were not listed
                    larger_min = min(larger_min, pf.least(lo))
                    break
                rest = pf.least(hi + 1) if hi < cap else math.inf
                if new or rest >= threshold:
                    larger_min = min(larger_min, rest)
                    break
                lo = hi + 1  # nothing small left to evaluate, but larger groups may price out: list them too
        out.sort()
        return out, larger_min

    def least_outside(self) -> float:
        """A certified lower bound on the reduced cost of every group not in the master (2+ members)."""
        best = math.inf
        for f, pf in self.priced.items():
            members = self.graph.family_members[f]
            best = min([best] + [v for v, (a, b) in pf.pairs(math.inf) if (members[a], members[b]) not in self.have
                                 and self.graph.can_share(members[a], members[b])])
            if self.caps[f] >= 3:
                best = min(best, pf.least(3))  # groups of 3+ in the master too: valid, if cautious
        return best


def _master_shares(form: SetPartition, pi: np.ndarray, lam: float, lb: np.ndarray) -> np.ndarray:
    """``lb`` lowered so that every group in the master (scope groups, groups priced by measurement: whatever
    their bound) has a reduced cost of at least the sum of its members' ``lb``: each member at most its even
    share of the group's exact reduced cost."""
    out = lb.copy()
    for grp, o in form.columns:
        if len(grp) > 1:
            share = (o.cost - float(pi[list(grp)].sum()) + lam * o.memory) / len(grp)
            idx = list(grp)
            out[idx] = np.minimum(out[idx], share)
    return out


def _unknown_pairs(graph: SharingGraph, candidates: list[tuple[float, tuple[int, ...]]]) -> list[tuple[int, int]]:
    """The pairs within the candidate groups whose bound is not exact yet, most negative candidates first."""
    known: dict[str, set[tuple[int, int]]] = {}
    out: dict[tuple[int, int], None] = {}
    for _, grp in candidates:
        f = graph.families[grp[0]]
        if f not in known:
            known[f] = graph.cost_model.known_pairs(graph.family_members[f])
        for k, a in enumerate(grp):
            for b in grp[k + 1:]:
                if (a, b) not in known[f]:
                    out[(a, b)] = None
    return list(out)


def _family_bounds(graph: SharingGraph, caps: dict[str, int]) -> dict[str, FamilyBound]:
    """Each family's current bound (asked again every round: it tightens as pairs are priced). ValueError when
    a family whose groups are allowed has none: no bound could then be stated."""
    out = {}
    for f, members in graph.family_members.items():
        fb = graph.cost_model.bounds(tuple(members))
        if fb is None and caps[f] >= 2:
            raise ValueError(f"column generation needs a lower bound on the groups of family {f!r} and its cost "
                             "model has none (colorshare.torch graphs have them for the kfac, probed and layerwise "
                             "estimators); pass max_group_size=K to enumerate a smaller space instead")
        out[f] = fb if fb is not None else FamilyBound([])
    return out


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
    model = graph.cost_model
    if not isinstance(model, GroupCosts) or not model.has_bounds:
        raise ValueError("column generation needs group costs with lower bounds (colorshare.torch graphs "
                         "have them); pass max_group_size=K to enumerate a smaller space instead")
    caps = {f: len(m) if max_group_size is None else min(len(m), max_group_size)
            for f, m in graph.family_members.items()}
    run = _Generation(graph, budget, deadline, caps, model)
    unpriced = run.seed(max_group_size)
    if unpriced is None:
        return run.cs  # no bound: the groups left out have none (a master of singletons still gives a coloring)
    for rnd in range(max_rounds):
        if run.out_of_time():
            run.cs.facts["stopped"] = "time limit"
            break
        if not run.round(rnd, per_round):
            break
        if progress is not None:
            progress(f"round {rnd + 1}: LP {run.cs.lp_value:.6g}, bound {run.best_bound:.6g}, "
                     f"{len(run.cs.groups)} groups")
    return run.finish(unpriced)


class _Generation:
    """One column generation: its column set, the best Lagrangian bound so far, the last duals."""

    def __init__(self, graph: SharingGraph, budget: float, deadline: float | None, caps: dict[str, int],
                 model: GroupCosts) -> None:
        self.graph, self.budget, self.deadline, self.caps, self.model = graph, budget, deadline, caps, model
        self.cs = ColumnSet(graph, [], facts={"rounds": 0, "master_lp": "highs"}, caps=caps)
        self.best_bound = 0.0  # every group cost is >= 0 (truncated curvature-weighted energy): 0 bounds the optimum
        self.priced_out = True
        self.pi: np.ndarray | None = None
        self.lam = 0.0

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.perf_counter() > self.deadline

    def seed(self, max_group_size: int | None) -> list[tuple[int, ...]] | None:
        """Every singleton (all its options: the master is then always feasible), and every group a scope allows
        (a shared input: few, so priced exactly rather than bounded); the scope groups a table has no costs for.
        None if the time limit came first."""
        cs, graph = self.cs, self.graph
        first = [(i,) for i in range(graph.n)] + (graph.scope_groups() if max_group_size != 1 else [])
        for grp in first:
            if self.out_of_time():
                cs.facts["stopped"] = "time limit before every singleton and scope group was evaluated"
                cs.facts["evaluated_groups"] = len(cs.groups)
                return None
            cs.add(grp)
        cs.facts["evaluated_groups"] = len(cs.groups)
        return [grp for grp in first if grp in cs.unevaluable]

    def _bound(self, form: SetPartition, price: _Pricing, single: np.ndarray) -> None:
        """Raise the Lagrangian bound by the members' shares under the current duals."""
        assert self.pi is not None
        lb_member = _master_shares(form, self.pi, self.lam, price.member_bounds(single))
        if math.isfinite(float(lb_member.sum())):
            self.best_bound = max(self.best_bound, float(self.pi.sum() - self.lam * self.budget + lb_member.sum()))

    def round(self, rnd: int, per_round: int) -> bool:
        """One round: the master LP, pricing (with pair statistics made exact where they decide), and the new
        columns. False when generation stops."""
        cs, graph, caps = self.cs, self.graph, self.caps
        bounds = _family_bounds(graph, caps)
        left = None if self.deadline is None else max(1e-3, self.deadline - time.perf_counter())
        lp = _lp(graph, self.budget, cs.groups, left)
        if lp is None:
            cs.facts["stopped"] = "time limit in the master LP"
            return False
        form, cs.lp_value, self.pi, self.lam = lp
        cs.facts["rounds"] = rnd + 1
        price = _Pricing(graph, caps, bounds, cs.have, self.pi, self.lam)
        # singleton reduced costs (their options are all in the master), lowered by every group's share
        single = np.full(graph.n, math.inf)
        for grp, o in form.columns:
            if len(grp) == 1:
                single[grp[0]] = min(single[grp[0]], o.cost - self.pi[grp[0]] + self.lam * o.memory)
        self._bound(form, price, single)
        threshold = -1e-9 * max(1.0, abs(cs.lp_value))
        candidates, larger_min = price(threshold)
        while candidates and not self.out_of_time():
            # the candidates' pairs whose bound is not exact yet: make it exact (cheaper than evaluating their
            # options), then price again under the same duals; what still prices out is worth evaluating
            unknown = _unknown_pairs(graph, candidates)
            done = self.model.refine(unknown, self.deadline) if unknown else 0
            if not done:
                break
            cs.facts["refined_pairs"] = cs.facts.get("refined_pairs", 0) + done
            price = _Pricing(graph, caps, _family_bounds(graph, caps), cs.have, self.pi, self.lam)
            self._bound(form, price, single)
            candidates, larger_min = price(threshold)
        return self._add(candidates, larger_min, threshold, per_round)

    def _add(self, candidates: list[tuple[float, tuple[int, ...]]], larger_min: float, threshold: float,
             per_round: int) -> bool:
        """Put the groups that price out into the master; False when none is left to add."""
        cs = self.cs
        if not candidates:
            # complete only if no group of 3+ members can price out either
            self.priced_out = larger_min < threshold
            if self.priced_out:
                cs.facts["stopped"] = "larger groups may still price out; none left to list"
            return False
        new = [grp for grp in dict.fromkeys(grp for _, grp in candidates) if grp not in cs.unevaluable][:per_round]
        if not new:
            # every group that may price out is one the cost model has no costs for (a table's): the LP is not
            # proven over the whole space, and nothing more can be evaluated
            cs.facts["stopped"] = f"{len(candidates)} group(s) may price out but have no costs here"
            return False
        for grp in new:
            if self.out_of_time():
                break
            cs.add(grp)
        cs.facts["evaluated_groups"] = len(cs.groups)
        return True

    def finish(self, unpriced: list[tuple[int, ...]]) -> ColumnSet:
        """The column set with its bound, and whether its LP is optimal over every group."""
        cs = self.cs
        if not self.priced_out:
            # no group of the allowed sizes can improve the LP: its value bounds the whole space
            self.best_bound = max(self.best_bound, cs.lp_value)
            cs.facts["lp_optimal_over_all_groups"] = True
            assert self.pi is not None  # the LP was solved: it priced nothing out
            cs.lp_complete, cs.duals = True, (self.pi, self.lam)
        cs.facts["lp_value"] = cs.lp_value
        cs.facts["lagrangian_bound"] = self.best_bound
        cs.bound = self.best_bound if math.isfinite(self.best_bound) else None
        if unpriced:  # groups no bound covers and no cost prices: nothing is proven about colorings that use them
            cs.facts["unpriced_scope_groups"] = len(unpriced)
            cs.bound, cs.lp_complete, cs.duals = None, False, None
            cs.facts.pop("lp_optimal_over_all_groups", None)
        return cs
