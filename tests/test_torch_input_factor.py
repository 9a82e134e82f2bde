"""Input-side shared factors: layers fed the same tensor (q/k/v, gate/up) share B, W_j ~ A_j B."""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

import conftest  # noqa: E402

from colorshare import evaluate, solve  # noqa: E402
from colorshare.torch import InputFactorLinear, apply_coloring, build_graph, load_shared, save_shared, stored_parameters  # noqa: E402
from colorshare.torch.actions.basis import basis_factors  # noqa: E402
from colorshare.torch.actions.input import factor_cache, input_factors  # noqa: E402


def tiny_llama(seed=0):
    return conftest.tiny_llama(hidden=64, intermediate=96, tie=False, seed=seed)


@pytest.fixture(scope="module")
def case():
    model = tiny_llama()
    g = torch.Generator().manual_seed(1)
    batches = [{"input_ids": torch.randint(0, 97, (2, 16), generator=g)} for _ in range(3)]
    graph = build_graph(model, batches, curvature="kfac", targets=[r".*_proj"], progress=False)
    return model, batches, graph


def test_scopes_are_the_layers_fed_the_same_tensor(case):
    _, _, g = case
    names = [sorted(g.module_names[i].rsplit(".", 1)[1] for i in sc) for sc in g.scopes]
    assert sorted(map(tuple, names)) == [("gate_proj", "up_proj")] * 2 + [("k_proj", "q_proj", "v_proj")] * 2
    for sc in g.scopes:  # one block each
        assert len({g.module_names[i].split(".")[2] for i in sc}) == 1


def test_an_input_shared_group_computes_its_factor_once_per_forward_and_stores_what_the_solver_said(case,
                                                                                                   tmp_path):
    model, batches, g = case
    qkv = next(sc for sc in g.scopes if len(sc) == 3)
    opt = min((o for o in g.options(qkv) if o.action == "input"), key=lambda o: o.memory)
    classes = [(qkv, "input", opt.memory)] + [((i,), "dense") for i in range(g.n) if i not in qkv]
    sol = evaluate(g, classes)
    assert sol.memory == g.dense_size - sum(int(g.sizes[i]) for i in qkv) + opt.memory
    shared = apply_coloring(model, g, sol)
    assert stored_parameters(shared) == stored_parameters(model) - g.dense_size + sol.memory  # to the element
    mods = [shared.get_submodule(g.module_names[i]) for i in qkv]
    assert all(isinstance(m, InputFactorLinear) for m in mods) and len({id(m.factor) for m in mods}) == 1
    cache = factor_cache(mods[0].factor)
    before = cache.computed
    with torch.no_grad():
        out = shared(**batches[0]).logits
    assert cache.computed - before == 1  # q, k and v read one product x B^T
    # the layers compute A_j B exactly: the same as a dense model holding those weights
    dense = tiny_llama()
    dense.load_state_dict(model.state_dict())
    ws = g.class_weights(qkv, "input", opt.params["rank"])
    with torch.no_grad():
        for i, W in zip(qkv, ws):
            dense.get_submodule(g.module_names[i]).weight.copy_(W)
        ref = dense(**batches[0]).logits
    assert torch.allclose(out, ref, atol=1e-4)
    import copy

    twin = copy.deepcopy(shared)  # after a forward (a cache holding a product): copies start empty, still shared
    tm = [twin.get_submodule(g.module_names[i]) for i in qkv]
    assert len({id(factor_cache(m.factor)) for m in tm}) == 1 and factor_cache(tm[0].factor) is not cache
    save_shared(shared, tmp_path / "m.safetensors")
    back = load_shared(tmp_path / "m.safetensors", tiny_llama(seed=5))
    assert stored_parameters(back) == stored_parameters(shared)
    mods = [back.get_submodule(g.module_names[i]) for i in qkv]
    assert len({id(m.factor) for m in mods}) == 1
    with torch.no_grad():
        assert torch.allclose(back(**batches[0]).logits, out, atol=1e-5)


