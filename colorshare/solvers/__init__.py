"""Backends, ``solve()`` and ``Solution``."""

from .api import solve
from .registry import BACKENDS, available_backends, get_backend
from .solution import Solution, SolverError, Status, compute_gap

__all__ = ["solve", "Solution", "Status", "SolverError", "compute_gap", "BACKENDS", "available_backends",
           "get_backend"]
