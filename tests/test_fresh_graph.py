"""A fresh model graph is ready to solve: build_graph computes the pair statistics that prove cross-layer classes
as a step of its own, solve() reports the graph's lazy work apart from the solver's, and build_graph and
compress share their defaults."""

import inspect

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from conftest import tiny_llama  # noqa: E402

from colorshare import solve  # noqa: E402
from colorshare.compress import CompressOptions  # noqa: E402
from colorshare.torch import build_graph  # noqa: E402
from colorshare.torch.models import planted_stack  # noqa: E402


def _lm_batches(vocab=97, n=4):
    g = torch.Generator().manual_seed(1)
    return [{"input_ids": torch.randint(0, vocab, (2, 16), generator=g)} for _ in range(n)]


def test_build_graph_and_compress_share_their_defaults():
    params = inspect.signature(build_graph).parameters
    opts = CompressOptions()
    assert params["cross_layer"].default == opts.cross_layer is False
    assert params["probe_tokens"].default == opts.probe_tokens
    assert params["curvature"].default == opts.curvature


def test_a_fresh_cross_layer_graph_has_its_pair_statistics_and_its_first_solve_is_proven():
    model = tiny_llama(layers=4, tie=False)
    g = build_graph(model, _lm_batches(), targets="all-linear", curvature="kfac", cross_layer=True, progress=False)
    assert g.preparation["pair statistics"] >= 0 and g.preparation["statistics"] > 0
    pairs = g.shareable_pairs()
    assert pairs and all(set(g.known_pairs(tuple(m))) >= {p for p in pairs if p[0] in m}
                         for m in g.family_members.values() if len(m) > 1)
    sol = solve(g, 0.5 * g.dense_size, backend="highs", time_limit=120)
    assert sol.status == "optimal"
    assert sol.facts["graph_seconds"] >= 0 and sol.facts["solver_seconds"] >= 0
    assert sol.facts["graph_seconds"] + sol.facts["solver_seconds"] == pytest.approx(sol.wall_time, abs=1e-6)
    # a second solve on the warm graph finds the same optimum
    again = solve(g, 0.5 * g.dense_size, backend="highs", time_limit=120)
    assert again.objective == pytest.approx(sol.objective, rel=1e-9)


def test_without_the_step_the_first_solve_pays_for_the_graph_and_says_so():
    model = tiny_llama(layers=4, tie=False)
    g = build_graph(model, _lm_batches(), targets="all-linear", curvature="kfac", cross_layer=True,
                    prepare=False, progress=False)
    assert "pair statistics" not in g.preparation and "options" not in g.preparation
    first = solve(g, 0.5 * g.dense_size, backend="highs", time_limit=120)
    second = solve(g, 0.5 * g.dense_size, backend="highs", time_limit=120)
    assert first.facts["graph_seconds"] > second.facts["graph_seconds"]
    assert first.objective == pytest.approx(second.objective, rel=1e-9)
    prepared = build_graph(model, _lm_batches(), targets="all-linear", curvature="kfac", cross_layer=True,
                           progress=False)
    assert {"options", "pair statistics"} <= set(prepared.preparation)
    ready = solve(prepared, 0.5 * prepared.dense_size, backend="highs", time_limit=120)
    assert ready.facts["graph_seconds"] < first.facts["graph_seconds"]
    assert ready.objective == pytest.approx(first.objective, rel=1e-9)


def test_within_blocks_a_transformer_shares_only_inside_a_block_and_a_plain_mlp_is_one_block():
    lm = build_graph(tiny_llama(layers=3, tie=False), _lm_batches(), targets="all-linear", curvature="kfac",
                     progress=False)
    assert lm.shareable_pairs() == [] and lm.scopes  # q/k/v and gate/up still share their input factor
    assert "pair statistics" not in lm.preparation
    model, batches = planted_stack(families=2, layers=3, width=16)  # each chain (block) is one family
    stack = build_graph(model, batches, curvature="kfac", progress=False)
    assert len(stack.shareable_pairs()) == 2 * 3
    mlp = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh(), torch.nn.Linear(8, 8), torch.nn.Tanh(),
                              torch.nn.Linear(8, 3))
    plain = build_graph(mlp, [torch.randn(64, 8)], curvature="kfac", progress=False)
    assert plain.shareable_pairs() == [(0, 1)]


def test_the_planted_stack_is_the_same_whatever_the_global_random_state():
    torch.manual_seed(1)
    a, xa = planted_stack(families=2, layers=3, width=16)
    torch.manual_seed(2)
    b, xb = planted_stack(families=2, layers=3, width=16)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert all(torch.equal(x, y) for x, y in zip(xa, xb))
