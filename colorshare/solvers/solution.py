"""The result of a solve: colors, objective, proven bound, gap, status, and the solver's own facts."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from ..formulations.graph import SharingClass

__all__ = ["Status", "Solution", "SolverError", "compute_gap", "colors_of", "GAP_TOLERANCE"]

GAP_TOLERANCE = 1e-6
"""Relative gap at or below which a solver's proof counts as "optimal"."""

SOLVER_GAP = GAP_TOLERANCE / 10
"""The relative gap every exact backend is asked to close (a tenth of :data:`GAP_TOLERANCE`, so that a proof
still counts as optimal after colorshare re-derives the objective in float64)."""

_EPS = 1e-9


class SolverError(RuntimeError):
    """A backend returned something that breaks the model (budget, conflict, family) or failed to run."""


class Status(str, Enum):
    """Whether a solution exists and is proven optimal. Compares equal to its string value."""

    OPTIMAL = "optimal"  # a solution, proven optimal within GAP_TOLERANCE
    FEASIBLE = "feasible"  # a solution, not proven optimal (time limit, heuristic)
    INFEASIBLE = "infeasible"  # proven: no coloring fits the budget
    UNKNOWN = "unknown"  # no solution and no proof (time limit before the first solution)

    def __str__(self) -> str:
        return self.value


def compute_gap(objective: float | None, bound: float | None) -> float | None:
    """Relative optimality gap ``(objective - bound) / max(|objective|, 1e-9)``.

    Edge cases: None if either side is unknown; 0.0 when ``objective - bound`` is within floating-point noise
    (1e-9 relative, or absolute when the objective is below 1), so an objective of 0 proven by a bound of 0
    gives 0.0 rather than 0/0. A bound above the objective by more than that noise is a broken proof and
    raises :class:`SolverError`.
    """
    if objective is None or bound is None:
        return None
    diff = objective - bound
    tol = _EPS * max(1.0, abs(objective))
    if diff < -tol:
        raise SolverError(f"proven bound {bound!r} exceeds the objective {objective!r} of a feasible coloring")
    if diff <= tol:
        return 0.0
    return diff / max(abs(objective), _EPS)


def colors_of(n: int, classes: list[SharingClass]) -> list[int]:
    """One color per layer (0..n-1): the index of its class in ``classes``."""
    colors = [0] * n
    for k, c in enumerate(classes):
        for i in c.members:
            colors[i] = k
    return colors


@dataclass
class Solution:
    """What :func:`colorshare.solve` returns.

    Attributes
    ----------
    colors : list of n ints (layers with equal ints share), or None when no coloring was found.
    objective : surrogate loss of ``colors``, recomputed in float64 from the graph (None without colors).
    bound : the solver's proven lower bound on the optimum, in the units of cost (None where it has none).
    gap : relative gap, see :func:`compute_gap` (None where unknown).
    status : a :class:`Status` ("optimal" | "feasible" | "infeasible" | "unknown").
    wall_time : seconds, whole solve including model building.
    memory : parameters stored for the graph's layers after sharing (None without colors).
    backend : the backend's registry name.
    budget : the budget solved for (parameters).
    classes : one :class:`SharingClass` per color, with action, exact cost, memory and representative.
    facts : raw solver facts (its own status words, stop reason, warm start, formulation size, ...), the strategy
        that solved it (``"strategy"``), and the split of ``wall_time`` between the graph's work done lazily in
        this solve (``"graph_seconds"``: costs and bounds evaluated on demand, which a fresh model graph pays
        once) and the rest (``"solver_seconds"``).
    """

    colors: list[int] | None
    objective: float | None
    bound: float | None
    gap: float | None
    status: Status
    wall_time: float
    memory: int | None
    backend: str
    budget: float
    classes: list[SharingClass] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (status as its string)."""
        d = asdict(self)
        d["status"] = self.status.value
        d["classes"] = [
            {k: (dict(v) if k == "params" and v is not None else v) for k, v in asdict(c).items()} for c in self.classes
        ]
        d["facts"] = json.loads(json.dumps(self.facts, default=str))
        return d

    def __repr__(self) -> str:
        def f(v: float | None) -> str:
            return "None" if v is None else f"{v:.6g}"

        return (
            f"Solution(status={self.status.value!r}, objective={f(self.objective)}, bound={f(self.bound)}, "
            f"gap={f(self.gap)}, memory={self.memory}, classes={len(self.classes)}, backend={self.backend!r}, "
            f"wall_time={self.wall_time:.3f}s)"
        )
