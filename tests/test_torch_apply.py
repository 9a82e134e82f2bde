"""Applying a coloring: the memory identity to the element, ties that survive save/load and an optimizer step."""

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from colorshare import solve  # noqa: E402
from colorshare.torch import (  # noqa: E402
    BasisLinear,
    apply_coloring,
    build_graph,
    load_shared,
    save_shared,
    stored_parameters,
    untie,
)
from colorshare.torch.actions.basis import basis_option  # noqa: E402
from colorshare.torch.actions.tie import tie_center  # noqa: E402


def mlp(seed=0, width=16, depth=6):
    torch.manual_seed(seed)
    layers = [nn.Linear(8, width), nn.ReLU()]
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 3))


def batches():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(32, 8, generator=g) for _ in range(4)]


@pytest.mark.parametrize("actions", [("tie", "dense"), ("medoid", "dense"), ("tie", "basis", "dense")])
@pytest.mark.parametrize("frac", [0.3, 0.6, 0.9])
def test_identity_holds_to_the_element(actions, frac, tmp_path):
    model = mlp()
    # classes of any size: a width-16 menu has one rank (8), so 30 % needs ties of more than two layers
    g = build_graph(model, batches(), actions=actions, trust_region=None, progress=False, max_group_size=None)
    sol = solve(g, frac * g.dense_size, backend="highs")
    assert sol.status == "optimal"
    shared = apply_coloring(model, g, sol)
    assert stored_parameters(shared) == stored_parameters(model) - g.dense_size + sol.memory
    assert stored_parameters(model) == sum(p.numel() for p in model.parameters())  # the original is untouched
    path = tmp_path / "m.safetensors"
    save_shared(shared, path)
    # the file holds each stored tensor once: its size follows stored_parameters (4 bytes each + header)
    assert stored_parameters(shared) * 4 <= path.stat().st_size <= stored_parameters(shared) * 4 + 20_000
    restored = load_shared(path, mlp(seed=5))
    x = torch.randn(7, 8)
    assert torch.allclose(restored(x), shared(x), atol=1e-6)
    assert stored_parameters(restored) == stored_parameters(shared)


def test_tie_is_one_parameter_and_survives_load_and_optimizer_step(tmp_path):
    model = mlp()
    g = build_graph(model, batches(), actions=("tie", "dense"), trust_region=None, progress=False)
    sol = solve(g, 0.5 * g.dense_size, backend="highs")
    shared = apply_coloring(model, g, sol)
    tied = next(c for c in sol.classes if c.action == "tie")
    a, b = (g.module_names[i] for i in tied.members[:2])
    assert shared.get_submodule(a).weight is shared.get_submodule(b).weight
    save_shared(shared, tmp_path / "m.safetensors")
    restored = load_shared(tmp_path / "m.safetensors", mlp(seed=3))
    wa, wb = restored.get_submodule(a).weight, restored.get_submodule(b).weight
    assert wa.data_ptr() == wb.data_ptr()
    opt = torch.optim.SGD(restored.parameters(), lr=0.1)
    restored(torch.randn(4, 8)).sum().backward()
    before = wb.detach().clone()
    opt.step()
    assert torch.equal(wa, wb) and not torch.equal(wb, before)
    untie(restored)
    assert restored.get_submodule(a).weight is not restored.get_submodule(b).weight
    assert stored_parameters(restored) == sum(p.numel() for p in mlp().parameters())


def test_basis_modules_share_u_and_untie_restores_linear():
    model = mlp()
    g = build_graph(model, batches(), curvature="layerwise", actions=("basis", "dense"), ranks=[2, 4],
                    trust_region=None,
                    progress=False)
    sol = solve(g, 0.4 * g.dense_size, backend="highs")
    shared = apply_coloring(model, g, sol)
    grp = next((c for c in sol.classes if c.action == "basis" and len(c.members) > 1), None)
    assert grp is not None, sol.classes
    mods = [shared.get_submodule(g.module_names[i]) for i in grp.members]
    assert all(isinstance(m, BasisLinear) for m in mods) and mods[0].basis is mods[1].basis
    x = torch.randn(3, 8)
    y = shared(x)
    untie(shared)
    assert not any(isinstance(m, BasisLinear) for m in shared.modules())
    assert torch.allclose(shared(x), y, atol=1e-5)


