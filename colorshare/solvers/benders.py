"""Exact medoid sharing by Benders decomposition of the radius formulation, on one live HiGHS model.

1. An upper bound: the warm start, improved by swap descent in every family.
2. The LP: the master (representatives ``y``, one ``theta`` per layer, budget and one-per-family rows) and the
   most violated radius cut of every layer (:class:`~colorshare.formulations.radius.RadiusCuts`), re-solved
   until no cut is violated: the strong p-median LP bound, in a handful of rounds.
3. Reductions that keep every coloring cheaper than the upper bound: a representative whose LP reduced cost
   (or whose LP bound when forced open) exceeds the upper bound is closed; cuts slack at the LP are dropped.
4. The master as a MIP, re-solved with the cuts of each answer until its value meets the upper bound. The
   master is a relaxation, so its optimum is a proven bound; the answer is the best coloring seen.

Measured on OR-Library pmed1-20 (n = 100..400), all proven optimal in 0.05-8.3 s on 2 cores, where the
one-program p-median formulation leaves pmed12, 16 and 17 open after 60 s (``benchmarks/solvers.py``).
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from ..formulations.base import Chosen, budget_hi
from ..formulations.graph import SharingGraph
from ..formulations.radius import Cut, RadiusCuts
from .highs import _new_highs, configure
from .solution import SOLVER_GAP, Status
from .swap import greedy_open, swap_descent

__all__ = ["solve_radius", "RadiusSolver"]

MAX_LP_ROUNDS = 200
"""Rounds of LP cuts at most (each adds the most violated cut of every layer; a few dozen suffice on pmed1-20)."""

_PROBE_SHARE = 0.25
"""At most this share of the time left goes to probing (forcing each representative open in the LP)."""


class _Master:
    """The Benders master on a live HiGHS model: columns y (n) then theta (n), costs scaled by ``scale``. Cuts
    stay valid for every budget, so one master serves a sequence of budgets (the family decomposition)."""

    def __init__(self, graph: SharingGraph, scale: float, threads: int | None, seed: int) -> None:
        import highspy

        self.hs = highspy
        self.n = n = graph.n
        self.scale = scale
        self.inf = highspy.kHighsInf
        h = self.h = _new_highs()
        h.setOptionValue("output_flag", False)
        configure(h, seed, threads)
        h.addVars(2 * n, np.zeros(2 * n), np.r_[np.ones(n), np.full(n, self.inf)])
        h.changeColsCost(2 * n, np.arange(2 * n, dtype=np.int32), np.r_[np.zeros(n), np.ones(n)])
        sizes = np.asarray(graph.sizes, dtype=np.int64)
        self.unit = int(np.gcd.reduce(sizes))
        h.addRow(-self.inf, self.inf, n, np.arange(n, dtype=np.int32), (sizes // self.unit).astype(np.float64))
        for members in graph.family_members.values():
            h.addRow(1.0, self.inf, len(members), np.asarray(members, dtype=np.int32), np.ones(len(members)))
        self.structural = h.getNumRow()
        self.cuts = 0

    def reset(self, budget: float) -> None:
        """Back to the LP for ``budget`` parameters: every representative free, no cutoff."""
        n, h = self.n, self.h
        hi = budget_hi(budget)
        h.changeRowBounds(0, -self.inf, self.inf if math.isinf(hi) else float(math.floor(hi / self.unit)))
        h.changeColsBounds(n, np.arange(n, dtype=np.int32), np.zeros(n), np.ones(n))
        h.changeColsIntegrality(n, np.arange(n, dtype=np.int32),
                                np.array([self.hs.HighsVarType.kContinuous] * n))
        h.setOptionValue("objective_bound", self.inf)
        h.setOptionValue("presolve", "choose")

    def add(self, cuts: list[Cut]) -> None:
        if not cuts:
            return
        starts: list[int] = []
        idx: list[int] = []
        val: list[float] = []
        for c in cuts:
            starts.append(len(idx))
            idx.extend([self.n + c.layer, *c.sites.tolist()])
            val.extend([1.0, *(c.coefs / self.scale).tolist()])
        rhs = np.array([c.rhs / self.scale for c in cuts])
        self.h.addRows(len(cuts), rhs, np.full(len(cuts), self.inf), len(idx), np.asarray(starts, dtype=np.int32),
                       np.asarray(idx, dtype=np.int32), np.asarray(val, dtype=np.float64))
        self.cuts += len(cuts)

    def run(self, deadline: float | None) -> str:
        """Solve; 'optimal', 'infeasible', 'time' or another HiGHS status word."""
        ms = self.hs.HighsModelStatus
        if deadline is not None:
            left = deadline - time.perf_counter()
            if left <= 0:
                return "time"
            self.h.setOptionValue("time_limit", float(left))
        self.h.run()
        st = self.h.getModelStatus()
        if st == ms.kOptimal:
            return "optimal"
        if st == ms.kInfeasible:
            return "infeasible"
        if st == ms.kTimeLimit:
            return "time"
        return self.h.modelStatusToString(st)

    def x(self) -> tuple[np.ndarray, np.ndarray]:
        v = np.asarray(self.h.getSolution().col_value)
        return v[: self.n], v[self.n :] * self.scale

    def value(self) -> float:
        return float(self.h.getInfo().objective_function_value) * self.scale


def _improve(graph: SharingGraph, rc: RadiusCuts, y: np.ndarray) -> np.ndarray:
    """Swap descent in every family, keeping each family's number of representatives (so its memory)."""
    matrix = graph.cost_matrix
    y = y.copy()
    for idx in rc.families:
        pos = np.flatnonzero(y[idx] > 0.5)
        _, best = swap_descent(matrix[np.ix_(idx, idx)], pos)
        y[idx] = 0.0
        y[idx[best]] = 1.0
    return y



