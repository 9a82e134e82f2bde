"""The probed K-FAC surrogate (the default): each layer's level fitted to one measured probe cut."""

from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from colorshare import solve  # noqa: E402
from colorshare.torch import apply_coloring, build_graph  # noqa: E402
from colorshare.torch.probe import output_divergence  # noqa: E402

T, D = 8, 8


class Pool(nn.Module):
    """``a`` sees T positions that are averaged before the output, ``b`` one: K-FAC counts ``a``'s output gradient
    per position (each 1/T of the sequence's), so it underprices ``a`` against ``b``."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(D, D, bias=False), nn.Linear(D, D, bias=False)
        self.c = nn.Linear(D, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(torch.tanh(self.a(x[:, :-1]).mean(1) + self.b(x[:, -1])))


def _setup():
    torch.manual_seed(0)
    model = Pool()
    xs = []
    for _ in range(4):
        x = torch.empty(256, T + 1, D)
        x[:, :T] = torch.randn(256, 1, D)
        x[:, T] = 0.7 * torch.randn(256, D)
        xs.append(x)
    return model, xs


def _kl(dense: nn.Module, other: nn.Module, xs: list) -> float:
    with torch.no_grad():
        return sum(float(nn.functional.kl_div(torch.log_softmax(other(x), -1), torch.log_softmax(dense(x), -1),
                                              log_target=True, reduction="batchmean")) for x in xs) / len(xs)


def _graph(model, xs, curvature, **kw):
    return build_graph(model, xs, targets=["a", "b"], curvature=curvature, actions=("basis", "dense"), ranks=[3],
                       trust_region=None, progress=False, probe_batches=4, probe_fraction=3 / 8, **kw)


def test_probing_changes_the_answer_to_the_truly_cheaper_cut():
    """Budget for one rank-3 cut: kfac cuts ``a`` (underpriced), probed cuts ``b``, and the measured KL of probed's
    model is lower. The probe cut is the menu's option here, so probed's objective IS the measured KL."""
    model, xs = _setup()
    chosen = {}
    for cur in ("kfac", "probed"):
        g = _graph(model, xs, cur)
        sol = solve(g, D * D + 3 * 2 * D)
        cut = [c.members for c in sol.classes if c.action == "basis"]
        kl = _kl(model, apply_coloring(model, g, sol), xs)
        chosen[cur] = (cut, kl, sol.objective, g)
    assert chosen["kfac"][0] == [(0,)] and chosen["probed"][0] == [(1,)]
    assert chosen["probed"][1] < 0.6 * chosen["kfac"][1]
    assert chosen["probed"][2] == pytest.approx(chosen["probed"][1], rel=1e-5)
    ratios = chosen["probed"][3].probe_ratios
    assert ratios[0] > 10 * ratios[1]  # a was underpriced by K-FAC against b


def test_probes_restore_every_weight_exactly():
    model, xs = _setup()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _graph(model, xs, "probed")
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_output_divergence_kl_with_mask_and_pooled_cosine():
    torch.manual_seed(1)
    ref_logits, logits = torch.randn(2, 3, 7), torch.randn(2, 3, 7)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    ref = torch.log_softmax(ref_logits, -1)
    kl = (ref.exp() * (ref - torch.log_softmax(logits, -1))).sum(-1)
    expected = float(kl[mask.bool()].mean())
    got = output_divergence(SimpleNamespace(logits=logits), {"attention_mask": mask}, ref)
    assert got == pytest.approx(expected, rel=1e-6)
    h0, h1 = torch.randn(4, 5, 6), torch.randn(4, 5, 6)
    e0, e1 = nn.functional.normalize(h0.mean(1), dim=-1), nn.functional.normalize(h1.mean(1), dim=-1)
    got = output_divergence(SimpleNamespace(last_hidden_state=h1), None, e0)
    assert got == pytest.approx(float(1 - (e0 * e1).sum(-1).mean()), rel=1e-6)


def test_bad_probe_options_are_named():
    model, xs = _setup()
    with pytest.raises(ValueError, match="probe_batches"):
        build_graph(model, xs, targets=["a", "b"], probe_batches=0, progress=False)
    with pytest.raises(ValueError, match="probe_fraction"):
        build_graph(model, xs, targets=["a", "b"], probe_fraction=1.0, progress=False)
    with pytest.raises(ValueError, match="probe_tokens"):
        build_graph(model, xs, targets=["a", "b"], probe_tokens=0, progress=False)


def test_rescale_multiplies_each_scale_and_refuses_a_ratio_per_layer_it_cannot_use():
    model, xs = _setup()
    g = build_graph(model, xs, targets=["a", "b"], curvature="kfac", progress=False)
    before = [c.scale for c in g.curvatures]
    energy = [g.energy(0), g.energy(1)]  # cached: kept and scaled, not recomputed
    assert min(energy) > 0
    g.rescale([2.0, 0.5])
    assert [c.scale for c in g.curvatures] == pytest.approx([2.0 * before[0], 0.5 * before[1]])
    assert [g.energy(0), g.energy(1)] == pytest.approx([2.0 * energy[0], 0.5 * energy[1]])
    for bad in ([1.0], [1.0, 0.0], [1.0, float("nan")], [1.0, -2.0], np.ones((2, 1))):
        with pytest.raises(ValueError, match="one finite positive ratio per layer"):
            g.rescale(bad)
    assert [c.scale for c in g.curvatures] == pytest.approx([2.0 * before[0], 0.5 * before[1]])  # untouched


def test_first_sequences_take_whole_rows_of_transformers_batches_and_leave_other_batches_alone():
    from colorshare.torch.batches import first_sequences

    bs = [{"input_ids": torch.arange(48).reshape(4, 12) + 100 * k, "attention_mask": torch.ones(4, 12)}
          for k in range(2)]
    one = first_sequences(bs, 20)  # 2 sequences of 12 hold 20 tokens
    assert len(one) == 1 and one[0]["input_ids"].tolist() == bs[0]["input_ids"][:2].tolist()
    assert one[0]["attention_mask"].shape == (2, 12)
    five = first_sequences(bs, 60)
    assert [b["input_ids"].shape[0] for b in five] == [4, 1] and five[0] is bs[0]
    assert first_sequences(bs, 1)[0]["input_ids"].shape == (1, 12)  # at least one sequence
    assert first_sequences(bs, None) == bs and first_sequences(bs, 10**6) == bs
    xs = [torch.randn(4, 12)]
    assert first_sequences(xs, 5) == xs  # not a transformers batch: whole


@pytest.mark.filterwarnings("ignore:.*median ratio:RuntimeWarning")
def test_probes_on_fewer_tokens_run_on_the_first_sequences_and_the_graph_keeps_them():
    pytest.importorskip("transformers")
    from conftest import tiny_llama

    from colorshare.torch.batches import first_sequences
    from colorshare.torch.probe import probe_scales
    from colorshare.torch.targets import select_modules

    model = tiny_llama(intermediate=48, heads=2, kv_heads=1, vocab=61, tie=False)
    gen = torch.Generator().manual_seed(1)
    batches = [{"input_ids": torch.randint(0, 61, (2, 24), generator=gen)} for _ in range(3)]
    g = build_graph(model, batches, targets=[r".*_proj"], probe_batches=2, probe_tokens=72, progress=False)
    assert [b["input_ids"].shape for b in g.probe_set] == [(2, 24), (1, 24)]
    kfac = build_graph(model, batches, targets=[r".*_proj"], curvature="kfac", progress=False)
    mods = select_modules(model, [r".*_proj"])
    again = probe_scales(kfac, mods, model, first_sequences(batches[:2], 72), progress=False)
    whole = probe_scales(kfac, mods, model, batches[:2], progress=False)
    assert again == pytest.approx(g.probe_ratios, rel=1e-9)
    assert not whole == pytest.approx(again, rel=1e-3)  # 3 of the 4 sequences are not all 4


def test_with_trust_region_reuses_the_statistics():
    """The bench prices colorings without the trust region on the very graph it solved with one."""
    model, xs = _setup()
    g = build_graph(model, xs, targets=["a", "b"], curvature="kfac", ranks=[1, 2, 3, 4, 5, 6, 7],
                    trust_region=0.05, progress=False)
    free = g.with_trust_region(None)
    assert free.curvatures is g.curvatures and free.trust_region is None and g.trust_region == 0.05
    tight = {o.params["rank"]: o.cost for o in g.options((0,)) if o.action == "basis"}
    loose = {o.params["rank"]: o.cost for o in free.options((0,)) if o.action == "basis"}
    assert set(tight) < set(loose)
    assert all(loose[r] == pytest.approx(c) for r, c in tight.items())
    with pytest.raises(ValueError, match="trust_region"):
        g.with_trust_region(2.0)


def test_a_divergence_below_float32_resolution_is_zero_never_negative():
    """A class that barely changes the logits must not measure a negative KL (the loop would refuse it)."""
    gen = torch.Generator().manual_seed(0)
    got = []
    for _ in range(50):
        z = 20 * torch.randn(2, 16, 97, generator=gen)
        ref = torch.log_softmax(z, -1)
        out = SimpleNamespace(logits=z + 1e-6 * torch.randn(z.shape, generator=gen))
        got.append(output_divergence(out, {"input_ids": torch.zeros(2, 16, dtype=torch.long)}, ref))
    assert min(got) >= 0.0
    same = output_divergence(SimpleNamespace(logits=z), None, ref)
    assert same == 0.0
