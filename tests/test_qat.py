"""Straight-through healing of quantized layers (colorshare.torch.qat): a layer made trainable computes what its
codes store, goes back to the same codes untouched, learns through the rounding, and leaves a model in the
bytes the plan counted that computes exactly what the last trained forward did."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from conftest import tiny_llama  # noqa: E402

from colorshare import solve  # noqa: E402
from colorshare.formulations.budget import parse_budget  # noqa: E402
from colorshare.torch import apply_coloring, build_graph, heal, stored_memory  # noqa: E402
from colorshare.torch.heal import held_back_loss  # noqa: E402
from colorshare.torch.qat import FakeQuantLinear, freeze, heal_in_bits, unfreeze  # noqa: E402
from colorshare.torch.quant import QuantLinear, exact_products, gptq  # noqa: E402


def _layer(bits, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(24, 128, generator=g, dtype=torch.float64)
    X = torch.randn(512, 128, generator=g, dtype=torch.float64)
    return QuantLinear.from_quantized(gptq(W, X.T @ X / 512, bits), torch.nn.Parameter(torch.randn(24)))


@pytest.mark.parametrize("bits", [8, 4, 3, 2])
def test_a_trainable_layer_computes_its_codes_and_goes_back_to_them(bits):
    net = torch.nn.Sequential(_layer(bits))
    before = net[0].quantized()
    x = torch.randn(5, 128)
    with exact_products():
        want = net(x)
    assert unfreeze(net, ["0"]) == 1 and isinstance(net[0], FakeQuantLinear)
    assert torch.allclose(net(x), want, atol=1e-5)
    assert freeze(net, ["0"]) == 1 and isinstance(net[0], QuantLinear)
    after = net[0].quantized()
    assert torch.equal(after.codes, before.codes) and torch.equal(after.scales, before.scales)
    assert (after.zeros is None) == (before.zeros is None)
    assert after.zeros is None or torch.equal(after.zeros, before.zeros)


def test_the_rounding_passes_gradients_straight_through_and_scales_train_on_request():
    layer = FakeQuantLinear(_layer(4), scales=True)
    layer(torch.randn(7, 128)).square().sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    assert layer.scales.grad is not None and layer.scales.grad.abs().sum() > 0
    fixed = FakeQuantLinear(_layer(4))
    assert not isinstance(fixed.scales, torch.nn.Parameter)


@pytest.fixture(scope="module")
def bits_plan():
    """A tiny LM, its batches, a graph with 8/4/3-bit options and its plan at 4 bits per weight."""
    model = tiny_llama(hidden=64, intermediate=128, tie=False)
    g = torch.Generator().manual_seed(3)
    batches = [{"input_ids": torch.randint(0, 97, (4, 24), generator=g)} for _ in range(12)]
    graph = build_graph(model, batches[:6], targets="all-linear", curvature="kfac", bits=(8, 4, 3), progress=False)
    return model, batches, graph, solve(graph, parse_budget("4bpw").for_graph(graph), backend="highs", time_limit=60)


def test_straight_through_healing_keeps_the_bytes_and_stores_what_it_trained(bits_plan):
    model, batches, graph, sol = bits_plan
    plan = apply_coloring(model, graph, sol)
    nbytes = stored_memory(plan, "bytes")
    n = unfreeze(plan, graph.module_names)
    assert n == sum(isinstance(m, QuantLinear) for m in apply_coloring(model, graph, sol).modules()) and n > 0
    res = heal(plan, model, batches, graph.module_names, steps=12, lr=1e-4, eval_every=3, progress=False)
    assert res.held_best < res.held_before
    x = batches[0]["input_ids"]
    trained = plan(input_ids=x).logits
    freeze(plan, graph.module_names)
    assert not any(isinstance(m, FakeQuantLinear) for m in plan.modules())
    assert stored_memory(plan, "bytes") == nbytes
    with exact_products():
        assert torch.allclose(plan(input_ids=x).logits, trained, atol=1e-4)



def test_a_plan_in_bits_heals_in_16_bits_then_straight_through_and_keeps_its_bytes(bits_plan):
    model, batches, graph, sol = bits_plan
    want = stored_memory(apply_coloring(model, graph, sol), "bytes")
    healed, phases = heal_in_bits(model, graph, sol, batches, 7, lr=1e-4, eval_every=1, progress=False)
    assert [r.steps for r in phases] == [4, 3]  # half (rounded) in 16 bits, the rest straight through
    assert stored_memory(healed, "bytes") == want
    assert not any(isinstance(m, FakeQuantLinear) for m in healed.modules())
    assert all(p.requires_grad for p in model.parameters())  # the teacher is left as it is
    only, (one,) = heal_in_bits(model, graph, sol, batches, 3, float_share=0.0, lr=1e-4, progress=False)
    assert one.steps == 3 and stored_memory(only, "bytes") == want
    plan = apply_coloring(model, graph, sol)
    unhealed = held_back_loss(plan, model, batches)
    healed, _ = heal_in_bits(model, graph, sol, batches, 4, plan=plan, lr=1e-2, progress=False)  # a wild rate
    assert held_back_loss(healed, model, batches) <= unhealed + 1e-12  # never ends worse than the plan
    with pytest.raises(ValueError, match="float_share"):
        heal_in_bits(model, graph, sol, batches, 3, float_share=2.0)


@pytest.mark.slow
def test_compress_heals_a_plan_in_bytes_straight_through_and_writes_its_bytes(tiny_lm_folder, tmp_path):
    """``compress --budget 5bpw --heal``: the folder reloads to the healed model, in the bytes the plan counted."""
    from colorshare.compress import compress

    rep = compress(str(tiny_lm_folder), "5bpw", tmp_path / "out", heal=4, heal_lr=1e-4, heal_tokens=4096,
                   curvature="kfac", time_limit=60, echo=lambda *_: None)
    healed = rep["heal"]
    assert healed["steps"] == 4 and healed["held_back_best"] <= healed["held_back_before"]
    assert rep["metric_after_reload"] == pytest.approx(rep["metric_after"], rel=1e-3)
    from colorshare.torch import load_compressed

    loaded = load_compressed(tmp_path / "out")  # compress itself checks the bytes stored against the plan's
    assert any(isinstance(m, QuantLinear) for m in loaded.modules())
    assert not any(isinstance(m, FakeQuantLinear) for m in loaded.modules())
