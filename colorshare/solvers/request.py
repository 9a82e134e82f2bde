"""A solve as a validated request, and how a strategy's outcome becomes a checked :class:`Solution`.

:func:`make_request` checks every argument of ``solve()`` once, before any work, and resolves what ``"auto"``
means; a strategy (:mod:`.strategies`) reads the request and returns an :class:`Outcome`; :meth:`SolveRequest.
solution` re-derives every class from the graph in float64 and states the status, bound and gap.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from ..formulations.base import Chosen
from ..formulations.graph import SharingClass, SharingGraph
from ..formulations.registry import auto_formulation, get_formulation
from ..validation import OneOf, check, check_budget, check_flag, check_seed, check_time_limit
from .backend import Backend
from .registry import backends_with, get_backend
from .solution import GAP_TOLERANCE, Solution, SolverError, Status, colors_of, compute_gap

__all__ = ["SolveRequest", "Outcome", "make_request", "verify", "SPACE_OPTIONS"]

SPACE_OPTIONS = ("max_group_size", "group_filter", "groups")
"""Options that restrict the set-partitioning space (the setpart formulation's)."""


@dataclass
class Outcome:
    """What a strategy found: classes (or None), the solver's claim, and a proven bound (None where none)."""

    chosen: Chosen | None
    claim: Status
    bound: float | None = None


@dataclass
class SolveRequest:
    """One solve, validated: the graph, budget (graph units), backend class, time limit (s, None: no limit),
    seed, the resolved formulation's name, the decomposition choice, whether to warm-start, the column mode,
    the setpart space options (``space``) and the backend's own options. ``t0``: ``time.perf_counter()`` at
    the call."""

    graph: SharingGraph
    budget: float
    backend: type[Backend]
    time_limit: float | None
    seed: int
    formulation: str
    decompose: bool | str
    warm_start: bool
    columns: str
    space: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    t0: float = 0.0

    @property
    def exact(self) -> bool:
        return self.backend.exact

    def deadline(self, share: float = 1.0) -> float | None:
        """``time.perf_counter()`` when ``share`` of the time limit is spent (None without a limit)."""
        return None if self.time_limit is None else self.t0 + share * self.time_limit

    def left(self) -> float | None:
        """Seconds of the time limit left (at least 1 ms; None without a limit)."""
        return None if self.time_limit is None else max(1e-3, self.time_limit - (time.perf_counter() - self.t0))

    def solution(self, outcome: Outcome, facts: dict[str, Any]) -> Solution:
        """The checked :class:`Solution` of ``outcome``: classes re-derived from the graph (float64 objective and
        memory), the bound clipped to the objective within rounding, the status from the claim and the gap."""
        b, name = self.budget, self.backend.name
        if outcome.chosen is None:
            status = Status.INFEASIBLE if outcome.claim == Status.INFEASIBLE else Status.UNKNOWN
            return Solution(None, None, outcome.bound if status == Status.UNKNOWN else None, None, status,
                            time.perf_counter() - self.t0, None, name, b, [], facts)
        classes = verify(self.graph, outcome.chosen, b, name)
        objective = math.fsum(c.cost for c in classes)
        memory = sum(c.memory for c in classes)
        bound = outcome.bound
        if bound is not None and bound - objective <= 1e-9 * max(1.0, abs(objective)):
            bound = min(bound, objective)
        gap = compute_gap(objective, bound)
        proven = outcome.claim == Status.OPTIMAL and gap is not None and gap <= GAP_TOLERANCE
        return Solution(colors_of(self.graph.n, classes), objective, bound, gap,
                        Status.OPTIMAL if proven else Status.FEASIBLE, time.perf_counter() - self.t0, memory, name,
                        b, classes, facts)


def make_request(graph: Any, budget: Any, backend: Any, time_limit: Any, seed: Any, formulation: Any,
                 decompose: Any, warm_start: Any, options: dict[str, Any]) -> SolveRequest:
    """Validate ``solve()``'s arguments (see its docstring); TypeError / ValueError naming the first bad one."""
    t0 = time.perf_counter()
    if not isinstance(graph, SharingGraph):
        raise TypeError(f"graph must be a SharingGraph, got {type(graph).__name__}")
    b = check_budget(budget)
    b = min(b, 2.0**53)  # above any total memory a file may state (instance files bound it): no budget
    limit = check_time_limit(time_limit)
    seed = check_seed(seed)
    backend_cls = get_backend(backend)
    check_flag(warm_start, "warm_start")
    check("decompose", decompose, OneOf(("auto", True, False)))
    options = dict(options)
    space = {k: options.pop(k) for k in SPACE_OPTIONS if k in options}
    columns = check("columns", options.pop("columns", "auto"), OneOf(("auto", "all", "generate")))
    form = _formulation(graph, backend_cls, formulation)
    if space and form != "setpart":
        raise ValueError(f"option(s) {', '.join(space)} apply to the setpart formulation only")
    if space and not backend_cls.exact:
        raise ValueError(f"option(s) {', '.join(space)} do not apply to backend {backend_cls.name!r}")
    if "max_group_size" in space:
        from ..validation import check_max_group_size

        check_max_group_size(space["max_group_size"])
    if graph.max_group_size is not None and "max_group_size" not in space and "groups" not in space \
            and form == "setpart" and backend_cls.exact:  # (the annealer keeps to the graph's space itself)
        space["max_group_size"] = graph.max_group_size  # the graph's own space
    if "groups" in space:
        space["groups"] = _check_groups(graph, space["groups"])
    backend_cls.check_options(options)
    return SolveRequest(graph, b, backend_cls, limit, seed, form, decompose, warm_start, columns, space, options, t0)


def _formulation(graph: SharingGraph, backend_cls: type[Backend], formulation: Any) -> str:
    """The formulation's name (``"auto"`` resolved), checked against the graph and the backend."""
    if formulation == "auto":
        return auto_formulation(graph, backend_cls.capabilities)
    form = get_formulation(formulation)
    if not backend_cls.exact:
        raise ValueError(f"formulation {formulation!r} applies to exact backends; backend {backend_cls.name!r} "
                         "searches colorings directly (leave formulation='auto')")
    if form.requires not in backend_cls.capabilities:
        able = ", ".join(repr(n) for n in backends_with(form.requires))
        raise ValueError(f"formulation {formulation!r} needs a backend that can take {_NEEDS[form.requires]}: "
                         f"runs on backend {able} only, not {backend_cls.name!r}")
    form.check(graph)
    return str(formulation)


_NEEDS = {"program": "one integer program", "cuts": "cuts added to a live model"}


def _check_groups(graph: SharingGraph, groups: Any) -> list[tuple[int, ...]]:
    """The ``groups`` option: candidate groups as sorted tuples; ValueError naming a bad one or an uncovered layer."""
    if isinstance(groups, (str, bytes)) or not hasattr(groups, "__iter__"):
        raise ValueError(f"groups must be an iterable of layer-index tuples, got {type(groups).__name__}")
    out: list[tuple[int, ...]] = []
    covered = [False] * graph.n
    for grp in groups:
        try:
            g = tuple(sorted({int(i) for i in grp}))
        except (TypeError, ValueError):
            raise ValueError(f"groups: {grp!r} is not a tuple of layer indices") from None
        if not g or any(not 0 <= i < graph.n for i in g):
            raise ValueError(f"groups: {grp!r} is empty or names a layer outside 0..{graph.n - 1}")
        if graph.first_conflict(g) is not None:
            raise ValueError(f"groups: {[graph.names[i] for i in g]} may not share (different family or conflict)")
        for i in g:
            covered[i] = True
        out.append(g)
    if not all(covered):
        raise ValueError(f"groups: layer {graph.names[covered.index(False)]!r} is in no candidate group")
    return sorted(set(out))


def verify(graph: SharingGraph, chosen: Chosen, budget: float, backend: str) -> list[SharingClass]:
    """Re-derive every class from the graph in float64; SolverError if the answer breaks the model."""
    who = "the given coloring" if backend == "given" else f"backend {backend!r}"
    seen = [0] * graph.n
    out: list[SharingClass] = []
    for group, opt in chosen:
        for i in group:
            seen[i] += 1
        bad = graph.first_conflict(group)
        if bad is not None:
            raise SolverError(
                f"{who} has a class joining {graph.names[bad[0]]!r} and {graph.names[bad[1]]!r}, "
                "which may not share (different family or conflict)"
            )
        # the variant the answer names (same action and memory: e.g. a basis rank), else the cheapest smaller one
        exact = graph.resolve(group, opt.action, opt.memory)
        if exact is None:
            raise SolverError(f"{who} used action {opt.action!r} that group {group} does not have")
        out.append(SharingClass(tuple(group), exact.action, exact.cost, exact.memory, exact.representative,
                                dict(exact.params) if exact.params else None))
    if any(s != 1 for s in seen):
        i = next(k for k, s in enumerate(seen) if s != 1)
        raise SolverError(f"{who} placed layer {graph.names[i]!r} in {seen[i]} classes")
    memory = sum(c.memory for c in out)
    if memory > budget:
        raise SolverError(f"{who} stores {memory} parameters, over the budget {budget}")
    return sorted(out, key=lambda c: c.members[0])