_Result = tuple[Chosen | None, Status, float | None, dict[str, Any]]
"""(classes, claim, bound, facts): what :meth:`RadiusSolver.solve` returns."""


class _Run:
    """One call of :meth:`RadiusSolver.solve`: the incumbent (the cheapest coloring within the budget seen),
    the LP bound, the facts and the log."""

    def __init__(self, graph: SharingGraph, rc: RadiusCuts, master: _Master, budget: float, warm: bool,
                 log: bool) -> None:
        self.rc, self.master, self.log = rc, master, log
        self.t0 = time.perf_counter()
        self.lines: list[str] = []
        self.cuts_before = master.cuts
        self.best_y: np.ndarray | None = None
        self.ub = math.inf
        self.lb = -math.inf
        self.cap = budget_hi(budget)
        self.sizes = np.asarray(graph.sizes, dtype=np.float64)
        self.bench: dict[str, Any] = {}
        self.facts: dict[str, Any] = {"warm_start": "used" if warm else "not given", "benders": self.bench}

    def note(self, text: str) -> None:
        """A log line, stamped with the seconds since the call began."""
        self.lines.append(f"{time.perf_counter() - self.t0:8.3f}s  {text}")

    def offer(self, y: np.ndarray) -> None:
        """Take the coloring with representatives ``y`` as the incumbent if it fits the budget and is cheaper."""
        if float(self.sizes @ (y > 0.5)) > self.cap:  # never an upper bound from a coloring over the budget
            return
        _, cost = self.rc.served(y)
        total = math.fsum(cost.tolist())
        if total < self.ub:
            self.best_y, self.ub = y.copy(), total

    def unproven(self) -> Status:
        """The claim when the search stops early: feasible with an incumbent, unknown without."""
        return Status.FEASIBLE if self.best_y is not None else Status.UNKNOWN

    def done(self, claim: Status, bound: float | None) -> _Result:
        """The answer: the incumbent decoded, ``claim``, ``bound`` and the facts (cut count, upper bound, log)."""
        self.bench.update({"cuts": self.master.cuts - self.cuts_before,
                           "upper_bound": None if math.isinf(self.ub) else self.ub})
        if self.log:
            self.facts["log"] = "\n".join(self.lines)
        return (None if self.best_y is None else self.rc.decode(self.best_y)), claim, bound, self.facts


