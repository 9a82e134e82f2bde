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


def _dp_case():
    """A tiny plan (every layer at its lowest rank) and batches of 3 rows: split 1 + 2 over two processes."""
    model = tiny_llama(hidden=64, intermediate=128, tie=False)
    g = torch.Generator().manual_seed(4)
    batches = [{"input_ids": torch.randint(0, 97, (3, 16), generator=g)} for _ in range(8)]
    graph = build_graph(model, batches[:4], targets="all-linear", curvature="kfac", trust_region=None,
                        progress=False)
    low = [min((o for o in graph.options((i,)) if o.action == "basis"), key=lambda o: o.memory)
           for i in range(graph.n)]
    sol = evaluate(graph, [((i,), "basis", low[i].memory) for i in range(graph.n)])
    return model, batches, graph, apply_coloring(model, graph, sol)


def _dp_heal(rank, size, init, out):
    torch.set_num_threads(1)
    model, batches, graph, shared = _dp_case()  # built before the group opens: one-process statistics
    torch.distributed.init_process_group("gloo", init_method=init, rank=rank, world_size=size)
    try:
        res = heal(shared, model, batches, graph.module_names, steps=8, lr=1e-3, eval_every=2, seed=2,
                   autocast=None, progress=False)
        if rank == 0:
            torch.save({"params": [p.detach().clone() for p in shared.parameters()], "curve": res.curve}, out)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_heal_to_the_one_process_weights(tmp_path):
    """Data-parallel healing (each process a slice of every batch's rows, gradients summed) ends at the weights
    and the held-back curve one process reaches, up to the order of the sums."""
    model, batches, graph, shared = _dp_case()
    torch.set_num_threads(1)
    one = heal(shared, model, batches, graph.module_names, steps=8, lr=1e-3, eval_every=2, seed=2, autocast=None,
               progress=False)
    out = tmp_path / "rank0.pt"
    torch.multiprocessing.start_processes(_dp_heal, args=(2, f"file://{tmp_path / 'init'}", str(out)), nprocs=2,
                                          join=True, start_method="spawn")
    two = torch.load(out)
    start = _dp_case()[3]
    moved = 0
    for a, b, s in zip(shared.parameters(), two["params"], start.parameters()):
        assert torch.allclose(a.detach(), b, rtol=1e-4, atol=1e-6)
        moved += int(not torch.equal(a.detach(), s.detach()))
    assert moved > 0  # healing changed the weights, and both runs changed them alike
    for (k1, t1, h1), (k2, t2, h2) in zip(one.curve, two["curve"]):
        assert k1 == k2 and (h1 is None) == (h2 is None)
        assert h1 is None or h1 == pytest.approx(h2, rel=1e-4)
        assert t2 == pytest.approx(t1, rel=1e-4, nan_ok=True)  # the train loss of the whole batch, summed


def test_autocast_heals_in_bfloat16_and_keeps_float32_weights(plan):
    model, batches, g, sol = plan
    shared = apply_coloring(model, g, sol)
    res = heal(shared, model, batches, g.module_names, steps=8, lr=1e-3, eval_every=4, autocast=torch.bfloat16,
               progress=False)
    assert res.held_best < res.held_before
    assert all(p.dtype == torch.float32 for p in shared.parameters())
    with pytest.raises(ValueError, match="autocast must be"):
        heal(shared, model, batches, g.module_names, steps=1, autocast="bf16", progress=False)
