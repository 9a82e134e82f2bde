"""Exact backends equal brute force with and without the greedy warm start (issue: HiGHS presolve misread a
start, stopped at once claiming "Optimal" and returned the start's worse coloring)."""

import numpy as np
import pytest
from conftest import EXACT_BACKENDS, brute_force

from colorshare import SharingGraph, solve

REPRO = dict(
    cost=[[0.0, 10.477, 6.91, 4.511, 3.696], [15.167, 0.0, 10.645, 7.188, 8.262],
          [4.021, 4.28, 0.0, 0.265, 2.919], [4.998, 5.501, 0.504, 0.0, 3.656],
          [1.881, 2.905, 2.553, 1.68, 0.0]],
    sizes=[10, 10, 20, 10, 10], conflicts=[(0, 4)])


def random_instance(seed: int) -> tuple[SharingGraph, int]:
    """5..7 layers in two families (mixed sizes), a few conflicts, skewed costs, a budget between the extremes."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 8))
    sizes = [int(s) for s in rng.choice([10, 20], size=n)]
    cost = (rng.random((n, n)) * rng.choice([1.0, 5.0, 16.0], size=(n, 1))).round(3)
    np.fill_diagonal(cost, 0.0)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if sizes[i] == sizes[j]]
    conflicts = [p for p in pairs if rng.random() < 0.15]
    g = SharingGraph.from_matrix(cost, sizes=sizes, conflicts=conflicts)
    lo = sum(sorted(set(sizes)))
    budget = int(rng.integers(lo, sum(sizes) + 1))
    return g, budget


def _check(g: SharingGraph, budget: int) -> None:
    expected = brute_force(g, budget)
    for backend in EXACT_BACKENDS:
        extra = {"workers": 1} if backend == "cpsat" else {}
        for warm in (True, False):
            sol = solve(g, budget, backend=backend, warm_start=warm, **extra)
            if expected is None:
                assert sol.status == "infeasible", (backend, warm, sol)
                continue
            assert sol.status == "optimal", (backend, warm, sol.status, sol.objective, expected, sol.facts)
            assert sol.objective == pytest.approx(expected, rel=1e-9, abs=1e-9), (backend, warm, sol.facts)


def test_reproduction_of_the_highs_presolve_misread():
    g = SharingGraph.from_matrix(**REPRO)
    _check(g, 42)
    sol = solve(g, 42, backend="highs")
    assert sol.objective == pytest.approx(7.416)


@pytest.mark.parametrize("seed", range(120))
def test_random_family_matches_brute_force(seed):
    _check(*random_instance(seed))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(120, 1120))
def test_random_family_matches_brute_force_slow(seed):
    _check(*random_instance(seed))
