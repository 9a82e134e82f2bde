"""The one interface every backend implements."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..formulations.program import IntegerProgram
from .solution import Status

__all__ = ["Backend", "HeuristicBackend", "RawResult", "SolverLog"]


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


class SolverLog:
    """A temporary file a solver writes its log into: ``path`` while the block runs, ``text`` after it; the file
    is removed at the end of the block, whatever happens in it."""

    def __init__(self, prefix: str) -> None:
        fd, self.path = tempfile.mkstemp(prefix=prefix, suffix=".log")
        os.close(fd)
        self.text = ""

    def __enter__(self) -> SolverLog:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            with open(self.path, errors="replace") as fh:
                self.text = fh.read()
        except OSError:
            pass
        try:
            os.unlink(self.path)
        except OSError:
            pass


class Backend:
    """Base class. Exact backends implement :meth:`solve_program`; heuristics subclass :class:`HeuristicBackend`.

    The base owns what every backend shares: the availability check (:meth:`unavailable_reason`, used by the
    registry), the option names it accepts (:attr:`accepts`, checked by :meth:`check_options` before any
    solve) and the gap it is asked to close (:data:`~colorshare.solvers.solution.SOLVER_GAP`)."""

    name: ClassVar[str] = "abstract"
    exact: ClassVar[bool] = True
    description: ClassVar[str] = ""
    accepts: ClassVar[tuple[str, ...]] = ("log",)
    """Backend options (keywords of ``solve()``) this backend understands."""
    capabilities: ClassVar[frozenset[str]] = frozenset({"program"})
    """What it can solve: ``"program"`` (one integer program handed over whole), ``"cuts"`` (cuts added to a live
    model: the radius formulation), ``"graph"`` (colorings searched on the graph itself, no program). A
    formulation's ``requires`` must be among them."""
    decompose_by_default: ClassVar[bool] = True
    """Whether ``decompose="auto"`` splits a multi-family medoid graph into per-family subproblems for this
    backend (measured: HiGHS proves the 224-layer demo faster in one program; CP-SAT and CBC faster split)."""

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when the backend can run here, else why not (e.g. its library failed to import)."""
        return None

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> None:
        """ValueError naming every option this backend does not understand, and the ones it does."""
        unknown = sorted(set(options) - set(cls.accepts))
        if unknown:
            raise ValueError(f"unknown option(s) for backend {cls.name!r}: {', '.join(unknown)}; "
                             f"it accepts: {', '.join(cls.accepts) or 'none'}")

    def solve_program(self, program: IntegerProgram, time_limit: float | None, seed: int,
                      hint: np.ndarray | None, **options: Any) -> RawResult:
        """Solve ``program`` within ``time_limit`` seconds (None = no limit), warm-started from ``hint``."""
        raise NotImplementedError


class HeuristicBackend(Backend):
    """A backend that searches colorings directly and proves nothing (no bound)."""

    exact: ClassVar[bool] = False
    capabilities: ClassVar[frozenset[str]] = frozenset({"graph"})

    def solve_graph(self, graph: Any, budget: float, time_limit: float | None, seed: int, start: Any,
                    **options: Any) -> tuple[Any, dict[str, Any]]:
        """(best budget-feasible classes or None, facts) for ``graph`` under ``budget`` parameters."""
        raise NotImplementedError
