"""Exact backends equal a brute-force enumeration on many random instances (hypothesis)."""

import numpy as np
import pytest
from conftest import EXACT_BACKENDS, brute_force
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colorshare import SharingGraph, solve

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def instances(draw, kind="medoid"):
    n = draw(st.integers(2, 7))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    c = rng.random((n, n)).round(3)
    if draw(st.booleans()):
        c[c < 0.3] = 0.0  # ties and zero costs
    np.fill_diagonal(c, 0)
    if kind == "pairwise":
        c = (c + c.T) / 2
    sizes = [int(s) for s in rng.choice([1, 2, 3], size=n)] if draw(st.booleans()) else [2] * n
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    conflicts = [p for p in pairs if rng.random() < draw(st.sampled_from([0.0, 0.2, 0.5]))]
    g = (SharingGraph.from_matrix if kind == "medoid" else SharingGraph.from_pairwise)(c, sizes=sizes,
                                                                                       conflicts=conflicts)
    budget = draw(st.integers(0, sum(sizes)))
    return g, budget


def _check(g, budget, **kw):
    expected = brute_force(g, budget)
    for backend in EXACT_BACKENDS:
        extra = {"workers": 1} if backend == "cpsat" else {}
        sol = solve(g, budget, backend=backend, **kw, **extra)
        if expected is None:
            assert sol.status == "infeasible", (backend, sol)
        else:
            assert sol.status == "optimal", (backend, sol)
            assert sol.objective == pytest.approx(expected, rel=1e-6, abs=1e-9), (backend, sol)
            assert sol.memory <= budget


@SETTINGS
@given(instances("medoid"), st.booleans())
def test_pmedian_matches_brute_force(inst, decompose):
    g, budget = inst
    _check(g, budget, decompose=decompose)


@SETTINGS
@given(instances("medoid"))
def test_setpart_on_medoid_matches_brute_force(inst):
    g, budget = inst
    _check(g, budget, formulation="setpart")


@SETTINGS
@given(instances("pairwise"))
def test_clique_matches_brute_force(inst):
    g, budget = inst
    _check(g, budget)


@SETTINGS
@given(st.integers(2, 6), st.integers(0, 2**31 - 1), st.integers(0, 60))
def test_group_actions_match_brute_force(n, seed, budget):
    rng = np.random.default_rng(seed)
    size = 10
    w = rng.normal(size=(n, 3))

    def oracle(group):
        pts = w[list(group)]
        spread = float(((pts - pts.mean(0)) ** 2).sum())
        opts = [("tie", round(spread, 4), size)]
        if len(group) == 1:
            opts = [("dense", 0.0, size)]
        opts.append(("basis", round(spread * 0.5 + 0.1 * len(group), 4), 2 + len(group) * 3, {"rank": 1}))
        return opts

    g = SharingGraph.from_groups(oracle, sizes=[size] * n)
    _check(g, budget)
