"""The one interface every backend implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..formulations.program import IntegerProgram
from .solution import Status

__all__ = ["Backend", "RawResult"]


@dataclass
class RawResult:
    """A solver's answer on an integer program, before colorshare checks it.

    ``status`` is the solver's claim (OPTIMAL = proved within its gap tolerance); ``bound`` is the solver's
    own dual bound in program units, never recomputed; ``facts`` keeps its own words.
    """

    status: Status
    x: np.ndarray | None = None
    bound: float | None = None
    facts: dict[str, Any] = field(default_factory=dict)


class Backend:
    """Base class. Exact backends implement :meth:`solve_program`; heuristics set ``exact = False``."""

    name: ClassVar[str] = "abstract"
    exact: ClassVar[bool] = True
    description: ClassVar[str] = ""
    decompose_by_default: ClassVar[bool] = True
    """Whether ``decompose="auto"`` splits a multi-family medoid graph into per-family subproblems for this
    backend (measured: HiGHS proves the 224-layer demo faster in one program; CP-SAT and CBC faster split)."""

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when the backend can run here, else why not (e.g. its library failed to import)."""
        return None

    def solve_program(
        self,
        program: IntegerProgram,
        time_limit: float | None,
        seed: int,
        hint: np.ndarray | None,
        **options: Any,
    ) -> RawResult:
        """Solve ``program`` within ``time_limit`` seconds (None = no limit), warm-started from ``hint``."""
        raise NotImplementedError
