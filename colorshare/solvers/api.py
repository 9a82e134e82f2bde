"""``solve()``: validate a request, pick the strategy that applies, check its answer; ``evaluate()`` a given
coloring. The request and its checks live in :mod:`.request`, the strategies in :mod:`.strategies`."""

from __future__ import annotations

import math
import time
from typing import Any

from ..formulations.base import Chosen
from ..formulations.graph import SharingClass, SharingGraph
from ..validation import check_budget
from .request import Outcome, make_request, verify
from .solution import Solution, SolverError, Status, colors_of
from .strategies import pick_strategy

__all__ = ["solve", "evaluate"]


def solve(
    graph: SharingGraph,
    budget: float,
    backend: str = "cpsat",
    time_limit: float | None = None,
    seed: int = 0,
    *,
    formulation: str = "auto",
    decompose: bool | str = "auto",
    warm_start: bool = True,
    **options: Any,
) -> Solution:
    """Choose which layers share so the surrogate loss is least and at most ``budget`` parameters are stored.

    Parameters
    ----------
    graph : the :class:`SharingGraph`.
    budget : most parameters stored for the graph's layers after sharing (``math.inf``: no budget).
    backend : ``"cpsat"``, ``"highs"``, ``"pulp"`` or ``"anneal"`` (see :func:`available_backends`).
    time_limit : seconds for the whole solve (None: run to optimality / the iteration limit).
    seed : random seed passed to every solver.
    formulation : ``"auto"`` (the first of :data:`~colorshare.formulations.registry.AUTO_ORDER` exact for the
        graph that the backend can solve: medoid costs ``"radius"`` with HiGHS when there are no conflicts, else
        p-median; clique for pairwise, set partitioning for group costs), ``"pmedian"``, ``"radius"`` (Benders
        cuts of the radius formulation; HiGHS only, no conflicts), ``"clique"`` or ``"setpart"``; exact
        backends only.
    decompose : True solves a multi-family medoid graph family by family plus an exact knapsack over the
        budget (families interact only through it); False solves one program; ``"auto"`` picks what is faster
        for the backend (measured on the demo graph: split for cpsat and pulp, one program for highs).
    warm_start : give the greedy solution to the solver as a hint (``facts["warm_start"]`` says its fate).
    options : backend options, each backend's ``accepts`` (cpsat: ``precision``, ``workers``; highs/pulp:
        ``threads``; anneal: ``iterations``, ``t_start``, ``t_end_ratio``, ``stall``; all exact: ``log``);
        setpart: ``max_group_size``, ``group_filter`` (a predicate on enumerated groups), ``groups`` (the exact
        list of candidate groups: nothing is enumerated, so it scales to families of any size), ``columns``. An
        unknown one is a ValueError naming it.

    Returns
    -------
    :class:`Solution`; its objective and memory are recomputed from the graph, never taken from the solver;
    ``facts["strategy"]`` names how it was solved (:data:`~colorshare.solvers.strategies.STRATEGIES`).

    Raises
    ------
    TypeError if ``graph`` is not a SharingGraph; ValueError for a bad budget, time limit, backend, option or
    formulation; :class:`SolverError` if a backend's answer breaks the budget, a conflict or a family.

    Example
    -------
    >>> from colorshare import SharingGraph, solve
    >>> g = SharingGraph.from_matrix([[0, 1, 5], [1, 0, 5], [5, 5, 0]])
    >>> sol = solve(g, budget=2, backend="highs")
    >>> sol.status, sol.colors, sol.objective
    (<Status.OPTIMAL: 'optimal'>, [0, 0, 1], 1.0)
    """
    req = make_request(graph, budget, backend, time_limit, seed, formulation, decompose, warm_start, options)
    facts: dict[str, Any] = {}
    spent = graph.cost_model.seconds
    if req.budget < graph.min_memory():
        facts["proof"] = f"budget {req.budget:g} < {graph.min_memory()} (one layer per family)"
        sol = req.solution(Outcome(None, Status.INFEASIBLE), facts)
    else:
        strategy = pick_strategy(req)
        facts["strategy"] = strategy.name
        sol = req.solution(strategy.run(req, facts), facts)
    # the graph's one-time work done lazily inside this solve (costs and bounds evaluated on demand) apart
    # from the solver's own time: a fresh model graph pays the first, a warm one does not
    sol.facts["graph_seconds"] = graph.cost_model.seconds - spent
    sol.facts["solver_seconds"] = max(0.0, sol.wall_time - sol.facts["graph_seconds"])
    return sol


def evaluate(graph: SharingGraph, classes: Any, budget: float = math.inf) -> Solution:
    """The :class:`Solution` of a given coloring on ``graph``, with every class's exact cost and memory.

    Use it to score a hand-made coloring, or to carry a coloring chosen on one graph over to another graph of
    the same layers (e.g. built with another curvature estimator) before ``apply_coloring``.

    Parameters
    ----------
    graph : the :class:`SharingGraph`.
    classes : one entry per class, each a :class:`SharingClass` or ``(members, action[, memory])``; the
        memory (parameters, matched exactly) picks among an action's variants, e.g. the rank of ``basis``
        (default: the cheapest variant).
    budget : parameters; the coloring must fit it (default: no budget).

    Returns
    -------
    A Solution with status "feasible" (nothing is proven), bound and gap None, backend "given".

    Raises
    ------
    TypeError if ``graph`` is not a SharingGraph; SolverError if the coloring breaks the graph (a layer in no
    class or two, a group that may not share, an action the group lacks) or the budget.

    Example
    -------
    >>> from colorshare import SharingGraph, evaluate
    >>> g = SharingGraph.from_matrix([[0, 1, 5], [1, 0, 5], [5, 5, 0]])
    >>> evaluate(g, [((0, 1), "medoid"), ((2,), "medoid")]).objective
    1.0
    """
    t0 = time.perf_counter()
    if not isinstance(graph, SharingGraph):
        raise TypeError(f"graph must be a SharingGraph, got {type(graph).__name__}")
    b = check_budget(budget)
    chosen: Chosen = []
    for entry in classes:
        memory: int | None
        if isinstance(entry, SharingClass):
            members, action, memory = entry.members, entry.action, entry.memory
        else:
            members, action, *rest = entry
            memory = rest[0] if rest else None
        group = tuple(sorted(int(i) for i in members))
        if any(not 0 <= i < graph.n for i in group):
            raise SolverError(f"class {group} names a layer outside 0..{graph.n - 1}")
        if graph.first_conflict(group) is not None:
            raise SolverError(f"class {[graph.names[i] for i in group]} may not share (different family or conflict)")
        opt = graph.resolve(group, str(action), None if memory is None else int(memory))
        if opt is None or (memory is not None and opt.memory != memory):
            raise SolverError(f"group {group} has no action {action!r}"
                              + (f" storing {memory} parameters" if memory is not None else ""))
        chosen.append((group, opt))
    out = verify(graph, chosen, b, "given")
    return Solution(colors_of(graph.n, out), math.fsum(c.cost for c in out), None, None, Status.FEASIBLE,
                    time.perf_counter() - t0, sum(c.memory for c in out), "given", b, out, {})
