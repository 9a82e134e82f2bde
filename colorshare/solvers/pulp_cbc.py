"""CBC through PuLP, with PuLP's bundled CBC binary.

PuLP reports a time-limited run with a solution as "Optimal" (``LpStatus``); colorshare reads PuLP's separate
``sol_status`` (integer-feasible vs optimal) and CBC's own log for the bound, so a stopped search is never
called optimal.
"""

from __future__ import annotations

import math
import re
import time
import warnings
from typing import Any

import numpy as np

from ..formulations.program import IntegerProgram
from .backend import Backend, RawResult, SolverLog
from .solution import SOLVER_GAP, Status

__all__ = ["PulpCbcBackend"]


def _cbc(**kwargs: Any) -> Any:
    """PuLP's bundled CBC command, without PuLP 3.3's notice that it will move to an extra in PuLP 4."""
    import pulp

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PULP_CBC_CMD is deprecated", category=DeprecationWarning)
        return pulp.PULP_CBC_CMD(**kwargs)


class PulpCbcBackend(Backend):
    name = "pulp"
    description = "CBC through PuLP"
    accepts = ("threads", "log")

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import pulp  # noqa: F401
        except ImportError as exc:  # pragma: no cover
            return f"pulp is not importable ({exc})"
        if not _cbc().available():  # pragma: no cover - e.g. no CBC binary for this platform
            return "PuLP's bundled CBC binary is not available on this platform"
        return None

    def solve_program(self, program: IntegerProgram, time_limit: float | None, seed: int,
                      hint: np.ndarray | None, threads: int | None = None, log: bool = False,
                      **options: Any) -> RawResult:
        import pulp

        prob = pulp.LpProblem("colorshare", pulp.LpMinimize)
        xs = [pulp.LpVariable(f"x{k}", lowBound=int(lo), upBound=int(hi), cat=pulp.LpInteger)
              for k, (lo, hi) in enumerate(zip(program.col_lo, program.col_hi))]
        prob += pulp.LpAffineExpression([(xs[k], float(program.c[k])) for k in range(len(xs))], constant=program.offset)
        A = program.A.tocsr()
        for r in range(program.num_rows):
            s, e = A.indptr[r], A.indptr[r + 1]
            expr = pulp.LpAffineExpression([(xs[j], float(v)) for j, v in zip(A.indices[s:e], A.data[s:e])])
            lo, hi = program.row_lo[r], program.row_hi[r]
            if lo == hi:
                prob += expr == lo, f"r{r}"
            else:
                if not math.isinf(lo):
                    prob += expr >= lo, f"r{r}lo"
                if not math.isinf(hi):
                    prob += expr <= hi, f"r{r}hi"
        if hint is not None:
            for v, val in zip(xs, hint):
                v.setInitialValue(int(round(val)))
        with SolverLog("colorshare-cbc-") as solver_log:
            cmd = _cbc(
                msg=False,
                timeLimit=None if time_limit is None else max(float(time_limit), 0.01),
                gapRel=SOLVER_GAP,
                gapAbs=1e-9,
                warmStart=hint is not None,
                threads=threads,
                logPath=solver_log.path,
                # CBC prunes a node whose bound is within its cutoff increment (default 1e-5, absolute) of the
                # incumbent, so "Optimal" meant "within 1e-5": 2e-5 relative on SmolLM2's scaled columns. A
                # far smaller increment makes its proof the gap it is asked for.
                options=[f"randomCbcSeed {int(seed) + 1}", f"randomSeed {int(seed) + 1}",
                         f"increment {CUTOFF_INCREMENT:g}"],
            )
            started = time.perf_counter()
            prob.solve(cmd)
            elapsed = time.perf_counter() - started
        log_text = solver_log.text
        facts: dict[str, Any] = {
            "solver_status": pulp.LpStatus[prob.status],
            "solution_status": pulp.LpSolution.get(prob.sol_status, str(prob.sol_status)),
            "warm_start": _start_fate(hint, log_text),
        }
        result_line = re.search(r"^Result - (.*)$", log_text, re.M)
        facts["stop_reason"] = result_line.group(1).strip() if result_line else None
        if log:
            facts["log"] = log_text
        if prob.status == pulp.LpStatusInfeasible:  # CBC's "Infeasible" or "Integer infeasible": a proof ...
            if time_limit is not None and elapsed >= time_limit and "Pre-processing says infeasible" in log_text:
                # ... except when the time limit cut its preprocessing short: CBC 2.10 then reports "Cut generators
                # found to be infeasible" on a model whose LP it has just solved (seen on a 60-layer p-median
                # at a 0.05 s limit); a claim made as the clock ran out is not a proof
                facts["infeasibility"] = "claimed by CBC's preprocessing as the time limit passed: not trusted"
                return RawResult(Status.UNKNOWN, facts=facts)
            return RawResult(Status.INFEASIBLE, facts=facts)
        has_x = prob.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible)
        if not has_x:
            return RawResult(Status.UNKNOWN, facts=facts)
        x = np.array([v.value() or 0.0 for v in xs], dtype=np.float64)
        proved = prob.sol_status == pulp.LpSolutionOptimal and (
            result_line is None or result_line.group(1).startswith("Optimal")
        )
        bound = _bound_from_log(log_text)
        objective = float(pulp.value(prob.objective))
        found = [float(v) for v in re.findall(r"Search completed - best objective ([-\d.eE+]+)", log_text)]
        if proved and found and min(found) < objective - 1e-9 * max(1.0, abs(objective)):
            # CBC 2.10 can finish "Optimal" on a solution worse than one its own log reports (a second search
            # after preprocessing; seen on SmolLM2's generated columns): its claim is contradicted, so only the
            # root LP bound (with cuts) stands
            proved = False
            bound = _root_bound(log_text)
            facts["contradiction"] = (f"CBC claimed {objective!r} optimal but its log reports a solution of "
                                      f"{min(found)!r}; bound from the root LP instead")
        elif bound is None and proved:
            bound = objective - CUTOFF_INCREMENT  # what CBC proved: nothing better by more than its increment
        return RawResult(Status.OPTIMAL if proved else Status.FEASIBLE, x, bound, facts)


CUTOFF_INCREMENT = 1e-10
"""CBC's cutoff increment (objective units; solve() scales costs so the largest is 1)."""


def _root_bound(log_text: str) -> float | None:
    """The root LP's value after cuts (a valid lower bound), or the continuous objective, from CBC's log."""
    m = re.findall(r"Cuts at root node changed objective from [-\d.eE+]+ to ([-\d.eE+]+)", log_text)
    if not m:
        m = re.findall(r"Continuous objective value is ([-\d.eE+]+)", log_text)
    try:
        return float(m[-1]) if m else None
    except ValueError:
        return None


def _bound_from_log(log_text: str) -> float | None:
    m = re.search(r"^Lower bound:\s*(-?[\d.eE+-]+)", log_text, re.M)
    if m:
        try:
            return float(m.group(1))
        except ValueError:
            return None
    return None


def _start_fate(hint: np.ndarray | None, log_text: str) -> str:
    if hint is None:
        return "not given"
    if "MIPStart provided solution" in log_text:
        return "used"
    if "MIPStart" in log_text or "mipstart" in log_text:
        return "rejected"
    return "given"
