"""HiGHS backend, through highspy directly (no modelling layer): the program's CSR matrix is passed as is."""

from __future__ import annotations

import os
import re
import sys
from typing import Any

import numpy as np

from ..formulations.program import IntegerProgram
from .backend import Backend, RawResult, SolverLog
from .solution import SOLVER_GAP, Status

__all__ = ["HighsBackend", "write_mps"]


_banner_done = False


def _new_highs() -> Any:
    """A Highs instance, with the copyright banner that its first construction prints to stdout kept quiet."""
    global _banner_done
    import highspy

    if _banner_done:
        return highspy.Highs()
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
    _banner_done = True
    return h


def configure(h: Any, seed: int, threads: int | None) -> None:
    """The settings every colorshare HiGHS model shares: seed, the gap to close, threads."""
    h.setOptionValue("random_seed", int(seed))
    h.setOptionValue("mip_rel_gap", SOLVER_GAP)
    h.setOptionValue("mip_abs_gap", 1e-9)
    if threads:
        h.setOptionValue("threads", int(threads))


class HighsBackend(Backend):
    name = "highs"
    description = "HiGHS MILP (highspy)"
    accepts = ("threads", "log")
    capabilities = frozenset({"program", "cuts"})
    decompose_by_default = False  # 224-layer demo: 1.7 s monolithic vs 6 s split (77 subproblems)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import highspy  # noqa: F401
        except ImportError as exc:  # pragma: no cover
            return f"highspy is not importable ({exc})"
        return None

    def solve_program(self, program: IntegerProgram, time_limit: float | None, seed: int,
                      hint: np.ndarray | None, threads: int | None = None, log: bool = False,
                      **options: Any) -> RawResult:
        import highspy

        h = _new_highs()
        with SolverLog("colorshare-highs-") as solver_log:
            h.setOptionValue("output_flag", True)
            h.setOptionValue("log_to_console", False)
            h.setOptionValue("log_file", solver_log.path)
            configure(h, seed, threads)
            if time_limit is not None:
                h.setOptionValue("time_limit", float(time_limit))
            lp = _to_lp(program, integer=True)
            h.passModel(lp)
            if hint is not None:
                sol = highspy.HighsSolution()
                sol.col_value = list(map(float, hint))
                sol.value_valid = True
                h.setSolution(sol)
            h.run()
            status = h.getModelStatus()
            info = h.getInfo()
            h.setOptionValue("output_flag", False)
        log_text = solver_log.text
        ms = highspy.HighsModelStatus
        facts: dict[str, Any] = {
            "solver_status": h.modelStatusToString(status),
            "mip_gap": info.mip_gap,
            "nodes": int(info.mip_node_count),
            "warm_start": _start_fate(hint, log_text),
        }
        if log:
            facts["log"] = log_text
        if status == ms.kInfeasible:
            return RawResult(Status.INFEASIBLE, facts=facts)
        has_x = info.primal_solution_status == 2  # kSolutionStatusFeasible
        if has_x:
            x = np.asarray(h.getSolution().col_value, dtype=np.float64)
            dual = float(info.mip_dual_bound)
            bound = dual if np.isfinite(dual) else None
            claim = Status.OPTIMAL if status == ms.kOptimal else Status.FEASIBLE
            return RawResult(claim, x, bound, facts)
        return RawResult(Status.UNKNOWN, facts=facts)


def _to_lp(program: IntegerProgram, integer: bool) -> Any:
    """The program as a ``highspy.HighsLp`` (CSC matrix passed as is)."""
    import highspy

    inf = highspy.kHighsInf
    lp = highspy.HighsLp()
    n = program.num_vars
    lp.num_col_ = n
    lp.num_row_ = program.num_rows
    lp.col_cost_ = program.c
    lp.offset_ = program.offset
    lp.col_lower_ = program.col_lo
    lp.col_upper_ = program.col_hi
    lp.row_lower_ = np.where(np.isinf(program.row_lo), -inf, program.row_lo)
    lp.row_upper_ = np.where(np.isinf(program.row_hi), inf, program.row_hi)
    A = program.A.tocsc()
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = A.indptr.astype(np.int32)
    lp.a_matrix_.index_ = A.indices.astype(np.int32)
    lp.a_matrix_.value_ = A.data
    if integer:
        lp.integrality_ = [highspy.HighsVarType.kInteger] * n
    return lp


def write_mps(program: IntegerProgram, path: str) -> None:
    """Write ``program`` (integer variables) as an MPS file that any MILP solver reads (HiGHS writes it)."""
    import highspy

    h = _new_highs()
    h.setOptionValue("output_flag", False)
    h.passModel(_to_lp(program, integer=True))
    status = h.writeModel(str(path))
    if status not in (highspy.HighsStatus.kOk, highspy.HighsStatus.kWarning):
        raise OSError(f"HiGHS could not write {path}")


def solve_lp(program: IntegerProgram, time_limit: float | None = None) -> tuple[str, float, np.ndarray, np.ndarray]:
    """The LP relaxation of ``program`` by HiGHS: (status word, value, x, row duals). Duals follow HiGHS's
    convention (minimisation: ``c - A^T y`` are the reduced costs; ``y <= 0`` on a binding ``<=`` row)."""
    h = _new_highs()
    h.setOptionValue("output_flag", False)
    if time_limit is not None:
        h.setOptionValue("time_limit", float(time_limit))
    h.passModel(_to_lp(program, integer=False))
    h.run()
    status = h.modelStatusToString(h.getModelStatus())
    sol = h.getSolution()
    return status, float(h.getInfo().objective_function_value), np.asarray(sol.col_value), np.asarray(sol.row_dual)


def _start_fate(hint: np.ndarray | None, log_text: str) -> str:
    if hint is None:
        return "not given"
    m = re.search(r"Assessing feasibility of MIP solution.*:\s*(\w+)", log_text)
    if m:
        return "used" if m.group(1).lower() == "feasible" else "rejected"
    return "given"
