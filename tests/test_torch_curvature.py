"""Curvature estimators against the exact Hessian of tiny models."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from colorshare.torch import estimate, select_modules  # noqa: E402


def tiny():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 2)).double()
    x = torch.randn(64, 4, dtype=torch.float64)
    y = torch.randint(0, 2, (64,))
    batches = [(x[i:i + 16], y[i:i + 16]) for i in range(0, 64, 16)]
    return model, batches


def loss_fn(out, batch):
    return nn.functional.cross_entropy(out, batch[1])


def exact_hessian(model, batches, layer):
    w = model[layer].weight

    def f(flat):
        saved = w.data.clone()
        tot = 0
        for b in batches:
            out = torch.func.functional_call(model, {f"{layer}.weight": flat.reshape(w.shape)}, (b[0],))
            tot = tot + loss_fn(out, b)
        w.data.copy_(saved)
        return tot / len(batches)

    return torch.autograd.functional.hessian(f, w.detach().reshape(-1).clone())


def test_layerwise_cost_equals_measured_output_error():
    model, batches = tiny()
    mods = {"2": model[2]}
    curv = estimate(model, mods, batches, "layerwise", progress=False)["2"]
    D = torch.randn(3, 3, dtype=torch.float64) * 0.1
    # measured: half the mean squared change of the layer's output over the calibration inputs
    with torch.no_grad():
        xs = torch.cat([torch.tanh(model[0](b[0])) for b in batches])
    measured = 0.5 * ((xs @ D.T) ** 2).sum(1).mean()
    # float32 products summed into float64 (the GPTQ / SVD-LLM pattern): float32 precision
    assert curv.quad(D) == pytest.approx(float(measured), rel=1e-5)


def test_hutchinson_diagonal_converges_to_exact():
    model, batches = tiny()
    H = exact_hessian(model, batches, 2)
    curv = estimate(model, {"2": model[2]}, batches, "hutchinson", loss_fn, probes=400, progress=False)["2"]
    est = curv.diag.reshape(-1)
    exact = torch.diagonal(H).clamp(min=0)
    assert torch.allclose(est, exact, atol=0.15 * float(exact.abs().max()) + 1e-6)


def test_fisher_is_mean_squared_gradient():
    model, batches = tiny()
    curv = estimate(model, {"4": model[4]}, batches, "fisher", loss_fn, progress=False)["4"]
    ref = torch.zeros_like(model[4].weight)
    for b in batches:
        model.zero_grad()
        loss_fn(model(b[0]), b).backward()
        ref += model[4].weight.grad ** 2
    assert torch.allclose(curv.diag, ref / len(batches))


def test_spectrum_top_eigenvalues_match_eigvalsh():
    model, batches = tiny()
    H = exact_hessian(model, batches, 2)
    curv = estimate(model, {"2": model[2]}, batches, "spectrum", loss_fn, k=3, probes=200, progress=False)["2"]
    top = np.sort(np.linalg.eigvalsh(H.numpy()))[::-1][:3]
    assert np.allclose(np.sort(curv.vals.numpy())[::-1], np.clip(top, 0, None), rtol=1e-4, atol=1e-8)
    # the quadratic form is exact on the top eigenvectors' span
    v = curv.vecs[:, 0]
    assert 2 * curv.quad(v.reshape(3, 3)) == pytest.approx(float(v @ H @ v), rel=1e-4)


def test_trace_estimate_close_to_exact():
    model, batches = tiny()
    H = exact_hessian(model, batches, 4)
    curv = estimate(model, {"4": model[4]}, batches, "trace", loss_fn, probes=300, progress=False)["4"]
    assert curv.scalar == pytest.approx(float(torch.trace(H)) / H.shape[0], rel=0.15)


def test_loss_based_estimators_default_to_the_sampled_fisher_and_name_what_they_need():
    model, batches = tiny()
    fi = estimate(model, {"2": model[2]}, batches, "fisher", progress=False)  # sampled labels, no loss_fn
    assert bool((fi["2"].diag >= 0).all()) and float(fi["2"].diag.sum()) > 0
    with pytest.raises(ValueError, match="unknown curvature"):
        estimate(model, {"2": model[2]}, batches, "magic", progress=False)
    odd = nn.Sequential(nn.Linear(4, 3), nn.Flatten(0))  # a 1-D output: neither logits nor hidden states
    with pytest.raises(ValueError, match="loss_fn"):
        estimate(odd, {"0": odd[0]}, [torch.randn(4, 4)], "kfac", progress=False)


def test_target_patterns():
    model, _ = tiny()
    with pytest.raises(ValueError, match="same-shaped peer"):
        select_modules(model)  # all three Linear layers have different shapes
    assert list(select_modules(model, targets=[r"[24]"])) == ["2", "4"]
    with pytest.raises(ValueError, match="'attn' matches no"):
        select_modules(model, targets=["attn"])
    with pytest.raises(ValueError, match="exclude pattern"):
        select_modules(model, targets=["2"], exclude=["9"])


def test_kfac_output_factor_is_the_fisher_of_self_distillation():
    """Softmax classifier y = W x: the sampled-label output gradient is g = p - e_y, so the Fisher's diagonal is
    E_x[p_c (1 - p_c)] exactly; kfac's input factor is layerwise's E[x x^T] and its scale the mean of that."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3)).double()
    x = torch.randn(8, 4, dtype=torch.float64)
    batches = [x.repeat(500, 1) for _ in range(4)]  # 2000 label samples per input
    mods = {"0": model[0]}
    kf = estimate(model, mods, batches, "kfac", progress=False)["0"]
    lw = estimate(model, mods, batches, "layerwise", progress=False)["0"]
    with torch.no_grad():
        p = torch.softmax(model(x), dim=-1)
    expected = (p * (1 - p)).mean(0)
    assert torch.allclose(kf.out_diag.cpu(), expected, rtol=0.05)
    assert kf.scale == pytest.approx(float(expected.mean()), rel=0.05)
    assert torch.allclose(kf.sigma_in, lw.sigma_in)
    D = torch.randn(3, 4, dtype=torch.float64)
    assert kf.quad(D) == pytest.approx(kf.scale * lw.quad(D), rel=1e-12)
    # positive semi-definite by construction: no clipping, no negative scale, whatever the sample
    assert kf.scale > 0 and bool((kf.out_diag >= 0).all())


