"""``solve()``: validate, build the formulation once, run a backend, check its answer, report."""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
from typing import Any

import numpy as np

from ..formulations.base import Chosen, Formulation
from ..formulations.clique import CliquePartition
from ..formulations.graph import SharingClass, SharingGraph
from ..formulations.pmedian import PMedian
from ..formulations.radius import RadiusCuts
from ..formulations.setpart import SetPartition, admits
from .backend import HeuristicBackend
from .benders import solve_radius
from .colgen import estimated_groups, generate_columns
from .decompose import solve_by_family
from .greedy import greedy
from .registry import get_backend
from .solution import GAP_TOLERANCE, Solution, SolverError, Status, colors_of, compute_gap

__all__ = ["solve", "evaluate", "FORMULATIONS", "check_budget"]

FORMULATIONS: dict[str, type[Formulation]] = {"pmedian": PMedian, "clique": CliquePartition, "setpart": SetPartition}
_DEFAULT_FORMULATION = {"medoid": "pmedian", "pairwise": "clique", "group": "setpart"}
RADIUS = "radius"
"""Not one program: Benders cuts of the radius formulation on a live HiGHS model (``solvers/benders.py``)."""


def _auto_formulation(graph: SharingGraph, backend: str) -> str:
    """Measured on pmed1-20 and the demo graph: radius (Benders) for HiGHS on medoid graphs without conflicts."""
    if graph.kind == "medoid" and backend == "highs" and not graph.conflicts:
        return RADIUS
    return _DEFAULT_FORMULATION[graph.kind]


def check_budget(budget: Any) -> float:
    """A budget in parameters: a real number >= 0 (inf = no budget). ValueError otherwise."""
    if isinstance(budget, bool) or not isinstance(budget, numbers.Real):
        raise ValueError(f"budget must be a number of parameters, got {type(budget).__name__} {budget!r}")
    b = float(budget)
    if math.isnan(b) or b < 0:
        raise ValueError(f"budget must be >= 0 parameters, got {budget!r}")
    return b


def _check_time_limit(time_limit: Any) -> float | None:
    if time_limit is None:
        return None
    if isinstance(time_limit, bool) or not isinstance(time_limit, numbers.Real) or not time_limit > 0:
        raise ValueError(f"time_limit must be None or a number of seconds > 0, got {time_limit!r}")
    return float(time_limit)


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


