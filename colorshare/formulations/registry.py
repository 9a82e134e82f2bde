"""The one table of formulations, and the one rule that picks a graph's formulation for a backend.

Each entry states what it is exact for (``exact_for``, ``check(graph)``) and what a backend must be able to do
to solve it (``requires``: ``"program"``, one integer program handed over whole; ``"cuts"``, cuts added to a
live model). Adding a formulation = one module + one line in :data:`FORMULATIONS`.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from .clique import CliquePartition
from .graph import SharingGraph
from .pmedian import PMedian
from .radius import RadiusCuts
from .setpart import SetPartition

__all__ = ["FORMULATIONS", "AUTO_ORDER", "get_formulation", "auto_formulation"]

FORMULATIONS: dict[str, Any] = {"pmedian": PMedian, "radius": RadiusCuts, "clique": CliquePartition,
                                "setpart": SetPartition}

AUTO_ORDER: tuple[str, ...] = ("radius", "pmedian", "clique", "setpart")
"""``formulation="auto"`` takes the first of these that is exact for the graph and that the backend can solve.
Measured on OR-Library pmed1-20 and the demo graph: the radius formulation's cuts on a live HiGHS model prove
medoid graphs far faster than the one-program p-median; clique is smaller than set partitioning for pairwise
costs."""


def get_formulation(name: str) -> Any:
    """The formulation registered as ``name``; ValueError naming the valid ones otherwise."""
    if not isinstance(name, str) or name not in FORMULATIONS:
        raise ValueError(f"unknown formulation {name!r}; valid: auto, {', '.join(FORMULATIONS)}")
    return FORMULATIONS[name]


def _exact(name: str, graph: SharingGraph) -> bool:
    try:
        FORMULATIONS[name].check(graph)
    except ValueError:
        return False
    return True


def auto_formulation(graph: SharingGraph, capabilities: Collection[str]) -> str:
    """The formulation ``"auto"`` means for ``graph`` on a backend with ``capabilities`` (a heuristic backend,
    which solves no formulation, gets the exact program formulation of the graph's costs)."""
    can = set(capabilities) if "program" in capabilities else {"program"}
    return next(n for n in AUTO_ORDER if FORMULATIONS[n].requires in can and _exact(n, graph))
