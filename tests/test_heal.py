"""Healing trains the compressed layers' stored tensors toward the dense model: shared tensors stay shared and
learn from every member, everything else stays frozen, the best held-back state is kept, runs repeat under a
seed, and a plan in fewer bits is healed in 16 bits and rounded after to its planned bytes."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from conftest import tiny_llama  # noqa: E402

from colorshare import evaluate, solve  # noqa: E402
from colorshare.formulations.budget import parse_budget  # noqa: E402
from colorshare.torch import apply_coloring, build_graph, heal, quantize_classes, stored_memory  # noqa: E402
from colorshare.torch.actions.basis import BasisLinear  # noqa: E402


def _batches(n=12, vocab=97):
    g = torch.Generator().manual_seed(3)
    return [{"input_ids": torch.randint(0, vocab, (4, 24), generator=g)} for _ in range(n)]


@pytest.fixture(scope="module")
def plan():
    model = tiny_llama(hidden=64, intermediate=128, tie=False)
    batches = _batches()
    g = build_graph(model, batches[:6], targets="all-linear", curvature="kfac", cross_layer=True,
                    trust_region=None, progress=False)
    pair = g.family_members[next(f for f in g.family_members if "q_proj" in f)][:2]
    basis = min((o for o in g.options(pair) if o.action == "basis"), key=lambda o: o.memory)
    low = [min((o for o in g.options((i,)) if o.action == "basis"), key=lambda o: o.memory) for i in range(g.n)]
    classes = [(pair, "basis", basis.memory)] + [((i,), "basis", low[i].memory) for i in range(g.n) if i not in pair]
    return model, batches, g, evaluate(g, classes)  # a shared basis, every other layer at its lowest rank


def test_healing_lowers_the_held_back_loss_and_keeps_shared_tensors_shared(plan):
    model, batches, g, sol = plan
    shared = apply_coloring(model, g, sol)
    frozen = {n: p.detach().clone() for n, p in shared.named_parameters() if "embed" in n or "norm" in n}
    cl = next(c for c in sol.classes if c.action == "basis" and len(c.members) > 1)
    members = [shared.get_submodule(g.module_names[i]) for i in cl.members]
    assert all(isinstance(m, BasisLinear) for m in members) and members[0].basis is members[1].basis
    basis_before = members[0].basis.detach().clone()
    res = heal(shared, model, batches, g.module_names, steps=24, lr=1e-3, eval_every=4, progress=False)
    assert res.held_best < res.held_before and res.best_step > 0
    assert all(h is None or h >= res.held_best - 1e-12 for _, _, h in res.curve)  # the best state is kept
    assert members[0].basis is members[1].basis  # one tensor, trained by both members
    assert not torch.equal(members[0].basis.detach(), basis_before)
    assert stored_memory(shared) == stored_memory(model) - g.dense_size + sol.memory
    for n, p in shared.named_parameters():
        if n in frozen:
            assert torch.equal(p.detach(), frozen[n]), n
    assert all(p.requires_grad for p in model.parameters())  # the teacher's flags are the caller's business


def test_healing_repeats_under_a_seed(plan):
    model, batches, g, sol = plan
    runs = []
    for _ in range(2):
        shared = apply_coloring(model, g, sol)
        heal(shared, model, batches, g.module_names, steps=6, lr=1e-3, eval_every=3, seed=5, progress=False)
        runs.append([p.detach().clone() for p in shared.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def test_a_plan_in_fewer_bits_is_healed_in_16_bits_then_rounded_to_its_bytes():
    model = tiny_llama(hidden=64, intermediate=128, tie=False)
    batches = _batches()
    g = build_graph(model, batches[:6], targets="all-linear", curvature="kfac", bits=(8, 4), progress=False)
    sol = solve(g, parse_budget("5bpw").for_graph(g), backend="highs", time_limit=60)
    assert any((c.params or {}).get("bits", 16) < 16 for c in sol.classes)
    float_plan = apply_coloring(model, g, sol, quantize=False)
    assert not any(type(m).__name__ == "QuantLinear" for m in float_plan.modules())
    res = heal(float_plan, model, batches, g.module_names, steps=4, lr=1e-4, eval_every=2, progress=False)
    assert res.steps == 4
    quantize_classes(float_plan, g, sol)
    assert stored_memory(float_plan, "bytes") == stored_memory(model, "bytes") - g.dense_size + sol.memory


def test_healing_refuses_what_it_cannot_do(plan):
    model, batches, g, sol = plan
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        heal(model, model, batches, g.module_names, steps=0, progress=False)
    with pytest.raises(ValueError, match="at least 2 batches"):
        heal(apply_coloring(model, g, sol), model, batches[:1], g.module_names, steps=2, progress=False)
    with pytest.raises(ValueError, match="dense model"):
        heal(apply_coloring(model, g, sol), None, batches, g.module_names, steps=2, progress=False)