def _verify(graph: SharingGraph, chosen: Chosen, budget: float, backend: str) -> list[SharingClass]:
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
    formulation : ``"auto"`` (medoid costs: ``"radius"`` with HiGHS when there are no conflicts, else p-median;
        clique for pairwise, set partitioning for group costs), ``"pmedian"``, ``"radius"`` (Benders cuts of
        the radius formulation; HiGHS only, no conflicts), ``"clique"`` or ``"setpart"``; exact backends only.
    decompose : True solves a multi-family medoid graph family by family plus an exact knapsack over the
        budget (families interact only through it); False solves one program; ``"auto"`` picks what is faster
        for the backend (measured on the demo graph: split for cpsat and pulp, one program for highs).
    warm_start : give the greedy solution to the solver as a hint (``facts["warm_start"]`` says its fate).
    options : backend options, each backend's ``accepts`` (cpsat: ``precision``, ``workers``; highs/pulp:
        ``threads``; anneal: ``iterations``, ``t_start``, ``t_end_ratio``, ``stall``; all exact: ``log``);
        setpart: ``max_group_size``, ``group_filter`` (a predicate on enumerated groups), ``groups`` (the exact
        list of candidate groups: nothing is enumerated, so it scales to families of any size), ``columns``. An unknown one is a ValueError naming it.

    Returns
    -------
    :class:`Solution`; its objective and memory are recomputed from the graph, never taken from the solver.

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
    t0 = time.perf_counter()
    if not isinstance(graph, SharingGraph):
        raise TypeError(f"graph must be a SharingGraph, got {type(graph).__name__}")
    b = check_budget(budget)
    limit = _check_time_limit(time_limit)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    backend_cls = get_backend(backend)
    form_name = _auto_formulation(graph, backend) if formulation == "auto" else formulation
    if form_name not in FORMULATIONS and form_name != RADIUS:
        raise ValueError(f"unknown formulation {formulation!r}; valid: auto, {', '.join(FORMULATIONS)}, {RADIUS}")
    if form_name == RADIUS and backend != "highs":
        raise ValueError(f"formulation {RADIUS!r} (Benders cuts added to a live model) runs on backend 'highs' only, "
                         f"not {backend!r}")
    if decompose not in ("auto", True, False):
        raise ValueError(f"decompose must be 'auto', True or False, got {decompose!r}")
    form_opts = {k: options.pop(k) for k in ("max_group_size", "group_filter", "groups") if k in options}
    if graph.max_group_size is not None and "max_group_size" not in form_opts and "groups" not in form_opts \
            and form_name == "setpart" and backend_cls.exact:  # (the annealer keeps to the graph's space itself)
        form_opts["max_group_size"] = graph.max_group_size  # the graph's own space
    if "groups" in form_opts:
        form_opts["groups"] = _check_groups(graph, form_opts["groups"])
    columns = options.pop("columns", "auto")
    if form_opts and form_name != "setpart":
        raise ValueError(f"option(s) {', '.join(form_opts)} apply to the setpart formulation only")
    if columns not in ("auto", "all", "generate"):
        raise ValueError(f"columns must be 'auto', 'all' or 'generate', got {columns!r}")
    backend_cls.check_options(options)
    facts: dict[str, Any] = {}

    def finish(chosen: Chosen | None, claim: Status, bound: float | None) -> Solution:
        if chosen is None:
            status = Status.INFEASIBLE if claim == Status.INFEASIBLE else Status.UNKNOWN
            return Solution(None, None, bound if status == Status.UNKNOWN else None, None, status,
                            time.perf_counter() - t0, None, backend, b, [], facts)
        classes = _verify(graph, chosen, b, backend)
        objective = math.fsum(c.cost for c in classes)
        memory = sum(c.memory for c in classes)
        if bound is not None:
            bound = min(bound, objective) if bound - objective <= 1e-9 * max(1.0, abs(objective)) else bound
        gap = compute_gap(objective, bound)
        status = Status.OPTIMAL if (claim == Status.OPTIMAL and gap is not None and gap <= GAP_TOLERANCE) \
            else Status.FEASIBLE
        return Solution(colors_of(graph.n, classes), objective, bound, gap, status, time.perf_counter() - t0, memory, backend, b,
                        classes, facts)

    if b < graph.min_memory():
        facts["proof"] = f"budget {b:g} < {graph.min_memory()} parameters (one layer per family)"
        return finish(None, Status.INFEASIBLE, None)
    # a table with bounds is the evaluated part of a larger space: generated columns give a bound over all of it
    table = getattr(graph.model, "table", None)
    generate = form_name == "setpart" and backend_cls.exact and graph.kind == "group" and (
        columns == "generate" or (columns == "auto" and "group_filter" not in form_opts and "groups" not in form_opts
                                  and ((table is not None and graph.model.has_bounds) or (
                                      table is None and estimated_groups(graph, form_opts.get("max_group_size"))
                                      > MAX_ENUMERATED_GROUPS))))
    if generate:
        return _solve_generated(graph, b, backend_cls(), limit, int(seed), t0, form_opts.get("max_group_size"),
                                options, facts, finish)
    radius_split = form_name == RADIUS and len(graph.family_members) > 1 and decompose in ("auto", True)
    by_representatives = graph.kind == "medoid" and not graph.conflicts and (
        form_name == RADIUS or not backend_cls.exact)
    if by_representatives and (len(graph.family_members) == 1 or radius_split):
        start = None  # built from representatives by the solver (the merging greedy is O(n^3) on one large family)
    elif "groups" in form_opts:
        start = None  # the greedy merges freely; an explicit candidate list would reject its classes anyway
    else:
        # the greedy evaluates groups (slow on a model's first call): it may use a third of the time limit
        start = greedy(graph, b, form_opts.get("max_group_size"), None if limit is None else t0 + limit / 3)
        facts["greedy_objective"] = None if start is None else math.fsum(o.cost for _, o in start)
        if start is None and limit is not None and time.perf_counter() > t0 + limit / 3:
            facts["greedy"] = "stopped by the time limit"
    solver = backend_cls()
    if isinstance(solver, HeuristicBackend):
        if form_opts:
            raise ValueError(f"option(s) {', '.join(form_opts)} do not apply to backend {backend!r}")
        chosen, more = solver.solve_graph(graph, b, limit, int(seed), start if warm_start else None, **options)
        facts.update(more)
        return finish(chosen, Status.FEASIBLE if chosen is not None else Status.UNKNOWN, None)
    if form_name == RADIUS:
        RadiusCuts.check(graph)
        if radius_split:
            chosen, claim, bound, more = solve_by_family(graph, b, solver, limit, int(seed), warm_start, options,
                                                         radius=True)
            facts.update(more)
            facts["formulation"] = "radius per family (Benders) + knapsack"
            return finish(chosen, claim, bound)
        deadline = None if limit is None else t0 + limit
        chosen, claim, bound, more = solve_radius(graph, b, start if warm_start else None, deadline, int(seed),
                                                  build_start=warm_start, **options)
        facts.update(more)
        facts["formulation"] = f"radius (Benders: {more['benders'].get('cuts', 0)} cuts)"
        return finish(chosen, claim, bound)
    split = decompose is True or (decompose == "auto" and backend_cls.decompose_by_default)
    if form_name == "pmedian" and split and len(graph.family_members) > 1 and graph.kind == "medoid":
        chosen, claim, bound, more = solve_by_family(graph, b, solver, limit, int(seed), warm_start, options)
        facts.update(more)
        facts["formulation"] = "pmedian per family + knapsack"
        return finish(chosen, claim, bound)
    # the greedy coloring's cost caps every class of an optimal one (costs are >= 0): smaller, better-scaled
    # models. Valid only if the greedy coloring is in the model, i.e. passes a setpart restriction.
    cap = facts.get("greedy_objective")
    if start is not None and not all(admits(grp, form_opts.get("max_group_size"), form_opts.get("group_filter"), graph)
                                     for grp, _ in start):
        cap = None
    if form_name == "setpart" and limit is not None:
        form_opts["deadline"] = t0 + 0.6 * limit  # evaluating the columns may use 60 % of the time limit
    form = FORMULATIONS[form_name](graph, b, cost_cap=cap, **form_opts)
    facts["formulation"] = form.describe()
    cut = getattr(form, "cut", 0)
    if cut:
        # not every group was evaluated: the program is a restriction, and its bound proves nothing outside it
        facts["restricted"] = (f"the time limit stopped the enumeration: {cut} group(s) not evaluated, "
                               f"{len(form.columns)} columns in the program")
        if form.uncovered:
            facts["restricted"] += f"; {len(form.uncovered)} layer(s) with no column yet"
            return finish(None, Status.UNKNOWN, None)
    elif getattr(form, "restricted", False) or (table is not None and graph.model.has_bounds):
        facts["restricted"] = "optimal over the enumerated columns only"
    hint = form.encode(start) if (warm_start and start is not None) else None
    left = None if limit is None else max(1e-3, limit - (time.perf_counter() - t0))
    raw = _solve_scaled(solver, form.program, left, int(seed), hint, options)
    facts.update(raw.facts)
    chosen = form.decode(raw.x) if raw.x is not None else None
    if hint is not None and raw.status == Status.OPTIMAL and _contradicts(graph, chosen, raw.bound):
        # a solver that claims optimality for a start its bound contradicts misread the start (HiGHS presolve,
        # pitfalls.md): never return that as the answer; solve again from scratch, within the time left
        facts["warm_start"] = "contradicted (claimed optimal, re-check disagrees); solved again without it"
        left = None if limit is None else max(1e-3, limit - (time.perf_counter() - t0))
        raw = _solve_scaled(solver, form.program, left, int(seed), None, options)
        facts.update({k: v for k, v in raw.facts.items() if k != "warm_start"})
        chosen = form.decode(raw.x) if raw.x is not None else None
    if cut:
        facts["column_bound"] = raw.bound  # the solver's bound over the evaluated columns only
        if chosen is None and start is not None:
            chosen = start
        return finish(chosen, Status.FEASIBLE if chosen is not None else Status.UNKNOWN, None)
    return finish(chosen, raw.status, raw.bound)