def test_the_solver_picks_input_groups_jointly_and_per_layer_means_no_sharing(case):
    _, _, g = case
    sol = solve(g, 0.5 * g.dense_size, backend="highs")
    assert sol.status == "optimal"
    per = solve(g, 0.5 * g.dense_size, backend="highs", max_group_size=1)
    assert all(len(c.members) == 1 for c in per.classes)
    assert sol.objective <= per.objective * (1 + 1e-9)
    # the exact backends agree on a graph with scope groups
    for b in ("cpsat", "pulp"):
        other = solve(g, 0.5 * g.dense_size, backend=b, time_limit=60)
        assert other.objective == pytest.approx(sol.objective, rel=1e-5)


@pytest.mark.parametrize("keep", [0.5, 0.3])
def test_without_cross_layer_classes_only_input_scopes_share_and_the_optimum_lies_between_the_spaces(case, keep):
    model, batches, g = case
    within = build_graph(model, batches, curvature="kfac", targets=[r".*_proj"], cross_layer=False, progress=False)
    assert within.pair_statistics(progress=False) == 0  # no pair of one family may share: nothing to compute
    scopes = [set(sc) for sc in within.scopes]
    sol = solve(within, keep * within.dense_size, backend="highs")
    assert sol.status == "optimal" and sol.gap is not None and sol.gap <= 1e-6
    shared = [c for c in sol.classes if len(c.members) > 1]
    assert all(any(set(c.members) <= sc for sc in scopes) for c in shared)
    assert all(len({within.families[i] for i in c.members}) == len(c.members) for c in shared)  # one per family
    full = solve(g, keep * g.dense_size, backend="highs")
    per = solve(g, keep * g.dense_size, backend="highs", max_group_size=1)
    assert full.objective <= sol.objective * (1 + 1e-9) <= per.objective * (1 + 1e-9) ** 2
    other = solve(within, keep * within.dense_size, backend="cpsat", time_limit=60)
    assert other.objective == pytest.approx(sol.objective, rel=1e-5)
    assert all(any(set(c.members) <= sc for sc in scopes) for c in other.classes if len(c.members) > 1)


@pytest.mark.parametrize("keep", [0.7, 0.35])
def test_the_heuristics_form_input_groups_too_and_never_beat_the_optimum(case, keep):
    """greedy (every backend's warm start) and anneal merge across families within an input scope: their
    colorings use the input action, and no heuristic coloring costs less than the proven optimum."""
    from colorshare.solvers.greedy import greedy

    _, _, g = case
    best = solve(g, keep * g.dense_size, backend="highs")
    start = greedy(g, keep * g.dense_size)
    assert start is not None and "input" in {o.action for _, o in start}
    assert sum(o.cost for _, o in start) >= best.objective * (1 - 1e-9)
    ann = solve(g, keep * g.dense_size, backend="anneal", iterations=20_000, warm_start=False)  # seeded: repeatable
    assert "input" in {c.action for c in ann.classes}
    assert ann.memory <= keep * g.dense_size and ann.objective >= best.objective * (1 - 1e-9)


def test_block_replay_is_the_models_own_forward(case):
    """Probes and measurements rerun only the blocks from the first changed one: bit for bit the same."""
    from colorshare.torch.replay import BlockReplay

    model, batches, g = case
    rp = BlockReplay(model, batches[:2])
    assert rp.blocks is not None and len(rp.blocks) == 2
    name = "model.layers.1.mlp.down_proj"
    assert rp.start([name, "model.layers.1.self_attn.q_proj"]) == 1 and rp.start(["lm_head"]) == 0
    w = model.get_submodule(name).weight
    old = w.detach().clone()
    try:
        with torch.no_grad():
            w.mul_(0.5)
            full = [model(**b, use_cache=False).logits for b in batches[:2]]
        part = rp.outputs(rp.start([name]))
        for a, b in zip(full, part):
            assert torch.equal(a, b.logits)
    finally:
        with torch.no_grad():
            w.copy_(old)
    assert all(isinstance(m, type(rp.blocks[0])) for m in rp.blocks)  # the stand-ins were taken out again


