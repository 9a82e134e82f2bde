"""Models spread over devices by accelerate (``device_map`` / ``dispatch_model``): statistics on each layer's own
device, shared factors kept on a class's first member's device and following the input, ties and medoids only
within one device, offloaded (meta) weights refused by name. On the CPU: accelerate's hooks in place (the code
path of a dispatched model) and the refusals; with CUDA: blocks on cuda:0 and the CPU."""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
accelerate = pytest.importorskip("accelerate")

from conftest import tiny_llama  # noqa: E402

from colorshare import solve  # noqa: E402
from colorshare.torch import apply_coloring, build_graph, load_compressed, save_compressed  # noqa: E402

VOCAB = 61


def _lm(layers=2):
    return tiny_llama(layers=layers, vocab=VOCAB, tie=False)


def _batches(device="cpu"):
    g = torch.Generator().manual_seed(1)
    return [{"input_ids": torch.randint(0, VOCAB, (2, 12), generator=g).to(device)} for _ in range(3)]


def _plan(sol):
    return sorted((c.members, c.action, c.memory) for c in sol.classes)


def _compress(model, batches, **kw):
    g = build_graph(model, batches, targets=[r".*_proj"], curvature="kfac", progress=False, **kw)
    sol = solve(g, 0.5 * g.dense_size, backend="highs", time_limit=60)
    return g, sol


def test_a_model_dispatched_with_accelerate_hooks_compresses_as_the_plain_model(tmp_path):
    """``dispatch_model(force_hooks=True)`` puts accelerate's AlignDevicesHook on every block, as a device_map
    does: the statistics, plan, compressed logits and the written folder equal the plain model's."""
    from accelerate import dispatch_model

    plain = _lm(layers=3)
    batches = _batches()
    g0, s0 = _compress(plain, batches, cross_layer=True)
    dm = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.norm": "cpu", "lm_head": "cpu",
          **{f"model.layers.{k}": "cpu" for k in range(3)}}
    hooked = dispatch_model(_lm(layers=3), device_map=dm, force_hooks=True)
    assert hasattr(hooked.model.layers[1], "_hf_hook")
    g1, s1 = _compress(hooked, batches, cross_layer=True)
    assert _plan(s1) == _plan(s0) and any(len(c.members) > 1 for c in s1.classes)
    for a, b in zip(g0.curvatures, g1.curvatures):
        assert torch.allclose(a.sigma_in, b.sigma_in, rtol=1e-12, atol=1e-14)
    c0, c1 = apply_coloring(plain, g0, s0), apply_coloring(hooked, g1, s1)
    x = batches[0]["input_ids"]
    with torch.no_grad():
        ref = c0(input_ids=x).logits
        assert torch.allclose(c1(input_ids=x).logits, ref, atol=1e-5)
    save_compressed(c1, tmp_path / "out", dtype="float32")
    with torch.no_grad():
        assert torch.allclose(load_compressed(tmp_path / "out")(input_ids=x).logits, ref, atol=1e-5)


def test_offloaded_weights_are_refused_naming_the_layer():
    """A weight accelerate keeps on the meta device (offloaded to cpu/disk beside a GPU) cannot be measured."""
    model = _lm()
    with torch.no_grad():
        model.model.layers[1].mlp.down_proj.weight = torch.nn.Parameter(torch.empty(32, 64, device="meta"))
    with pytest.raises(ValueError, match=r"model\.layers\.1\.mlp\.down_proj.*meta device"):
        build_graph(model, _batches(), targets=[r".*_proj"], curvature="kfac", progress=False)


def test_a_tie_across_devices_is_refused_before_the_model_changes():
    """apply_coloring checks every class's placement first: a tie whose members sit on two devices (here one of
    them moved to the meta device after the solve) is a ValueError naming the class and the devices."""
    model = _lm()
    g = build_graph(model, _batches(), targets=[r".*_proj"], curvature="kfac", actions=("tie",), progress=False,
                    trust_region=None, cross_layer=True)
    sol = solve(g, 0.5 * g.dense_size, backend="highs", time_limit=60)
    tie = next(c for c in sol.classes if c.action == "tie")
    name = g.module_names[tie.members[1]]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mod = model.get_submodule(name)
    mod.weight = torch.nn.Parameter(torch.empty_like(mod.weight, device="meta"))
    with pytest.raises(ValueError, match=r"cannot place a tie class across devices.*meta"):
        apply_coloring(model, g, sol, inplace=True)
    for k, v in model.state_dict().items():
        if not v.is_meta:
            assert torch.equal(v, before[k]), k


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: blocks on cuda:0 and the CPU")
def test_blocks_on_cuda_and_cpu_compress_end_to_end(tmp_path):
    """Block 0 on cuda:0, block 1 (and the head) on the CPU, each with accelerate's hook moving its inputs:
    cross-layer classes between the blocks are bases (the shared factor on cuda:0 follows the input to the CPU),
    never ties; the compressed model runs and matches the same plan applied on one device."""
    from accelerate.hooks import AlignDevicesHook, add_hook_to_module

    model = _lm()
    model.model.embed_tokens.to("cuda:0")
    model.model.layers[0].to("cuda:0")
    add_hook_to_module(model.model.layers[0], AlignDevicesHook(execution_device="cuda:0"))
    for m in (model.model.layers[1], model.model.norm, model.lm_head, model.model.rotary_emb):
        add_hook_to_module(m, AlignDevicesHook(execution_device="cpu"))
    batches = _batches("cuda:0")
    g, sol = _compress(model, batches, cross_layer=True, actions=("tie", "basis", "input"), trust_region=None)
    for c in sol.classes:
        if len(c.members) > 1 and c.action in ("tie", "medoid"):
            assert not g.spans_devices(c.members)
    spans = [c for c in sol.classes if len(c.members) > 1 and g.spans_devices(c.members)]
    shared = apply_coloring(model, g, sol)
    one = _lm()
    g1, _ = _compress(one, [{k: v.cpu() for k, v in b.items()} for b in batches], cross_layer=True,
                      actions=("tie", "basis", "input"), trust_region=None)
    ref = apply_coloring(one, g1, sol)
    x = batches[0]["input_ids"]
    with torch.no_grad():
        assert torch.allclose(shared(input_ids=x).logits.cpu(), ref(input_ids=x.cpu()).logits, atol=1e-3)
    save_compressed(shared, tmp_path / "out", dtype="float32")
    assert load_compressed(tmp_path / "out") is not None
    # a class across the two devices is a shared basis, never one weight tensor for both
    assert all(c.action == "basis" for c in spans)
    q = [g.module_names.index(f"model.layers.{b}.self_attn.q_proj") for b in (0, 1)]
    assert g.spans_devices(q)
    offered = {o.action for o in g.options(tuple(q))}
    assert "basis" in offered and not offered & {"tie", "medoid"}


@pytest.mark.slow
def test_compress_device_auto_loads_with_accelerates_device_map(tiny_lm_folder, tmp_path):
    """``--device auto``: the folder is loaded with ``device_map="auto"`` (here every block on the CPU, the only
    device), compressed, written and reloaded onto the model's input device."""
    import json

    from colorshare.cli import main

    out = tmp_path / "auto"
    assert main(["compress", str(tiny_lm_folder), "--budget", "50%", "--out", str(out), "--device", "auto",
                 "--time-limit", "60"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["solution"]["status"] == "optimal"
    assert report["metric_after_reload"]["perplexity"] == pytest.approx(report["metric_after"]["perplexity"], rel=0.02)
