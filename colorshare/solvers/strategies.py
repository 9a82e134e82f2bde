"""How a validated request is solved: strategies that declare what they apply to, tried in order.

Each strategy's :meth:`~Strategy.applies` reads the request only (graph, backend's capabilities, resolved
formulation, options); the first that applies runs (:data:`STRATEGIES`, the last applies to every request).
``facts`` is the strategy's report to the user (solver words, stop reasons, sizes): written, never read back
to decide anything.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from ..formulations.base import Chosen
from ..formulations.registry import get_formulation
from ..formulations.setpart import admits
from . import scaled
from .backend import HeuristicBackend
from .benders import solve_radius
from .colgen import estimated_groups
from .decompose import solve_by_family
from .generated import solve_generated
from .greedy import greedy
from .request import Outcome, SolveRequest, verify
from .solution import GAP_TOLERANCE, SolverError, Status, compute_gap

__all__ = ["Strategy", "STRATEGIES", "pick_strategy", "MAX_ENUMERATED_GROUPS"]

MAX_ENUMERATED_GROUPS = 2000
"""Above this many groups (all families, up to ``max_group_size``), ``columns="auto"`` generates columns."""

ENUMERATION_SHARE = 0.6
"""The share of a time limit that evaluating a set-partitioning program's columns may use."""


class Strategy(ABC):
    """One way to solve a request: :meth:`applies` says when, :meth:`run` does it."""

    name: ClassVar[str]

    @abstractmethod
    def applies(self, req: SolveRequest) -> bool: ...

    @abstractmethod
    def run(self, req: SolveRequest, facts: dict[str, Any]) -> Outcome: ...


def greedy_start(req: SolveRequest, facts: dict[str, Any]) -> Chosen | None:
    """The greedy coloring (warm start, and a cap on every class's cost); it may use a third of the time limit
    (it evaluates groups: slow on a model graph's first call)."""
    start = greedy(req.graph, req.budget, req.space.get("max_group_size"), req.deadline(1 / 3))
    facts["greedy_objective"] = None if start is None else math.fsum(o.cost for _, o in start)
    if start is None and req.time_limit is not None and time.perf_counter() > req.t0 + req.time_limit / 3:
        facts["greedy"] = "stopped by the time limit"
    return start


class ColumnGeneration(Strategy):
    """Set partitioning over a group-cost graph whose families are too large to enumerate (or a table with
    bounds): columns generated with a proven bound over the whole space (:func:`solve_generated`)."""

    name = "column generation"

    def applies(self, req: SolveRequest) -> bool:
        g = req.graph
        if not (req.formulation == "setpart" and req.exact and g.kind == "group"):
            return False
        if req.columns != "auto":
            return req.columns == "generate"
        if "group_filter" in req.space or "groups" in req.space:
            return False
        table = getattr(g.cost_model, "table", None)
        if table is not None:  # a table with bounds is the evaluated part of a larger space
            return bool(g.cost_model.has_bounds)
        return estimated_groups(g, req.space.get("max_group_size")) > MAX_ENUMERATED_GROUPS

    def run(self, req: SolveRequest, facts: dict[str, Any]) -> Outcome:
        return solve_generated(req, facts)


class Heuristic(Strategy):
    """A backend that searches colorings directly (no program, no bound), from the greedy coloring."""

    name = "heuristic"

    def applies(self, req: SolveRequest) -> bool:
        return "graph" in req.backend.capabilities

    def run(self, req: SolveRequest, facts: dict[str, Any]) -> Outcome:
        g = req.graph
        # a medoid graph of one family is searched from representatives (the merging greedy is O(n^3) there)
        by_representatives = g.kind == "medoid" and not g.conflicts and len(g.family_members) == 1
        start = None if by_representatives else greedy_start(req, facts)
        solver = req.backend()
        assert isinstance(solver, HeuristicBackend)
        chosen, more = solver.solve_graph(g, req.budget, req.time_limit, req.seed, start if req.warm_start else None,
                                          **req.options)
        facts.update(more)
        return Outcome(chosen, Status.FEASIBLE if chosen is not None else Status.UNKNOWN, None)


class RadiusByFamily(Strategy):
    """The radius formulation family by family (Benders cuts on live models) plus an exact knapsack."""

    name = "radius by family"

    def applies(self, req: SolveRequest) -> bool:
        return req.formulation == "radius" and len(req.graph.family_members) > 1 and req.decompose in ("auto", True)

    def run(self, req: SolveRequest, facts: dict[str, Any]) -> Outcome:
        chosen, claim, bound, more = solve_by_family(req.graph, req.budget, req.backend(), req.time_limit, req.seed,
                                                     req.warm_start, req.options, radius=True)
        facts.update(more)
        facts["formulation"] = "radius per family (Benders) + knapsack"
        return Outcome(chosen, claim, bound)


class Radius(Strategy):
    """The radius formulation as one Benders loop on a live model."""

    name = "radius"

    def applies(self, req: SolveRequest) -> bool:
        return req.formulation == "radius"

    def run(self, req: SolveRequest, facts: dict[str, Any]) -> Outcome:
        # one family: the solver builds its start from representatives
        start = None if len(req.graph.family_members) == 1 else greedy_start(req, facts)
        chosen, claim, bound, more = solve_radius(req.graph, req.budget, start if req.warm_start else None,
                                                  req.deadline(), req.seed, build_start=req.warm_start, **req.options)
        facts.update(more)
        facts["formulation"] = f"radius (Benders: {more['benders'].get('cuts', 0)} cuts)"
        return Outcome(chosen, claim, bound)


