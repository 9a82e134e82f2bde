"""The anneal backend's path for medoid graphs without conflicts: annealed iterated swap descent."""

import csv

import pytest
from conftest import SHARED_DATA, brute_force
from test_radius import random_graph

from colorshare import SharingGraph, solve
from colorshare.instances import llama_graph, read_pmedian

needs_data = pytest.mark.skipif(not SHARED_DATA.exists(), reason=f"{SHARED_DATA} not present")


@pytest.mark.parametrize("seed", range(25))
def test_feasible_never_below_the_optimum_and_says_why_it_stopped(seed):
    g, budget = random_graph(seed)
    best = brute_force(g, budget)
    sol = solve(g, budget, backend="anneal", seed=seed)
    assert sol.status == "feasible" and sol.bound is None
    assert sol.memory <= budget
    assert sol.objective >= best - 1e-9
    assert sol.facts["stopped"].startswith(("converged", "zero cost", "steps"))
    assert "swap descent" in sol.facts["method"]


def test_small_graphs_are_solved_exactly_most_of_the_time():
    hits = 0
    for seed in range(25):
        g, budget = random_graph(seed)
        hits += solve(g, budget, backend="anneal", seed=seed).objective <= brute_force(g, budget) + 1e-9
    assert hits >= 23


def test_demo_graph_within_one_percent_and_stops_early():
    g = llama_graph()
    exact = solve(g, 0.5 * g.dense_size, backend="highs")
    sol = solve(g, 0.5 * g.dense_size, backend="anneal", time_limit=10)
    assert sol.objective <= exact.objective * 1.01
    assert sol.facts["stopped"].startswith("converged") and sol.wall_time < 10


def test_conflicts_keep_the_coloring_annealer():
    g = SharingGraph.from_matrix([[0, 1, 2], [1, 0, 2], [2, 2, 0]], conflicts=[(0, 1)])
    sol = solve(g, 2, backend="anneal", seed=0)
    assert "method" not in sol.facts and sol.colors[0] != sol.colors[1]


@needs_data
@pytest.mark.slow
@pytest.mark.parametrize("name", ["pmed1", "pmed2", "pmed3", "pmed8"])
def test_pmed_within_one_percent_in_ten_seconds(name):
    with open(SHARED_DATA / "pmed" / "optima.csv") as fh:
        optimum = {r["name"]: float(r["optimum"]) for r in csv.DictReader(fh)}[name]
    dist, p = read_pmedian(SHARED_DATA / "pmed" / f"{name}.txt")
    sol = solve(SharingGraph.from_matrix(dist), p, backend="anneal", time_limit=10)
    assert sol.objective <= optimum * 1.01