def test_errors_name_the_layer():
    model = mlp()
    g = build_graph(model, batches(), actions=("tie", "dense"), trust_region=None, progress=False)
    sol = solve(g, 0.5 * g.dense_size, backend="highs")
    other = mlp(width=12)
    with pytest.raises(ValueError, match=r"layer '2' has weight shape \(12, 12\)"):
        apply_coloring(other, g, sol)
    small = build_graph(mlp(depth=3), batches(), progress=False)
    with pytest.raises(ValueError, match="graph has"):
        apply_coloring(model, small, sol)
    bad = solve(g, 0, backend="highs")
    with pytest.raises(ValueError, match="no coloring"):
        apply_coloring(model, g, bad)
    with pytest.raises(ValueError, match="unknown action"):
        build_graph(model, batches(), actions=("fold",), progress=False)


def test_loss_based_graph_costs_match_surrogate():
    model = mlp()
    data = [(x, torch.randint(0, 3, (32,))) for x in batches()]
    g = build_graph(model, data, curvature="fisher", progress=False,
                    loss_fn=lambda out, b: nn.functional.cross_entropy(out, b[1]))
    sol = solve(g, 0.5 * g.dense_size, backend="highs")
    shared = apply_coloring(model, g, sol)
    # predicted cost = sum over layers of 1/2 sum h * (W_new - W)^2, recomputed from the changed model
    pred = 0.0
    for i, name in enumerate(g.module_names):
        D = shared.get_submodule(name).weight.detach().double() - model.get_submodule(name).weight.detach().double()
        pred += g.curvatures[i].quad(D)
    assert pred == pytest.approx(sol.objective, rel=1e-6, abs=1e-12)


def test_tie_center_keeps_the_mean_where_no_calibration_input_reaches():
    """Input 3 is 0 for both layers (constant pixel, dead unit): the tie center's column 3 is the plain mean,
    not an arbitrary least-squares value, and it is the same on every call."""
    from colorshare.torch import build_graph

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 4))
    with torch.no_grad():
        model[0].weight[3] = 0.0
        model[0].bias[3] = -1.0  # unit 3 never fires
    x = torch.randn(256, 4)
    x[:, 3] = 0.0
    g = build_graph(model, [x], progress=False)
    W = tie_center(g, (0, 1))
    mean = (g.weights[0] + g.weights[1]) / 2
    assert torch.allclose(W[:, 3], mean[:, 3], atol=1e-6)
    assert torch.equal(W, tie_center(g, (0, 1))) and bool(torch.isfinite(W).all())


def test_price_carries_a_coloring_to_another_graph_exactly():
    """bench.fidelity.price: on the graph that chose a coloring it equals the solver's objective; a basis rank
    off the menu (a baseline's) is priced by basis_option; a class the graph cannot price gives None."""
    from colorshare.bench.fidelity import price
    from colorshare.torch.baselines import baseline

    model = mlp()
    g = build_graph(model, batches(), curvature="layerwise", actions=("basis", "dense"), ranks=[4, 8],
                    trust_region=None, progress=False)
    sol = solve(g, 0.5 * g.dense_size, backend="highs")
    classes = [(c.members, c.action, c.memory) for c in sol.classes]
    assert price(g, classes) == pytest.approx(sol.objective, rel=1e-9)
    off = baseline(g, "svd-uniform", 0.8)  # rank 6 on the 16 x 16 layers: off the menu
    ranks = {int(c.params["rank"]) for c in off.classes if c.action == "basis"}
    assert ranks - {4, 8}, ranks
    expect = sum(basis_option(g, c.members, int(c.params["rank"]), trust=False).cost
                 for c in off.classes if c.action == "basis")
    assert price(g, [(c.members, c.action, c.memory) for c in off.classes]) == pytest.approx(expect, rel=1e-9)
    assert price(g, [((0,), "tie", 1)]) is None


def test_class_option_prices_outside_the_trust_region_as_the_open_graph_does():
    """A tight trust region removes a tie from the menu; class_option(trust=False) still prices it, exactly as a
    graph without a trust region does, and trust=True refuses it."""
    model = mlp()
    tight = build_graph(model, batches(), actions=("tie", "dense"), trust_region=0.05, progress=False)
    free = build_graph(model, batches(), actions=("tie", "dense"), trust_region=None, progress=False)
    group, m = (1, 2), int(tight.sizes[1])
    assert all(o.action != "tie" for o in tight.options(group))
    want = free.resolve(group, "tie", m)
    got = tight.class_option(group, "tie", m, trust=False)
    assert want is not None and got is not None and got.cost == pytest.approx(want.cost, rel=1e-9)
    assert tight.class_option(group, "tie", m, trust=True) is None
    assert tight.class_option((1,), "dense", m).cost == 0.0
    assert tight.class_option((1,), "dense", m + 1) is None and tight.class_option(group, "fold", m) is None
