"""Bit-widths as a decision: quantized storage (codes, scales, bytes), GPTQ against round-to-nearest, the packed
layer and its kernels, budgets in bytes, and the plan's bytes equal to what the model and its folder store."""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colorshare.formulations.budget import parse_budget

torch = pytest.importorskip("torch")

from colorshare import solve  # noqa: E402
from colorshare.torch import (  # noqa: E402
    QuantLinear,
    apply_coloring,
    build_graph,
    load_shared,
    save_shared,
    stored_memory,
)
from colorshare.torch.models import planted_stack  # noqa: E402
from colorshare.torch.quant import (  # noqa: E402
    exact_products,
    gptq,
    group_size,
    pack,
    packed_bytes,
    rtn,
    stored_bytes,
    unpack,
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(bits=st.sampled_from([8, 4, 3, 2]), rows=st.integers(1, 9), cols=st.integers(1, 70), seed=st.integers(0, 99))
def test_codes_pack_and_unpack_exactly(bits, rows, cols, seed):
    g = torch.Generator().manual_seed(seed)
    lo, hi = (-127, 128) if bits == 8 else (0, 2**bits)
    codes = torch.randint(lo, hi, (rows, cols), generator=g).to(torch.int16)
    packed = pack(codes, bits)
    assert packed.numel() == packed_bytes(rows * cols, bits) <= math.ceil(rows * cols * bits / 8) + 2
    assert torch.equal(unpack(packed, bits, (rows, cols)), codes)


def test_bytes_count_codes_scales_and_zero_points():
    assert stored_bytes(1536, 576, 16) == 2 * 1536 * 576
    assert 8 * stored_bytes(1536, 576, 4) / (1536 * 576) == pytest.approx(4.5)  # groups of 64: 4 + 32/64
    assert 8 * stored_bytes(1536, 576, 3) / (1536 * 576) == pytest.approx(3.5)
    assert stored_bytes(1536, 576, 8) == 1536 * 576 + 2 * 1536  # one float16 scale per row
    assert group_size(576, 4) == 64 and group_size(96, 4) == 32 and group_size(50, 4) == 50


@pytest.mark.parametrize("bits", [8, 4, 3, 2])
def test_gptq_beats_rounding_in_the_layers_own_metric(bits):
    g = torch.Generator().manual_seed(bits)
    W = torch.randn(96, 128, generator=g, dtype=torch.float64)
    X = torch.randn(2048, 128, generator=g, dtype=torch.float64) @ torch.randn(128, 128, generator=g,
                                                                               dtype=torch.float64)
    H = X.T @ X / len(X)

    def err(q):
        E = q.dequantize(torch.float64) - W
        return float(torch.trace(E @ H @ E.T))

    assert err(gptq(W, H, bits)) < 0.8 * err(rtn(W, bits))


@pytest.mark.parametrize("actorder", [True, False])
@pytest.mark.parametrize("bits", [8, 4, 3])
def test_gptq_under_uncorrelated_inputs_is_rounding_in_any_order(bits, actorder):
    # no correlation between inputs: no error to feed forward, so GPTQ's codes are rounding's wherever the
    # columns are taken in (act-order permutes them by the diagonal and must put every code back in place)
    g = torch.Generator().manual_seed(bits)
    W = torch.randn(24, 128, generator=g, dtype=torch.float64)
    H = torch.diag(torch.rand(128, generator=g, dtype=torch.float64) + 0.1)
    q, r = gptq(W, H, bits, actorder=actorder), rtn(W, bits)
    assert torch.equal(q.codes, r.codes) and torch.equal(q.scales, r.scales)


def test_gptq_sets_the_weights_of_dead_inputs_to_zero():
    W = torch.randn(16, 64, dtype=torch.float64)
    H = torch.eye(64, dtype=torch.float64)
    H[5, 5] = 0.0
    q = gptq(W, H, 4)
    assert torch.allclose(q.dequantize(torch.float64)[:, 5], torch.zeros(16, dtype=torch.float64), atol=1e-3)


@pytest.mark.parametrize("bits", [8, 4, 3, 2])
def test_the_packed_layer_runs_on_the_kernels_and_keeps_its_codes(bits):
    torch.manual_seed(0)
    W, b = torch.randn(64, 128), torch.nn.Parameter(torch.randn(64))
    q = rtn(W, bits)
    layer = QuantLinear.from_quantized(q, b)
    x = torch.randn(3, 5, 128)
    with exact_products():
        exact = layer(x)
    assert torch.allclose(exact, x @ q.dequantize(torch.float32).T + b, atol=1e-4)
    with torch.no_grad():
        fast = layer(x)  # bfloat16 kernels: the codes' layout changes, the state dict still gives them as stored
    assert float((fast - exact).norm() / exact.norm()) < 2e-2
    again = QuantLinear(128, 64, bits, q.spec.group, torch.nn.Parameter(torch.zeros(64)))
    again.load_state_dict(layer.state_dict())
    assert torch.equal(again.quantized().codes, q.codes)
    assert layer.stored_bytes() == stored_bytes(64, 128, bits)


@pytest.mark.parametrize("bits,cols", [(8, 8), (8, 24), (8, 100), (8, 32), (4, 24), (2, 40)])
def test_a_packed_layer_with_inputs_the_kernels_do_not_take_runs_dequantized(bits, cols):
    """torch's CPU int8 kernel crashes the process on 8, 24 or 100 inputs (a low-rank factor's rank): such a
    layer multiplies its dequantized weight instead, and agrees with the exact product."""
    torch.manual_seed(1)
    q = rtn(torch.randn(48, cols), bits)
    layer = QuantLinear.from_quantized(q, None)
    x = torch.randn(7, cols)
    with exact_products():
        exact = layer(x)
    with torch.no_grad():
        fast = layer(x)
    assert float((fast - exact).norm() / exact.norm()) < 2e-2


def test_budgets_name_their_unit():
    assert parse_budget("50%").unit == "parameters" and parse_budget("1e6").unit == "parameters"
    b = parse_budget("4.5bpw")
    assert b.unit == "bytes" and b.resolve(1000) == pytest.approx(562.5)
    assert parse_budget("60MiB").value == 60 * 2**20 and parse_budget("60MB").value == 60e6
    for bad in ("half", "0%", "-1MB", "infbpw"):
        with pytest.raises(ValueError, match="budget"):
            parse_budget(bad)


@pytest.fixture(scope="module")
def stack():
    model, batches = planted_stack(families=2, layers=4, width=32)
    g = build_graph(model, batches, curvature="kfac", bits=(8, 4, 3, 2), trust_region=None, progress=False)
    return model, batches, g


def test_a_graph_with_bit_widths_counts_bytes_and_prices_each_width(stack):
    _, _, g = stack
    assert g.unit == "bytes" and g.dense_size == 2 * g.dense_parameters and "quantization" in g.preparation
    dense = [o for o in g.options((0,)) if o.action == "dense"]
    by_bits = {(o.params or {}).get("bits", 16): o for o in dense}
    assert set(by_bits) == {16, 8, 4, 3, 2}
    costs = [by_bits[b].cost for b in (16, 8, 4, 3, 2)]
    mems = [by_bits[b].memory for b in (16, 8, 4, 3, 2)]
    assert costs == sorted(costs) and mems == sorted(mems, reverse=True) and costs[0] == 0
    with pytest.raises(ValueError, match="is in bytes, but this graph counts parameters"):
        parse_budget("4bpw").for_graph(build_graph(*stack[:2], curvature="kfac", progress=False))


@pytest.mark.parametrize("bpw", [8.0, 4.5, 3.5])
def test_the_plan_stores_exactly_its_bytes_and_saves_and_loads_packed(stack, bpw, tmp_path):
    model, batches, g = stack
    sol = solve(g, parse_budget(f"{bpw}bpw").for_graph(g), backend="highs", time_limit=60)
    assert sol.status == "optimal" and 8 * sol.memory / g.dense_parameters <= bpw + 1e-9
    shared = apply_coloring(model, g, sol)
    assert stored_memory(shared, "bytes") == stored_memory(model, "bytes") - g.dense_size + sol.memory
    assert any(isinstance(m, QuantLinear) for m in shared.modules())
    path = tmp_path / "q.safetensors"
    save_shared(shared, path)
    back = load_shared(path, planted_stack(families=2, layers=4, width=32)[0])
    x = batches[0]
    with torch.no_grad(), exact_products():
        assert torch.allclose(back(x), shared(x), atol=1e-5)


def test_compress_to_bits_per_weight_writes_a_packed_folder_that_reloads(tiny_lm_folder, tmp_path):
    from colorshare.cli import main

    out = tmp_path / "q"
    assert main(["compress", str(tiny_lm_folder), "--budget", "4.5bpw", "--out", str(out), "--time-limit", "60",
                 "--measure-rounds", "1", "--dtype", "bfloat16"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["unit"] == "bytes" and report["bits_per_weight"] <= 4.5 + 1e-9
    assert report["metric_after_reload"] == pytest.approx(report["metric_after"], rel=1e-4)
    assert any(c.get("bits", 16) < 16 for row in report["families"] for c in row["classes"])
    # the file holds the plan's bytes plus the untouched tensors (bfloat16) and a header
    size = (out / "model.safetensors").stat().st_size
    assert report["model_bytes_after"] <= size <= 1.05 * report["model_bytes_after"] + 64 * 1024


def test_a_layer_as_quantized_factors_costs_what_its_weight_error_costs():
    """lowrank: the tail, the coefficients' and the basis' rounding add up to the surrogate of the whole error
    U_q C_q - W (the cross terms are small), and the layer it builds computes exactly those factors."""
    from colorshare.torch.actions.lowrank import LowRankLinear, lowrank_cost, quantized_factors

    model, batches = planted_stack(families=1, layers=3, width=64, seed=2)
    g = build_graph(model, batches, curvature="kfac", bits=(8, 4), trust_region=None, progress=False)
    for rank, bits in ((16, 8), (32, 8), (32, 4)):
        cost, _ = lowrank_cost(g, 0, rank, bits)
        qU, qC = quantized_factors(g, 0, rank, bits)
        E = qU.dequantize(torch.float64) @ qC.dequantize(torch.float64) - g.weight(0)
        assert cost == pytest.approx(g.curvatures[0].quad(E), rel=0.05)
    opts = [o for o in g.options((0,)) if o.action == "lowrank"]
    assert opts and all(o.params["bits"] in (8, 4) and o.memory < g.sizes[0] for o in opts)
    sol = solve(g, parse_budget("4bpw").for_graph(g), backend="highs", time_limit=60,
                groups=[(i,) for i in range(g.n)], formulation="setpart")
    shared = apply_coloring(model, g, sol)
    assert stored_memory(shared, "bytes") == stored_memory(model, "bytes") - g.dense_size + sol.memory
    low = [c for c in sol.classes if c.action == "lowrank"]
    for c in low:
        layer = shared.get_submodule(g.module_names[c.members[0]])
        assert isinstance(layer, LowRankLinear) and layer.rank == c.params["rank"]
