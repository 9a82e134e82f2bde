"""Backends, ``solve()`` and ``Solution``."""

from .api import evaluate, solve
from .registry import BACKENDS, available_backends, get_backend
from .solution import Solution, SolverError, Status, compute_gap

__all__ = ["solve", "evaluate", "Solution", "Status", "SolverError", "compute_gap", "BACKENDS", "available_backends",
           "get_backend"]