def test_layers_that_stop_sharing_an_input_get_their_own_exact_covariance():
    """``a`` and ``b`` read the same tensor in the first batches (one shared accumulator), then different ones:
    each ends with the covariance of the inputs it saw (the follower continues from the leader's sums before the
    batch in which they parted)."""
    from colorshare.torch.stats import COVARIANCE_DTYPE, layer_statistics

    class Fork(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 3), nn.Linear(4, 3)

        def forward(self, x):
            y = x[0]
            return self.a(y) + self.b(y if x[1] is None else x[1])

    torch.manual_seed(0)
    model = Fork()
    xs = [torch.randn(5, 4, dtype=torch.float64).float() for _ in range(4)]
    other = [None, None, torch.randn(5, 4), torch.randn(5, 4)]
    batches = [(x, o) for x, o in zip(xs, other)]
    stats = layer_statistics(model, {"a": model.a, "b": model.b}, [(b,) for b in batches])
    seen_a = torch.cat(xs).double()
    seen_b = torch.cat([x if o is None else o for x, o in zip(xs, other)]).double()
    assert stats.sigma["a"].dtype == stats.sigma["b"].dtype == COVARIANCE_DTYPE
    assert torch.allclose(stats.sigma["a"].double(), seen_a.T @ seen_a / len(seen_a), rtol=1e-6)
    assert torch.allclose(stats.sigma["b"].double(), seen_b.T @ seen_b / len(seen_b), rtol=1e-6)