def _solve_scaled(solver: Any, program: Any, left: float | None, seed: int, hint: Any, options: dict[str, Any],
                  magnitude: float | None = None) -> Any:
    """Run the backend on the program with its costs divided by ``magnitude`` (default: the largest cost), and the
    bound scaled back.

    Surrogate costs can be tiny (1e-5 per layer): solvers' absolute tolerances (HiGHS prunes nodes within about
    1e-6, and its dual feasibility tolerance is 1e-7) would then stop at a 0.1 % gap and call it optimal. Where
    the columns' largest cost is far above the optimum (generated columns keep expensive ones), pass a lower
    bound on the optimum instead, so the optimum is about 1 in the solver's units: scaling by the largest cost
    was measured to let HiGHS and CBC claim bounds 0.5 % above a coloring CP-SAT found (ranked-210, largest
    column 3.98, optimum 3.3e-4). Scaling by a constant changes no argmin."""
    top = float(np.abs(program.c).max()) if program.num_vars else 0.0
    if magnitude is not None and np.isfinite(magnitude) and 1e-12 * top < magnitude < top:
        top = float(magnitude)
    if top <= 0 or not np.isfinite(top):
        return solver.solve_program(program, left, seed, hint, **options)
    scaled = dataclasses.replace(program, c=program.c / top, offset=program.offset / top)
    raw = solver.solve_program(scaled, left, seed, hint, **options)
    if raw.bound is not None:
        raw.bound = raw.bound * top
    return raw


GENERATION_SHARE = 0.8
"""The share of a time limit that column generation may use (the integer program over the columns it leaves is
small: a few thousand columns, seconds for HiGHS)."""

MAX_ENUMERATED_GROUPS = 2000
"""Above this many groups (all families, up to ``max_group_size``), ``columns="auto"`` generates columns."""