class PMedianByFamily(Strategy):
    """A multi-family medoid graph as one p-median per family plus an exact knapsack over the budget (the
    families interact only through it); for backends that prove the split faster (``decompose_by_default``)."""

    name = "p-median by family"

    def applies(self, req: SolveRequest) -> bool:
        split = req.decompose is True or (req.decompose == "auto" and req.backend.decompose_by_default)
        return (req.formulation == "pmedian" and split and len(req.graph.family_members) > 1
                and req.graph.kind == "medoid")

    def run(self, req: SolveRequest, facts: dict[str, Any]) -> Outcome:
        chosen, claim, bound, more = solve_by_family(req.graph, req.budget, req.backend(), req.time_limit, req.seed,
                                                     req.warm_start, req.options)
        facts.update(more)
        facts["formulation"] = "pmedian per family + knapsack"
        return Outcome(chosen, claim, bound)


class OneProgram(Strategy):
    """The resolved formulation as one integer program, warm-started from the greedy coloring, whose cost caps
    every class (costs are >= 0: smaller, better-scaled models)."""

    name = "one program"

    def applies(self, req: SolveRequest) -> bool:
        return True

    def run(self, req: SolveRequest, facts: dict[str, Any]) -> Outcome:
        g, space = req.graph, dict(req.space)
        # the greedy merges freely; an explicit candidate list would reject its classes anyway
        start = None if "groups" in space else greedy_start(req, facts)
        # the cap is valid only if the greedy coloring is in the model, i.e. passes a setpart restriction
        admitted = start is not None and all(
            admits(grp, space.get("max_group_size"), space.get("group_filter"), g) for grp, _ in start)
        cap = math.fsum(o.cost for _, o in start) if admitted and start is not None else None
        if req.formulation == "setpart" and req.time_limit is not None:
            space["deadline"] = req.deadline(ENUMERATION_SHARE)
        form = get_formulation(req.formulation)(g, req.budget, cost_cap=cap, **space)
        facts["formulation"] = form.describe()
        cut = getattr(form, "cut", 0)
        if cut:
            # not every group was evaluated: the program is a restriction, and its bound proves nothing outside it
            facts["restricted"] = (f"the time limit stopped the enumeration: {cut} group(s) not evaluated, "
                                   f"{len(form.columns)} columns in the program")
            if form.uncovered:
                facts["restricted"] += f"; {len(form.uncovered)} layer(s) with no column yet"
                return Outcome(None, Status.UNKNOWN, None)
        elif getattr(form, "restricted", False) or (getattr(g.cost_model, "table", None) is not None
                                                    and g.cost_model.has_bounds):
            facts["restricted"] = "optimal over the enumerated columns only"
        chosen, raw = _run_program(req, form, start, facts)
        if cut:
            facts["column_bound"] = raw.bound  # the solver's bound over the evaluated columns only
            chosen = chosen if chosen is not None else start
            return Outcome(chosen, Status.FEASIBLE if chosen is not None else Status.UNKNOWN, None)
        return Outcome(chosen, raw.status, raw.bound)


def _run_program(req: SolveRequest, form: Any, start: Chosen | None, facts: dict[str, Any]) -> tuple[Any, Any]:
    """Solve ``form``'s program on the backend from ``start``; a claimed optimum that its own bound contradicts
    (a misread start: HiGHS presolve) is solved again from scratch, within the time left."""
    solver = req.backend()
    hint = form.encode(start) if (req.warm_start and start is not None) else None
    raw = scaled.solve_scaled(solver, form.program, req.left(), req.seed, hint, req.options)
    facts.update(raw.facts)
    chosen = form.decode(raw.x) if raw.x is not None else None
    if hint is not None and raw.status == Status.OPTIMAL and _contradicts(req, chosen, raw.bound):
        facts["warm_start"] = "contradicted (claimed optimal, re-check disagrees); solved again without it"
        raw = scaled.solve_scaled(solver, form.program, req.left(), req.seed, None, req.options)
        facts.update({k: v for k, v in raw.facts.items() if k != "warm_start"})
        chosen = form.decode(raw.x) if raw.x is not None else None
    return chosen, raw


def _contradicts(req: SolveRequest, chosen: Chosen | None, bound: float | None) -> bool:
    """Whether a claimed-optimal answer's float64 objective is off its own bound by more than the gap tolerance."""
    if chosen is None:
        return True
    if bound is None:
        return False
    try:
        gap = compute_gap(math.fsum(c.cost for c in verify(req.graph, chosen, math.inf, "check")), bound)
    except SolverError:  # an answer that breaks the model, or a bound above it: a contradiction either way
        return True
    return gap is not None and gap > GAP_TOLERANCE


STRATEGIES: tuple[Strategy, ...] = (ColumnGeneration(), Heuristic(), RadiusByFamily(), Radius(), PMedianByFamily(),
                                    OneProgram())
"""Tried in this order; the first whose ``applies`` holds runs. Adding a strategy = one class + one entry."""


def pick_strategy(req: SolveRequest) -> Strategy:
    """The first strategy of :data:`STRATEGIES` that applies to ``req``."""
    return next(s for s in STRATEGIES if s.applies(req))

