"""A backend-neutral integer program: built once as sparse data, consumed by every exact backend."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

__all__ = ["IntegerProgram", "ProgramBuilder"]


@dataclass
class IntegerProgram:
    """minimize ``c @ x + offset`` s.t. ``row_lo <= A @ x <= row_hi``, ``col_lo <= x <= col_hi``, x integer.

    Every variable of colorshare's formulations is binary; ``A`` has integer coefficients (memory in
    parameters, 0/1 incidences), which CP-SAT requires. Infinite row bounds mean "no bound".
    """

    c: np.ndarray
    A: sp.csr_matrix
    row_lo: np.ndarray
    row_hi: np.ndarray
    col_lo: np.ndarray
    col_hi: np.ndarray
    offset: float = 0.0
    var_names: list[str] = field(default_factory=list)
    row_names: list[str] = field(default_factory=list)

    @property
    def num_vars(self) -> int:
        return len(self.c)

    @property
    def num_rows(self) -> int:
        return self.A.shape[0]

    def objective(self, x: np.ndarray) -> float:
        return float(self.c @ x + self.offset)

    def is_feasible(self, x: np.ndarray, tol: float = 1e-6) -> bool:
        """True if ``x`` is integral and meets every bound and row (used to check warm starts)."""
        if len(x) != self.num_vars or np.any(np.abs(x - np.round(x)) > tol):
            return False
        if np.any(x < self.col_lo - tol) or np.any(x > self.col_hi + tol):
            return False
        ax = self.A @ x
        return bool(np.all(ax >= self.row_lo - tol) and np.all(ax <= self.row_hi + tol))


class ProgramBuilder:
    """Collects binary variables and sparse rows, then freezes them into an :class:`IntegerProgram`."""

    def __init__(self) -> None:
        self.c: list[float] = []
        self.names: list[str] = []
        self._rows: list[int] = []
        self._cols: list[int] = []
        self._vals: list[float] = []
        self.row_lo: list[float] = []
        self.row_hi: list[float] = []
        self.row_names: list[str] = []

    def var(self, cost: float, name: str = "") -> int:
        self.c.append(float(cost))
        self.names.append(name)
        return len(self.c) - 1

    def row(self, cols: list[int], vals: list[float], lo: float, hi: float, name: str = "") -> int:
        r = len(self.row_lo)
        self._rows.extend([r] * len(cols))
        self._cols.extend(cols)
        self._vals.extend(vals)
        self.row_lo.append(lo)
        self.row_hi.append(hi)
        self.row_names.append(name)
        return r

    def build(self) -> IntegerProgram:
        n = len(self.c)
        A = sp.csr_matrix(
            (np.asarray(self._vals, dtype=np.float64), (np.asarray(self._rows, dtype=np.int64),
                                                       np.asarray(self._cols, dtype=np.int64))),
            shape=(len(self.row_lo), n),
        )
        A.sum_duplicates()
        return IntegerProgram(
            c=np.asarray(self.c, dtype=np.float64),
            A=A,
            row_lo=np.asarray(self.row_lo, dtype=np.float64),
            row_hi=np.asarray(self.row_hi, dtype=np.float64),
            col_lo=np.zeros(n),
            col_hi=np.ones(n),
            var_names=self.names,
            row_names=self.row_names,
        )
