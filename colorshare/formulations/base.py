"""What every formulation provides: an integer program, and maps between its vectors and sharing classes."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from .costs import Option
from .graph import SharingGraph
from .program import IntegerProgram

__all__ = ["Formulation", "Chosen", "budget_hi"]

Chosen = list[tuple[tuple[int, ...], Option]]
"""A decoded solution: each class as (sorted member indices, the option it uses)."""


def budget_hi(budget: float) -> float:
    """Row upper bound for a budget in parameters (fractional budgets floor; inf = no budget)."""
    return math.inf if math.isinf(budget) else float(math.floor(budget))


class Formulation(ABC):
    """An integer program for one graph and budget. ``exact_for`` says which cost model it is exact for."""

    name: ClassVar[str] = "abstract"
    exact_for: ClassVar[tuple[str, ...]] = ()
    requires: ClassVar[str] = "program"
    """What a backend must be able to do to solve it (see ``Backend.capabilities``): ``"program"``, one integer
    program handed over whole."""

    supports_cost_cap: bool = False
    """Whether the formulation can drop variables whose cost alone exceeds ``cost_cap`` (see below)."""

    def __init__(self, graph: SharingGraph, budget: float, cost_cap: float | None = None) -> None:
        """``cost_cap``: an upper bound on the optimum (e.g. a known coloring's cost). Costs are >= 0, so a
        class (column, assignment) costing more than it is in no optimal coloring and may be left out; the
        optimum and every proven bound stay those of the full model. Ignored where unsupported."""
        self.check(graph)
        self.graph = graph
        self.budget = budget
        self.cost_cap = cost_cap if self.supports_cost_cap else None
        self.pruned = 0  # variables left out by cost_cap
        self.program: IntegerProgram = self._build()

    @classmethod
    def check(cls, graph: SharingGraph) -> None:
        """ValueError naming why the formulation is not exact for ``graph`` (if it is not)."""
        if graph.kind not in cls.exact_for:
            raise ValueError(f"formulation {cls.name!r} is exact only for {', '.join(cls.exact_for)} costs; "
                             f"this graph has {graph.kind} costs")

    @abstractmethod
    def _build(self) -> IntegerProgram: ...

    @abstractmethod
    def decode(self, x: np.ndarray) -> Chosen:
        """Classes of a 0/1 solution vector (rounded)."""

    @abstractmethod
    def encode(self, chosen: Chosen) -> np.ndarray | None:
        """The 0/1 vector of a solution (for warm starts); None if the program cannot express it."""

    def keeps(self, cost: float) -> bool:
        """False (and counted) for a cost above ``cost_cap``, with a relative margin of 1e-9."""
        if self.cost_cap is None or cost <= self.cost_cap * (1 + 1e-9) + 1e-12:
            return True
        self.pruned += 1
        return False

    def describe(self) -> str:
        p = self.program
        pruned = f", {self.pruned} left out above the cost cap" if self.pruned else ""
        return f"{self.name} ({p.num_vars} vars, {p.num_rows} rows{pruned})"