def _solve_generated(graph: SharingGraph, b: float, solver: Any, limit: float | None, seed: int, t0: float,
                     max_group_size: int | None, options: dict[str, Any], facts: dict[str, Any],
                     finish: Any) -> Solution:
    """Column generation, then the integer program over the generated columns, within one time limit: the
    generation (pair statistics included) may use :data:`GENERATION_SHARE` of it.

    The Solution's bound is proven for the whole space, never only over the columns. It is the larger of
    pricing's Lagrangian bound and the backend's integer certificate: with the master LP optimal over every
    group (under duals pi, lam), a coloring that uses a group outside the master costs at least the LP value
    plus that group's reduced cost, and one that does not costs at least the backend's own bound over the
    columns; the least of the two bounds the optimum. Groups whose reduced-cost bound could still beat the
    incumbent are evaluated and put in the master (reduced-cost fixing drops the rest), until none is left."""
    deadline = None if limit is None else t0 + GENERATION_SHARE * limit
    cs = generate_columns(graph, b, deadline, max_group_size)
    bound = cs.bound
    facts.update({"column_generation": cs.facts, "greedy_objective": None})
    covered = {i for grp in cs.groups for i in grp}
    if len(covered) < graph.n:
        facts["restricted"] = f"the time limit came before every layer was evaluated ({len(covered)} of {graph.n})"
        return finish(None, Status.UNKNOWN, None)
    raw, chosen, form = None, None, None
    while True:
        form = SetPartition(graph, b, groups=cs.groups)
        left = None if limit is None else max(1e-3, limit - (time.perf_counter() - t0))
        raw = _solve_scaled(solver, form.program, left, seed, None, options,
                            magnitude=cs.lp_value if cs.lp_complete else None)
        chosen = form.decode(raw.x) if raw.x is not None else None
        if chosen is None or raw.bound is None or not cs.lp_complete:
            break
        z = math.fsum(o.cost for _, o in chosen)
        tol = 1e-12 * max(1.0, abs(z))
        todo, larger_ok = cs.below(z - cs.lp_value - tol)
        blocked = [grp for grp in todo if not graph.model.evaluable(grp)]  # a table's groups it has no costs for
        todo = [grp for grp in todo if graph.model.evaluable(grp)]
        if not todo and not blocked and larger_ok:
            # no group outside the master can beat z: every coloring costs >= min(own bound, z)
            bound = max(bound or 0.0, min(raw.bound, z))
            facts["certificate"] = ("reduced costs: no group outside the master can improve the incumbent; the "
                                    f"bound over the columns is {solver.name}'s own")
            break
        bound = max(bound or 0.0, min(raw.bound, cs.lp_value + cs.least_outside()))
        if not todo:
            facts["certificate"] = (f"{len(blocked)} group(s) without costs here may improve the incumbent" if blocked
                                    else "larger groups may still improve the incumbent; none left to list")
            break
        if raw.status != Status.OPTIMAL or (limit is not None and time.perf_counter() - t0 > 0.9 * limit):
            facts["certificate"] = f"time limit with {len(todo)} group(s) left to check"
            break
        for grp in todo[:256]:
            cs.add(grp)
    facts.update(raw.facts)
    facts.update({"formulation": form.describe() + " over generated columns", "columns": len(form.columns),
                  "column_bound": raw.bound, "global_bound": bound})
    if chosen is not None:
        facts["restricted"] = (f"{'optimal' if raw.status == Status.OPTIMAL else 'best found'} over "
                               f"{len(form.columns)} generated columns")
    else:
        # the program over the columns found nothing in time (or proved nothing fits them: not a proof either)
        chosen = greedy(graph, b, 1)
        facts["restricted"] = (f"no coloring over the {len(form.columns)} generated columns "
                               f"({raw.status.value}, not a proof)"
                               + ("; per-layer greedy coloring" if chosen is not None else ""))
        return finish(chosen, Status.FEASIBLE if chosen is not None else Status.UNKNOWN, bound)
    return finish(chosen, raw.status, bound)


def _contradicts(graph: SharingGraph, chosen: Chosen | None, bound: float | None) -> bool:
    """Whether a claimed-optimal answer's float64 objective is off its own bound by more than the gap tolerance."""
    if chosen is None:
        return True
    if bound is None:
        return False
    try:
        gap = compute_gap(math.fsum(c.cost for c in _verify(graph, chosen, math.inf, "check")), bound)
    except SolverError:  # an answer that breaks the model, or a bound above it: a contradiction either way
        return True
    return gap is not None and gap > GAP_TOLERANCE


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
    out = _verify(graph, chosen, b, "given")
    return Solution(colors_of(graph.n, out), math.fsum(c.cost for c in out), None, None, Status.FEASIBLE,
                    time.perf_counter() - t0, sum(c.memory for c in out), "given", b, out, {})
