"""External instances with published optima (../shared/data): DIMACS coloring and OR-Library p-median."""

import csv

import numpy as np
import pytest
from conftest import SHARED_DATA

from colorshare import SharingGraph, solve
from colorshare.instances import read_dimacs, read_pmedian

needs_data = pytest.mark.skipif(not SHARED_DATA.exists(), reason=f"{SHARED_DATA} not present")


def _chromatic():
    with open(SHARED_DATA / "dimacs" / "chromatic.csv") as fh:
        return {r["name"]: int(r["chi"]) for r in csv.DictReader(fh)}


@needs_data
@pytest.mark.parametrize("name, backend", [
    ("myciel3", "cpsat"), ("myciel4", "cpsat"), ("queen5_5", "cpsat"), ("myciel3", "highs"), ("queen5_5", "highs"),
    # HiGHS's LP bound is useless on Mycielski graphs below chi (the fractional chromatic number stays
    # below 4): its proof is a long search, 10 s are not enough (benchmarks/results/solvers.csv)
    pytest.param("myciel4", "highs", marks=pytest.mark.slow)])
def test_dimacs_feasible_at_chi_infeasible_below(name, backend):
    chi = _chromatic()[name]
    n, edges = read_dimacs(SHARED_DATA / "dimacs" / f"{name}.col")
    g = SharingGraph.from_matrix(np.zeros((n, n)), conflicts=edges)
    at = solve(g, chi, backend=backend, time_limit=60)
    assert at.status == "optimal" and at.num_classes <= chi
    below = solve(g, chi - 1, backend=backend, time_limit=600 if (name, backend) == ("myciel4", "highs") else 60)
    assert below.status == "infeasible"


@needs_data
def test_pmed1_published_optimum():
    with open(SHARED_DATA / "pmed" / "optima.csv") as fh:
        optima = {r["name"]: float(r["optimum"]) for r in csv.DictReader(fh)}
    dist, p = read_pmedian(SHARED_DATA / "pmed" / "pmed1.txt")
    g = SharingGraph.from_matrix(dist)
    sol = solve(g, p, backend="highs", time_limit=120)
    assert sol.status == "optimal"
    assert sol.objective == pytest.approx(optima["pmed1"])
