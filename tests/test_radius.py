"""The radius formulation (Benders cuts on a live HiGHS model) and the swap descent behind its upper bound."""

import csv
import itertools
import math

import numpy as np
import pytest
from conftest import SHARED_DATA, brute_force

from colorshare import SharingGraph, solve
from colorshare.formulations.radius import RadiusCuts
from colorshare.instances import llama_graph, read_pmedian
from colorshare.solvers.swap import greedy_open, service_cost, swap_descent

needs_data = pytest.mark.skipif(not SHARED_DATA.exists(), reason=f"{SHARED_DATA} not present")


def random_graph(seed: int) -> tuple[SharingGraph, int]:
    """5..8 layers, 1..3 families with their own sizes, skewed asymmetric costs with ties, no conflicts."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 9))
    fams = [int(f) for f in rng.integers(0, int(rng.integers(1, 4)), size=n)]
    size_of = {f: int(rng.choice([1, 3, 10])) for f in set(fams)}
    cost = np.round(rng.random((n, n)) * rng.choice([1.0, 4.0, 30.0], size=(n, 1)), int(rng.integers(0, 3)))
    np.fill_diagonal(cost, 0.0)
    sizes = [size_of[f] for f in fams]
    g = SharingGraph.from_matrix(cost, sizes=sizes, families=[f"f{f}" for f in fams])
    lo = sum(size_of.values())
    return g, int(rng.integers(lo, sum(sizes) + 1))


@pytest.mark.parametrize("seed", range(60))
def test_radius_equals_brute_force(seed):
    g, budget = random_graph(seed)
    expected = brute_force(g, budget)
    for decompose in (True, False):
        for warm in (True, False):
            sol = solve(g, budget, backend="highs", formulation="radius", decompose=decompose, warm_start=warm)
            assert sol.status == "optimal", (decompose, warm, sol.facts)
            assert sol.objective == pytest.approx(expected, rel=1e-9, abs=1e-9), (decompose, warm, sol.facts)
            assert sol.bound <= expected + 1e-9
            assert sol.memory <= budget


def test_radius_is_the_highs_default_without_conflicts_only():
    g, budget = random_graph(3)
    assert "radius" in solve(g, budget, backend="highs").facts["formulation"]
    with_conflict = SharingGraph.from_matrix([[0, 1, 2], [1, 0, 2], [2, 2, 0]], conflicts=[(0, 1)])
    assert "pmedian" in solve(with_conflict, 2, backend="highs").facts["formulation"]
    assert "pmedian" in solve(g, budget, backend="cpsat").facts["formulation"]


def test_radius_bad_uses_are_named():
    g = SharingGraph.from_matrix([[0, 1, 2], [1, 0, 2], [2, 2, 0]], conflicts=[(0, 1)])
    with pytest.raises(ValueError, match="conflict"):
        solve(g, 2, backend="highs", formulation="radius")
    with pytest.raises(ValueError, match="runs on backend 'highs' only"):
        solve(g, 2, backend="cpsat", formulation="radius")
    pw = SharingGraph.from_pairwise([[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="medoid"):
        solve(pw, 2, backend="highs", formulation="radius")
    plain = SharingGraph.from_matrix([[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="unknown option"):
        solve(plain, 1, backend="highs", formulation="radius", workers=2)


def test_radius_infeasible_budget():
    g = SharingGraph.from_matrix(np.zeros((4, 4)), sizes=[3, 3, 5, 5], families=["a", "a", "b", "b"])
    assert solve(g, 7, backend="highs", formulation="radius").status == "infeasible"
    assert solve(g, 8, backend="highs", formulation="radius").status == "optimal"


@pytest.mark.parametrize("seed", range(8))
def test_cuts_are_valid_and_tight(seed):
    """Every separated cut holds at every 0/1 y with one representative per family; at a 0/1 y the cuts
    give each layer exactly its true service cost."""
    g, _ = random_graph(seed)
    rc = RadiusCuts(g)
    rng = np.random.default_rng(seed)
    ys = []
    for bits in itertools.product([0.0, 1.0], repeat=g.n):
        y = np.array(bits)
        if all(y[list(m)].sum() >= 1 for m in g.family_members.values()):
            ys.append(y)
    for _ in range(5):
        frac = rng.random(g.n)
        for m in g.family_members.values():
            frac[list(m)] /= max(frac[list(m)].sum(), 1e-9) / rng.uniform(1.0, 2.0)
        cuts = rc.separate(np.clip(frac, 0, 1), np.full(g.n, -np.inf))
        for y in ys:
            _, true = rc.served(y)
            for c in cuts:
                assert true[c.layer] + c.coefs @ y[c.sites] >= c.rhs - 1e-9
    y = ys[int(rng.integers(len(ys)))]
    _, true = rc.served(y)
    theta = np.full(g.n, -np.inf)
    for c in rc.separate(y, theta):
        theta[c.layer] = max(theta[c.layer], c.rhs - c.coefs @ y[c.sites])
    assert np.allclose(theta, true)


@pytest.mark.parametrize("seed", range(6))
def test_swap_descent_reaches_a_swap_local_optimum(seed):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(6, 14))
    cost = rng.random((m, m)) * 10
    np.fill_diagonal(cost, 0.0)
    k = int(rng.integers(2, m - 1))
    start = greedy_open(cost, k)
    assert len(set(start.tolist())) == k
    value, reps = swap_descent(cost, start)
    assert value == pytest.approx(service_cost(cost, reps))
    assert value <= service_cost(cost, start) + 1e-12
    for out in reps:
        for into in set(range(m)) - set(reps.tolist()):
            other = np.array(sorted(set(reps.tolist()) - {out} | {into}))
            assert service_cost(cost, other) >= value - 1e-9


def test_demo_graph_agrees_with_the_pmedian_program():
    g = llama_graph()
    a = solve(g, 0.5 * g.dense_size, backend="highs")
    b = solve(g, 0.5 * g.dense_size, backend="highs", formulation="pmedian")
    assert "radius" in a.facts["formulation"] and a.status == b.status == "optimal"
    assert a.objective == pytest.approx(b.objective, rel=1e-9)


def _optima():
    with open(SHARED_DATA / "pmed" / "optima.csv") as fh:
        return {r["name"]: float(r["optimum"]) for r in csv.DictReader(fh)}


@needs_data
@pytest.mark.parametrize("name", ["pmed2", "pmed5", "pmed7", "pmed12"])
def test_pmed_published_optimum_by_default(name):
    dist, p = read_pmedian(SHARED_DATA / "pmed" / f"{name}.txt")
    sol = solve(SharingGraph.from_matrix(dist), p, backend="highs", time_limit=60)
    assert sol.status == "optimal"
    assert sol.objective == pytest.approx(_optima()[name])
    assert sol.bound == pytest.approx(_optima()[name], rel=1e-6)


@needs_data
@pytest.mark.slow
@pytest.mark.parametrize("k", range(1, 21))
def test_every_pmed_proven_within_60_s(k):
    name = f"pmed{k}"
    dist, p = read_pmedian(SHARED_DATA / "pmed" / f"{name}.txt")
    sol = solve(SharingGraph.from_matrix(dist), p, backend="highs", time_limit=60)
    assert sol.status == "optimal", sol.facts
    assert sol.objective == pytest.approx(_optima()[name])
    assert math.isfinite(sol.wall_time) and sol.wall_time < 60
