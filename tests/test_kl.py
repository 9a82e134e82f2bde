"""The chunked next-token KL against the textbook expression: values, gradients, dtypes, chunking."""

import pytest

torch = pytest.importorskip("torch")

from colorshare.torch import kl as klmod  # noqa: E402
from colorshare.torch.kl import row_kl  # noqa: E402


def _textbook(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    lt, ls = torch.log_softmax(t.double(), -1), torch.log_softmax(s.double(), -1)
    return (lt.exp() * (lt - ls)).sum(-1)


@pytest.mark.parametrize("chunk", [7, 30, 1 << 22])  # 11 words: one row a chunk, two (the last one short), all
def test_row_kl_matches_the_textbook_value_and_gradient(monkeypatch, chunk):
    monkeypatch.setattr(klmod, "CHUNK_ELEMENTS", chunk)
    g = torch.Generator().manual_seed(0)
    s = torch.randn(3, 5, 11, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(3, 5, 11, generator=g, dtype=torch.float64)
    out = row_kl(s, t)
    assert out.shape == (3, 5) and out.dtype == torch.float64
    torch.testing.assert_close(out, _textbook(s, t))
    w = torch.randn(3, 5, generator=g, dtype=torch.float64)
    (grad,) = torch.autograd.grad((out * w).sum(), s)
    s2 = s.detach().clone().requires_grad_(True)
    (ref,) = torch.autograd.grad((_textbook(s2, t) * w).sum(), s2)
    torch.testing.assert_close(grad, ref)
    assert torch.autograd.gradcheck(lambda x: row_kl(x, t), (s.detach().clone().requires_grad_(True),))


def test_row_kl_of_low_precision_logits_is_float32_and_its_gradient_keeps_their_dtype():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(4, 9, generator=g).bfloat16().requires_grad_(True)
    t = torch.randn(4, 9, generator=g).bfloat16()
    out = row_kl(s, t)
    assert out.dtype == torch.float32 and (out >= -1e-6).all()
    torch.testing.assert_close(out.double(), _textbook(s.detach().float(), t.float()), rtol=1e-5, atol=1e-6)
    out.sum().backward()
    assert s.grad is not None and s.grad.dtype == torch.bfloat16
    assert float(row_kl(t, t).abs().max()) < 1e-6  # a distribution from itself: 0
    # log-probabilities as the reference give the same divergence as the logits they come from
    torch.testing.assert_close(row_kl(s.detach(), torch.log_softmax(t.float(), -1)), out.detach())


def test_row_kl_names_a_shape_mismatch():
    with pytest.raises(ValueError, match="differ in shape"):
        row_kl(torch.zeros(2, 3), torch.zeros(2, 4))


def test_healing_and_probe_divergences_are_the_textbook_kl_over_unmasked_positions():
    from types import SimpleNamespace

    from colorshare.torch.heal import distillation_loss
    from colorshare.torch.probe import position_kl

    g = torch.Generator().manual_seed(2)
    s = torch.randn(2, 6, 13, generator=g, dtype=torch.float64)
    t = torch.randn(2, 6, 13, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    ref = _textbook(s, t)
    got = distillation_loss(SimpleNamespace(logits=s), SimpleNamespace(logits=t), {"attention_mask": mask})
    torch.testing.assert_close(got, ref[mask.bool()].mean())
    got = distillation_loss(SimpleNamespace(logits=s), SimpleNamespace(logits=t), {})
    torch.testing.assert_close(got, ref.mean())
    torch.testing.assert_close(position_kl(s, torch.log_softmax(t, -1)), ref)
    assert float(position_kl(t, torch.log_softmax(t, -1)).min()) >= 0.0
