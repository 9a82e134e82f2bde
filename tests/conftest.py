"""Shared helpers: brute-force optimum, backend lists, paths to the public instances."""

from __future__ import annotations

import math
from itertools import product
from pathlib import Path

import pytest

from colorshare import SharingGraph, available_backends

AVAILABLE = available_backends()
ALL_BACKENDS = list(AVAILABLE)
EXACT_BACKENDS = [b for b in ("cpsat", "highs", "pulp") if b in AVAILABLE]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def backend_param(names):
    """pytest params that skip, with the reason, a backend that cannot load here."""
    return [pytest.param(b, marks=pytest.mark.skipif(AVAILABLE[b] is not None, reason=str(AVAILABLE[b])))
            for b in names]


def set_partitions(items):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in set_partitions(rest):
        for k in range(len(part)):
            yield part[:k] + [[first] + part[k]] + part[k + 1 :]
        yield [[first]] + part


def brute_force(graph: SharingGraph, budget: float) -> float | None:
    """Optimal objective by enumerating every partition and every action combination (None: infeasible)."""
    best = math.inf
    for part in set_partitions(list(range(graph.n))):
        opts = [graph.options(tuple(sorted(c))) for c in part]
        if any(not o for o in opts):
            continue
        for combo in product(*opts):
            if sum(o.memory for o in combo) <= budget:
                best = min(best, math.fsum(o.cost for o in combo))
    return None if math.isinf(best) else best
