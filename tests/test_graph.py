"""The graph model: constructors, validation with messages that name the problem, networkx in and out."""

import math

import networkx as nx
import numpy as np
import pytest

from colorshare import SharingGraph, solve


def test_from_matrix_defaults():
    g = SharingGraph.from_matrix([[0, 1], [2, 0]])
    assert g.n == 2 and g.dense_size == 2 and g.names == ("layer0", "layer1")
    assert g.can_share(0, 1) and not g.can_share(0, 0)


def test_sizes_define_families():
    g = SharingGraph.from_matrix(np.zeros((3, 3)), sizes=[4, 4, 8])
    assert g.can_share(0, 1) and not g.can_share(0, 2)
    assert len(g.family_members) == 2


@pytest.mark.parametrize(
    "cost, kwargs, match",
    [
        ([[0, float("nan")], [1, 0]], {}, "NaN"),
        ([[0, float("inf")], [1, 0]], {}, "infinite"),
        ([[0, -1], [1, 0]], {}, "negative"),
        ([[0, 1, 2], [1, 0, 2]], {}, "square"),
        ([[1, 1], [1, 0]], {}, "diagonal"),
        ([[0, 1], [1, 0]], {"sizes": [1, 0]}, "size > 0"),
        ([[0, 1], [1, 0]], {"sizes": [1, -3]}, "size > 0"),
        ([[0, 1], [1, 0]], {"sizes": [1, 2, 3]}, "2 positive integers"),
        ([[0, 1], [1, 0]], {"sizes": [1.5, 2]}, "whole number"),
        ([[0, 1], [1, 0]], {"conflicts": [(0, 5)]}, "unknown layer 5"),
        ([[0, 1], [1, 0]], {"conflicts": [(1, 1)]}, "itself"),
        ([[0, 1], [1, 0]], {"conflicts": [("a", "zz")], "names": ["a", "b"]}, "unknown layer 'zz'"),
        ([[0, 1], [1, 0]], {"names": ["a", "a"]}, "duplicate layer name 'a'"),
        ([[0, 1], [1, 0]], {"names": ["a"]}, "names has 1"),
        ([[0, 1], [1, 0]], {"families": ["x", "x"], "sizes": [1, 2]}, "mixes layer sizes"),
        ("abc", {}, "numeric"),
    ],
)
def test_bad_graph_inputs_name_the_problem(cost, kwargs, match):
    with pytest.raises(ValueError, match=match):
        SharingGraph.from_matrix(cost, **kwargs)


def test_pairwise_must_be_symmetric():
    with pytest.raises(ValueError, match="symmetric"):
        SharingGraph.from_pairwise([[0, 1], [2, 0]])


@pytest.mark.parametrize("budget, match", [(-1, ">= 0"), ("ten", "number"), (None, "number"), (float("nan"), ">= 0"),
                                           (True, "number")])
def test_bad_budget(budget, match):
    g = SharingGraph.from_matrix([[0, 1], [1, 0]])
    with pytest.raises(ValueError, match=match):
        solve(g, budget, backend="highs")


def test_unknown_backend_lists_valid_names():
    g = SharingGraph.from_matrix([[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="cpsat, highs, pulp, anneal"):
        solve(g, 1, backend="gurobi")


def test_other_bad_solve_arguments():
    g = SharingGraph.from_matrix([[0, 1], [1, 0]])
    with pytest.raises(TypeError, match="SharingGraph"):
        solve([[0, 1], [1, 0]], 1)
    with pytest.raises(ValueError, match="time_limit"):
        solve(g, 1, backend="highs", time_limit=-2)
    with pytest.raises(ValueError, match="unknown option"):
        solve(g, 1, backend="highs", bogus=1)
    with pytest.raises(ValueError, match="exact only for pairwise"):
        solve(g, 1, backend="highs", formulation="clique")
    with pytest.raises(ValueError, match="unknown formulation"):
        solve(g, 1, backend="highs", formulation="magic")


def test_group_table_validation():
    with pytest.raises(ValueError, match="negative|>= 0"):
        SharingGraph.from_groups({(0,): [("dense", -1.0, 4)]}, sizes=[4]).options((0,))
    with pytest.raises(ValueError, match="memory"):
        SharingGraph.from_groups({(0,): [("dense", 0.0, 2.5)]}, sizes=[4])
    with pytest.raises(ValueError, match="repeats"):
        SharingGraph.from_groups({(0, 0): [("dense", 0.0, 4)]}, sizes=[4])


def test_networkx_round_trip():
    rng = np.random.default_rng(3)
    c = rng.random((5, 5))
    np.fill_diagonal(c, 0)
    g = SharingGraph.from_matrix(c, sizes=[2, 2, 2, 3, 3], conflicts=[(0, 1)], names=list("abcde"))
    G = g.to_networkx()
    assert isinstance(G, nx.DiGraph) and G.nodes["d"]["size"] == 3
    h = SharingGraph.from_networkx(G)
    assert h.names == g.names and h.conflicts == g.conflicts and list(h.sizes) == list(g.sizes)
    for i in range(5):
        for j in range(5):
            if g.can_share(i, j):
                assert h.cost_model.matrix[i, j] == pytest.approx(c[i, j])
    b = 6
    assert solve(h, b, backend="highs").objective == pytest.approx(solve(g, b, backend="highs").objective)


def test_networkx_missing_cost_is_named():
    G = nx.DiGraph()
    G.add_nodes_from(["a", "b"])
    G.add_edge("a", "b", cost=1.0)
    with pytest.raises(ValueError, match="'b' -> 'a'"):
        SharingGraph.from_networkx(G)


def test_inf_budget_means_no_budget():
    g = SharingGraph.from_matrix([[0, 1], [1, 0]])
    sol = solve(g, math.inf, backend="highs")
    assert sol.objective == 0 and sol.memory == 2