def test_input_factors_run_under_inference_mode(case):
    """torch.inference_mode (pipelines, serving) has no version counters: the shared product is still computed
    once per forward and the output is the one under no_grad."""
    model, batches, g = case
    shared = apply_coloring(model, g, solve(g, 0.5 * g.dense_size, backend="highs"))
    mods = [m for m in shared.modules() if isinstance(m, InputFactorLinear)]
    assert mods
    x = batches[0]["input_ids"]
    with torch.no_grad():
        want = shared(input_ids=x).logits
    cache = factor_cache(mods[0].factor)
    before = cache.computed
    with torch.inference_mode():
        got = shared(input_ids=x).logits
    assert torch.equal(got, want)
    assert cache.computed == before + 1


def test_energy_of_a_layer_wider_out_than_in_needs_no_output_side_gram(case):
    """gate/up (d_out > d_in): ``tr(h W Sigma W^T)`` from ``||W L||^2``, the small side, equals the trace of the
    d_out x d_out Gram; and the input factor's pseudo-inverse, now read off the cached root, still gives back
    ``W`` at full rank."""
    model, batches, g = case
    wide = [i for i in range(g.n) if g.shapes[i][0] > g.shapes[i][1]]
    assert wide
    for i in wide:
        assert g.gram_trace(i) == pytest.approx(float(torch.trace(g.gram(i))), rel=1e-10)
        assert g.energy(i) == pytest.approx(0.5 * float(torch.trace(g.gram(i))), rel=1e-10)
    scope = next(s for s in g.scopes if len(s) > 1)
    d_in = g.shapes[scope[0]][1]
    B, As = input_factors(g, scope, d_in)
    sigma = g.curvatures[scope[0]].covariance()
    for i, A in zip(scope, As):  # at full rank the factor loses nothing the input covariance sees
        D = A @ B - g.weight(i)
        assert float(torch.trace(D @ sigma @ D.T)) <= 1e-9 * float(torch.trace(g.weight(i) @ sigma @ g.weight(i).T))


def test_a_probed_graph_keeps_what_scales_with_its_ratios_and_equals_one_built_at_those_scales(case):
    """After the probes each layer's scale is multiplied by its ratio; the graph keeps the singletons' spectra,
    Grams, whitened weights and bases, scaled, instead of recomputing them. Every option (singletons and input
    scopes) and every shared factor equals that of a K-FAC graph given the same scales and nothing cached."""
    import math

    model, batches, _ = case
    probed = build_graph(model, batches, curvature="probed", targets=[r".*_proj"], progress=False)
    # not prepared: its options would be priced before the scales below change
    fresh = build_graph(model, batches, curvature="kfac", targets=[r".*_proj"], progress=False, prepare=False)
    for c, r in zip(fresh.curvatures, probed.probe_ratios):
        c.scale *= float(r)
    fresh.state.reset()
    assert len(set(map(float, probed.probe_ratios))) > 1  # the ratios differ: a kept quantity must be rescaled
    groups = [(i,) for i in range(probed.n)] + [tuple(s) for s in probed.scopes]
    for grp in groups:
        a = sorted((o.action, o.memory, o.cost) for o in probed.options(grp))
        b = sorted((o.action, o.memory, o.cost) for o in fresh.options(grp))
        assert [x[:2] for x in a] == [x[:2] for x in b]
        for x, y in zip(a, b):
            assert math.isclose(x[2], y[2], rel_tol=1e-9, abs_tol=1e-15), (grp, x, y)
        assert probed.energy(grp[0]) == pytest.approx(fresh.energy(grp[0]), rel=1e-10)
    for i in range(probed.n):
        U, Cs = basis_factors(probed, (i,), 4)
        V, Ds = basis_factors(fresh, (i,), 4)
        assert torch.allclose(U @ Cs[0], V @ Ds[0], atol=1e-9)