class RadiusSolver:
    """Exact medoid sharing of a graph without conflicts by the Benders loop above; one live master, so that
    :meth:`solve` for several budgets reuses its cuts."""

    def __init__(self, graph: SharingGraph, seed: int = 0, threads: int | None = None) -> None:
        self.graph = graph
        self.rc = RadiusCuts(graph)
        finite = [sd[np.isfinite(sd)] for sd in self.rc.sorted_costs]
        self.scale = max((float(f.max()) for f in finite if f.size), default=0.0) or 1.0
        self.master = _Master(graph, self.scale, threads, seed)

    def greedy_start(self, budget: float) -> Chosen | None:
        """One family: as many representatives as ``budget`` holds, opened greedily; None otherwise."""
        g, rc = self.graph, self.rc
        hi = budget_hi(budget)
        if len(rc.families) != 1 or math.isinf(hi) or hi < int(g.sizes[0]):
            return None
        idx = rc.families[0]
        y0 = np.zeros(g.n)
        y0[idx[greedy_open(g.cost_matrix[np.ix_(idx, idx)], int(hi // int(g.sizes[0])))]] = 1.0
        return rc.decode(y0)

    def solve(self, budget: float, start: Chosen | None, deadline: float | None, log: bool = False) -> _Result:
        """(classes, claim, bound, facts) under ``budget`` parameters; ``start`` (a feasible coloring) seeds the
        upper bound. Costs in graph units; ``deadline`` in ``time.perf_counter()`` seconds."""
        run = _Run(self.graph, self.rc, self.master, budget, start is not None, log)
        self.master.reset(budget)
        if start is not None:
            self._seed(run, start)
        stopped = self._cutting_planes(run, deadline)
        if stopped is not None:
            return stopped
        if run.best_y is not None and run.ub - run.lb <= SOLVER_GAP * max(1.0, abs(run.ub)):
            run.bench["master_solves"] = 0
            return run.done(Status.OPTIMAL, run.lb)
        if run.best_y is not None:
            self._reduce(run, run.best_y, deadline)
        return self._master_loop(run, deadline)

    def _seed(self, run: _Run, start: Chosen) -> None:
        """1. The upper bound: ``start``, improved by swap descent; the cuts of the incumbent join the master."""
        y0 = self.rc.encode(start)
        run.offer(y0)
        run.offer(_improve(self.graph, self.rc, y0))
        run.note(f"start {run.ub:.9g} after swap descent")
        if run.best_y is not None:
            self.master.add(self.rc.separate(run.best_y, np.full(self.graph.n, -np.inf)))

    def _cutting_planes(self, run: _Run, deadline: float | None) -> _Result | None:
        """2. The LP by cutting planes until no cut is violated; sets ``run.lb``. The answer if the LP is
        infeasible or stops early, else None."""
        master = self.master
        rounds = 0
        while True:
            st = master.run(deadline)
            rounds += 1
            if st == "infeasible":
                run.note("LP infeasible: no coloring fits the budget")
                run.bench["lp_rounds"] = rounds
                return run.done(Status.INFEASIBLE, None)
            if st != "optimal":
                run.note(f"LP stopped: {st}")
                run.bench["lp_rounds"] = rounds
                return run.done(run.unproven(), None)
            y, theta = master.x()
            cuts = self.rc.separate(y, theta)
            if not cuts or rounds >= MAX_LP_ROUNDS:
                # with cuts still found after MAX_LP_ROUNDS the LP's tolerance hides their violation (costs spanning
                # many decades): the master with the cuts so far is a relaxation, its value still a valid bound
                run.lb = master.value()
                if cuts:
                    run.note(f"LP stopped after {rounds} rounds with cuts within its tolerance")
                break
            master.add(cuts)
        run.bench.update({"lp_rounds": rounds, "lp_bound": run.lb})
        run.note(f"LP bound {run.lb:.9g} after {rounds} rounds, {master.cuts} cuts; upper bound {run.ub:.9g}")
        return None

    def _reduce(self, run: _Run, incumbent: np.ndarray, deadline: float | None) -> None:
        """3. Reductions valid for every coloring cheaper than the upper bound (at the LP optimum, ``incumbent``
        the best coloring's representatives): close representatives by reduced cost and by probing, then drop
        the cuts slack at the LP."""
        h, n = self.master.h, self.graph.n
        reduced = np.asarray(h.getSolution().col_dual)[:n] * self.scale
        closed = (reduced > (run.ub - run.lb) + 1e-9 * max(1.0, abs(run.ub))) & (incumbent < 0.5)
        self._probe(run, incumbent, closed, deadline)
        if closed.any():
            k = int(closed.sum())
            h.changeColsBounds(k, np.flatnonzero(closed).astype(np.int32), np.zeros(k), np.zeros(k))
        self.master.run(deadline)  # back to the LP optimum, for the slack test
        dropped = self._drop_slack_cuts()
        run.bench["closed"] = int(closed.sum())
        run.note(f"{int(closed.sum())} of {n} representatives closed; {dropped} slack cuts dropped")

    def _probe(self, run: _Run, incumbent: np.ndarray, closed: np.ndarray, deadline: float | None) -> None:
        """Force each representative that is neither closed nor in the incumbent open in the LP, within
        :data:`_PROBE_SHARE` of the time left; close it (in ``closed``) if its LP is infeasible or above the
        upper bound. The LP's bounds and basis are restored after each probe."""
        master, h = self.master, self.master.h
        basis = h.getBasis()
        probe_end = None if deadline is None else time.perf_counter() + _PROBE_SHARE * (deadline - time.perf_counter())
        for j in np.flatnonzero(~closed & (incumbent < 0.5)):
            if probe_end is not None and time.perf_counter() > probe_end:
                break
            h.changeColBounds(int(j), 1.0, 1.0)
            st = master.run(probe_end)
            if st == "infeasible" or (st == "optimal" and master.value() > run.ub * (1 + 1e-9) + 1e-12):
                closed[j] = True
            h.changeColBounds(int(j), 0.0, 1.0)
            h.setBasis(basis)

    def _drop_slack_cuts(self) -> int:
        """Delete the cuts (rows past the structural ones) slack at the current LP solution; how many."""
        h = self.master.h
        act = np.asarray(h.getSolution().row_value)
        low = np.asarray(h.getLp().row_lower_)
        slack = np.flatnonzero((act - low > 1e-7) & (np.arange(len(low)) >= self.master.structural))
        if len(slack):
            h.deleteRows(len(slack), slack.astype(np.int32))
        return len(slack)

    def _master_loop(self, run: _Run, deadline: float | None) -> _Result:
        """4. The master as a MIP, re-solved with the cuts of each answer until its value meets the upper bound."""
        master, h, n, scale = self.master, self.master.h, self.graph.n, self.scale
        h.changeColsIntegrality(n, np.arange(n, dtype=np.int32), np.array([master.hs.HighsVarType.kInteger] * n))
        solves, presolve_off = 0, False
        while True:
            if not math.isinf(run.ub):
                h.setOptionValue("objective_bound", run.ub / scale * (1 + 1e-9) + 1e-12)
            st = master.run(deadline)
            solves += 1
            run.bench["master_solves"] = solves
            info = h.getInfo()
            if info.primal_solution_status != 2:
                return self._no_master_point(run, st, float(info.mip_dual_bound) * scale, solves)
            y, theta = master.x()
            y = np.round(y)
            bound = float(info.mip_dual_bound) * scale
            run.offer(y)
            cuts = self.rc.separate(y, theta)
            run.note(f"master {solves}: {st}, value {master.value():.9g}, bound {bound:.9g}, its coloring "
                     f"{math.fsum(self.rc.served(y)[1].tolist()):.9g}, upper bound {run.ub:.9g}, {len(cuts)} cuts")
            if st != "optimal":
                return run.done(Status.FEASIBLE, max(run.lb, min(bound, run.ub)) if math.isfinite(bound) else run.lb)
            if bound >= run.ub * (1 - SOLVER_GAP) - 1e-12:
                return run.done(Status.OPTIMAL, min(max(run.lb, bound), run.ub))
            if not cuts:
                # theta is exact at y, so y costs what the master says, yet more than the master's own bound: the
                # point HiGHS returned is not its optimum (seen after presolve; pitfalls.md). Once more without.
                if presolve_off:
                    return run.done(Status.FEASIBLE, max(run.lb, min(bound, run.ub)))
                presolve_off = True
                h.setOptionValue("presolve", "off")
                run.note("master's answer contradicts its bound: presolve switched off")
            master.add(cuts)

    @staticmethod
    def _no_master_point(run: _Run, st: str, dual: float, solves: int) -> _Result:
        """The answer when the master returned no point: optimal (or infeasible) if HiGHS proved nothing lies
        below the upper bound, else stopped early with the best bound known (``dual``: HiGHS's MIP bound)."""
        if st in ("infeasible", "optimal"):  # nothing below the upper bound: it is optimal
            run.note(f"master {solves}: nothing below the upper bound")
            if run.best_y is None:
                return run.done(Status.INFEASIBLE, None)
            return run.done(Status.OPTIMAL, run.ub)
        run.note(f"master {solves}: {st}")
        return run.done(run.unproven(), max(run.lb, min(dual, run.ub)) if math.isfinite(dual) else run.lb)


def solve_radius(graph: SharingGraph, budget: float, start: Chosen | None, deadline: float | None, seed: int = 0,
                 threads: int | None = None, log: bool = False,
                 build_start: bool = False) -> _Result:
    """:meth:`RadiusSolver.solve` once; with ``build_start`` and no ``start``, a one-family graph starts from
    :meth:`RadiusSolver.greedy_start`."""
    solver = RadiusSolver(graph, seed, threads)
    if start is None and build_start:
        start = solver.greedy_start(budget)
    return solver.solve(budget, start, deadline, log)
