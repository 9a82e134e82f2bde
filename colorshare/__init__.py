"""colorshare: choose which layers of a deep model share parameters, by solving it exactly.

>>> from colorshare import SharingGraph, solve
>>> g = SharingGraph.from_matrix([[0, 1], [1, 0]], sizes=[10, 10])
>>> solve(g, budget=10, backend="highs").colors
[0, 0]
"""

from .formulations.graph import SharingClass, SharingGraph
from .solvers import Solution, SolverError, Status, available_backends, evaluate, solve

__all__ = ["SharingGraph", "SharingClass", "solve", "evaluate", "Solution", "Status", "SolverError",
           "available_backends"]
__version__ = "0.1.0"
