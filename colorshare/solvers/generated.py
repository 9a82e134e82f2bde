"""Column generation as a strategy's run: the columns, then the integer program over them, within one time
limit, with a bound proven for the whole space.

The generation (pair statistics included, where the graph computes them lazily) may use
:data:`GENERATION_SHARE` of the time limit. The Solution's bound is never one
over the columns only: it is the larger of pricing's Lagrangian bound and the backend's integer certificate.
With the master LP optimal over every group (under duals pi, lam), a coloring that uses a group outside the
master costs at least the LP value plus that group's reduced cost, and one that does not costs at least the
backend's own bound over the columns; the least of the two bounds the optimum. Groups whose reduced-cost bound
could still beat the incumbent are evaluated and put in the master (reduced-cost fixing drops the rest), until
none is left.
"""

from __future__ import annotations

import math
import time
from typing import Any

from ..formulations.setpart import SetPartition
from . import scaled
from .colgen import ColumnSet, generate_columns
from .greedy import greedy
from .request import Outcome, SolveRequest
from .solution import Status

__all__ = ["solve_generated", "GENERATION_SHARE"]

GENERATION_SHARE = 0.8
"""The share of a time limit that column generation may use (the integer program over the columns it leaves is
small: a few thousand columns, seconds for HiGHS)."""


def solve_generated(req: SolveRequest, facts: dict[str, Any]) -> Outcome:
    """Generate columns for ``req`` and solve the program over them (see the module docstring)."""
    g = req.graph
    cs = generate_columns(g, req.budget, req.deadline(GENERATION_SHARE), req.space.get("max_group_size"))
    facts.update({"column_generation": cs.facts, "greedy_objective": None})
    covered = {i for grp in cs.groups for i in grp}
    if len(covered) < g.n:
        facts["restricted"] = f"the time limit came before every layer was evaluated ({len(covered)} of {g.n})"
        return Outcome(None, Status.UNKNOWN, None)
    solver = req.backend()
    bound, raw, chosen, form = _certify(req, cs, solver, facts)
    facts.update(raw.facts)
    facts.update({"formulation": form.describe() + " over generated columns", "columns": len(form.columns),
                  "column_bound": raw.bound, "global_bound": bound})
    if chosen is not None:
        facts["restricted"] = (f"{'optimal' if raw.status == Status.OPTIMAL else 'best found'} over "
                               f"{len(form.columns)} generated columns")
        return Outcome(chosen, raw.status, bound)
    # the program over the columns found nothing in time (or proved nothing fits them: not a proof either)
    chosen = greedy(g, req.budget, 1)
    facts["restricted"] = (f"no coloring over the {len(form.columns)} generated columns ({raw.status.value}, not a "
                           "proof)" + ("; per-layer greedy coloring" if chosen is not None else ""))
    return Outcome(chosen, Status.FEASIBLE if chosen is not None else Status.UNKNOWN, bound)


def _certify(req: SolveRequest, cs: ColumnSet, solver: Any, facts: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    """Solve the program over the columns, adding the groups that could still beat its incumbent, until the
    bound is certified or time runs out: (global bound, the backend's last answer, its classes, the program)."""
    g, bound = req.graph, cs.bound
    while True:
        form = SetPartition(g, req.budget, groups=cs.groups)
        raw = scaled.solve_scaled(solver, form.program, req.left(), req.seed, None, req.options,
                                      magnitude=cs.lp_value if cs.lp_complete else None)
        chosen = form.decode(raw.x) if raw.x is not None else None
        if chosen is None or raw.bound is None or not cs.lp_complete:
            return bound, raw, chosen, form
        z = math.fsum(o.cost for _, o in chosen)
        todo, larger_ok = cs.below(z - cs.lp_value - 1e-12 * max(1.0, abs(z)))
        blocked = [grp for grp in todo if not g.cost_model.evaluable(grp)]  # a table's groups it has no costs for
        todo = [grp for grp in todo if g.cost_model.evaluable(grp)]
        if not todo and not blocked and larger_ok:
            # no group outside the master can beat z: every coloring costs >= min(own bound, z)
            facts["certificate"] = ("reduced costs: no group outside the master can improve the incumbent; the "
                                    f"bound over the columns is {solver.name}'s own")
            return max(bound or 0.0, min(raw.bound, z)), raw, chosen, form
        bound = max(bound or 0.0, min(raw.bound, cs.lp_value + cs.least_outside()))
        if not todo:
            facts["certificate"] = (f"{len(blocked)} group(s) without costs here may improve the incumbent" if blocked
                                    else "larger groups may still improve the incumbent; none left to list")
            return bound, raw, chosen, form
        if raw.status != Status.OPTIMAL or (req.time_limit is not None
                                            and time.perf_counter() - req.t0 > 0.9 * req.time_limit):
            facts["certificate"] = f"time limit with {len(todo)} group(s) left to check"
            return bound, raw, chosen, form
        for grp in todo[:256]:
            cs.add(grp)
