"""Curvature estimators over calibration batches, one per layer, and the quadratic surrogate they define.

For a perturbation ``D = W' - W`` of a layer's weight (a d_out x d_in matrix; convolutions flattened to
d_out x (d_in * kernel)), each :class:`Curvature` gives ``quad(D) ~ 1/2 vec(D)^T H vec(D)``:

- ``layerwise``: H = I (x) Sigma with Sigma = E[x x^T] of the layer's inputs (forward hooks, float64): the
  GPTQ/OBS proxy; ``quad(D) = 1/2 tr(D Sigma D^T)`` = half the mean squared output error. No loss needed.
- ``fisher``: diagonal empirical Fisher, mean over batches of squared gradients.
- ``hutchinson``: diagonal of the Hessian, ``E[z * Hz]`` with Rademacher z, Hessian-vector products by autograd.
- ``spectrum``: top-k eigenpairs of the layer's Hessian block by Lanczos (scipy's eigsh on Hessian-vector
  products) plus an isotropic rest ``sigma = (tr H - sum lambda) / (d - k)``, trace by Hutchinson.
- ``trace``: ``H ~ (tr H / d) I`` (HAWQ-style), trace by Hutchinson.
- ``probed`` (the default): ``kfac`` below, each layer's scale then multiplied by measured / predicted loss of one
  probe cut of that layer (:mod:`colorshare.torch.probe`, applied by ``build_graph``; ``estimate`` returns the
  ``kfac`` statistics for it).
- ``kfac``: K-FAC with both factors, reduced to what a sharing cost needs. The input factor is
  ``layerwise``'s ``Sigma = E[x x^T]``; the output factor ``G = E[g g^T]`` of the gradients at the layer's
  output is gathered in the same pass and enters as its per-layer scale ``h = tr G / d_out`` (its diagonal
  is kept as ``out_diag``). ``quad(D) = h/2 tr(D Sigma D^T)``. Without a ``loss_fn`` the gradients are those
  of the sampled self-distillation Fisher (:func:`colorshare.torch.stats.sampled_fisher_loss`), positive
  semi-definite by construction and needing no labels; with one, the empirical Fisher of that loss. Layers
  the loss never reaches are left out with a warning. Returned with kind ``layerwise`` and ``scale = h``.

Negative curvature (possible away from a minimum, or by sampling noise) is clipped to 0 with a warning.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .. import defaults
from .batches import forward
from .stats import layer_statistics, sampled_fisher_loss
from .targets import is_transposed, weight_matrix, weight_of

__all__ = ["Curvature", "estimate", "CURVATURES", "matrix_of", "DEFAULT_CURVATURE", "KRONECKER"]

CURVATURES = ("probed", "kfac", "layerwise", "fisher", "hutchinson", "spectrum", "trace")
DEFAULT_CURVATURE = defaults.CURVATURE


def matrix_of(weight: torch.Tensor) -> torch.Tensor:
    """A weight as a d_out x d_in matrix (convolution kernels flattened)."""
    return weight.reshape(weight.shape[0], -1)


KRONECKER = "kronecker"
"""The form ``H = h (I x Sigma)`` (an output level h times the input covariance): what the ``kfac``, ``layerwise``
and ``probed`` estimators give, and what exact spectra of shared bases and input factors need."""


@dataclass
class Curvature:
    """One layer's curvature estimate. ``kind`` is its form, not the estimator that made it: ``"kronecker"``
    (:data:`KRONECKER`), a diagonal (``"fisher"``, ``"hutchinson"``), ``"spectrum"`` or ``"trace"``."""

    kind: str
    sigma_in: torch.Tensor | None = None  # kronecker: d_in x d_in E[x x^T] on the layer's device (COVARIANCE_DTYPE)
    scale: float = 1.0  # kronecker: output factor tr(G) / d_out (kfac, probed); 1 for plain layerwise
    out_diag: torch.Tensor | None = None  # kfac: diagonal of G (d_out), kept for inspection
    diag: torch.Tensor | None = None  # fisher / hutchinson: d_out x d_in
    scalar: float | None = None  # trace: tr H / d
    vecs: torch.Tensor | None = None  # spectrum: d x k
    vals: torch.Tensor | None = None  # spectrum: k
    rest: float | None = None  # spectrum: isotropic rest

    def _input(self) -> torch.Tensor:
        if self.sigma_in is None:
            raise ValueError(f"a {self.kind} curvature has no input covariance")
        return self.sigma_in

    def _spectrum(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        if self.vecs is None or self.vals is None or self.rest is None:
            raise ValueError(f"a {self.kind} curvature has no spectrum")
        return self.vecs, self.vals, self.rest

    def _scalar(self) -> float:
        if self.scalar is None:
            raise ValueError(f"a {self.kind} curvature has no scalar level")
        return self.scalar

    def covariance(self, device: torch.device | None = None) -> torch.Tensor:
        """The input covariance ``sigma_in`` in float64 on ``device`` (default: its own; a transient copy where it
        is stored in a narrower dtype)."""
        s = self._input()
        return s.to(device=device or s.device, dtype=torch.float64)

    def quad(self, D: torch.Tensor) -> float:
        """``1/2 vec(D)^T H vec(D)`` for a d_out x d_in perturbation (float64)."""
        D = D.to(torch.float64)
        if self.kind == KRONECKER:
            D = D.to(self._input().device)
            return 0.5 * self.scale * float(torch.einsum("ij,jk,ik->", D, self.covariance(), D))
        if self.diag is not None:
            return 0.5 * float((self.diag * D * D).sum())
        if self.kind == "trace":
            return 0.5 * self._scalar() * float((D * D).sum())
        vecs, vals, rest = self._spectrum()
        d = D.reshape(-1)
        proj = vecs.T @ d
        return 0.5 * float((vals * proj**2).sum() + rest * (d @ d - proj @ proj))

    def weight_scale(self) -> torch.Tensor | float:
        """The per-element weights of a curvature-weighted mean (tie): Sigma's role is handled separately."""
        if self.diag is not None:
            return self.diag
        if self.kind == "trace":
            return float(self._scalar())
        if self.kind == "spectrum":
            vecs, vals, rest = self._spectrum()
            d = vecs.shape[0]
            return float(vals.sum() + rest * (d - len(vals))) / d
        raise ValueError(self.kind)


def _clip(t: torch.Tensor, what: str) -> torch.Tensor:
    if (t < 0).any():
        warnings.warn(f"{what}: {int((t < 0).sum())} negative curvature value(s) clipped to 0", RuntimeWarning,
                      stacklevel=3)
        t = t.clamp(min=0)
    return t


def _layerwise(model: nn.Module, modules: dict[str, nn.Module], batches: Iterable[Any], bar: Any,
               fisher_loss: Callable | None = None, on_batch: Callable[[int], None] | None = None
               ) -> dict[str, Curvature]:
    st = layer_statistics(model, modules, batches, bar, fisher_loss, on_batch)
    out = {}
    for n in modules:
        if st.out_sq is None:
            out[n] = Curvature(KRONECKER, sigma_in=st.sigma[n])
        elif n in st.out_sq:
            g = st.out_sq[n]
            out[n] = Curvature(KRONECKER, sigma_in=st.sigma[n], scale=float(g.mean()), out_diag=g)
    return out


def _loss(model: nn.Module, batch: Any, loss_fn: Callable | None) -> torch.Tensor:
    if loss_fn is None:
        raise ValueError("this curvature estimator needs loss_fn(output, batch) -> scalar tensor")
    loss = loss_fn(forward(model, batch), batch)
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        raise ValueError("loss_fn must return a scalar tensor")
    return loss


def _fisher(model, modules, batches, loss_fn, bar) -> dict:
    params = [weight_of(m) for m in modules.values()]
    acc = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    nb = 0
    for batch in bar(batches):
        grads = torch.autograd.grad(_loss(model, batch, loss_fn), params, allow_unused=True)
        for a, g in zip(acc, grads):
            if g is not None:
                a += g.detach().to(torch.float64) ** 2
        nb += 1
    if nb == 0:
        raise ValueError("no calibration batches")
    return {n: Curvature("fisher", diag=weight_matrix(modules[n], a / nb)) for n, a in zip(modules, acc)}


def _hvp(model, batch, loss_fn, params: Sequence[torch.Tensor], vs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    # fused attention kernels (flash / memory-efficient SDPA) have no double backward: use the math one
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel(SDPBackend.MATH):
        loss = _loss(model, batch, loss_fn)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    dot = functools.reduce(torch.add, [(g * v).sum() for g, v in zip(grads, vs)])
    hv = torch.autograd.grad(dot, params, allow_unused=True)
    return [torch.zeros_like(p) if h is None else h.detach() for p, h in zip(params, hv)]


def _hutchinson_diag(model, modules, batches, loss_fn, probes, gen, bar) -> list[torch.Tensor]:
    params = [weight_of(m) for m in modules.values()]
    acc = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    count = 0
    for batch in bar(batches):
        for _ in range(probes):
            zs = [(torch.randint(0, 2, p.shape, generator=gen) * 2 - 1).to(device=p.device, dtype=p.dtype)
                  for p in params]
            hz = _hvp(model, batch, loss_fn, params, zs)
            for a, z, h in zip(acc, zs, hz):
                a += (z * h).to(torch.float64)
            count += 1
    if count == 0:
        raise ValueError("no calibration batches")
    return [a / count for a in acc]


def _spectrum(model, modules, batches, loss_fn, k, probes, gen, bar) -> dict:
    from scipy.sparse.linalg import LinearOperator, eigsh

    batches = list(batches)
    flipped = [n for n, m in modules.items() if is_transposed(m)]
    if flipped:
        raise ValueError(f"curvature 'spectrum' does not handle transposed (Conv1D) layers: {', '.join(flipped[:4])}; "
                         "use kfac, probed or layerwise")
    diags = _hutchinson_diag(model, modules, batches, loss_fn, probes, gen, bar)
    params = [weight_of(m) for m in modules.values()]
    out = {}
    pairs = list(zip(modules, params))
    for idx, (name, p) in enumerate(tqdm(pairs, desc="lanczos", leave=False, disable=bar is _quiet)):
        d = p.numel()
        kk = min(k, d - 1)

        def matvec(v: np.ndarray, idx: int = idx, p: torch.Tensor = p) -> np.ndarray:
            vs = [torch.zeros_like(q) for q in params]
            vs[idx] = torch.as_tensor(np.asarray(v).reshape(p.shape), dtype=p.dtype)
            tot = torch.zeros_like(p, dtype=torch.float64)
            for batch in batches:
                tot += _hvp(model, batch, loss_fn, params, vs)[idx].to(torch.float64)
            return (tot / len(batches)).reshape(-1).numpy()

        op = LinearOperator((d, d), matvec=matvec, dtype=np.float64)
        vals, vecs = eigsh(op, k=kk, which="LA", tol=1e-6, v0=np.ones(d) / np.sqrt(d))
        vals_t = _clip(torch.as_tensor(vals), f"{name} eigenvalues")
        tr = float(diags[idx].sum())
        rest = max(0.0, (tr - float(vals_t.sum())) / max(1, d - kk))
        out[name] = Curvature("spectrum", vecs=torch.as_tensor(vecs), vals=vals_t, rest=rest)
    return out


def batch_seed(seed: int, index: int) -> int:
    """The seed of the sampled Fisher labels of calibration batch ``index`` under ``seed``."""
    return (seed + 1) * 1_000_003 + index


def _quiet(it: Iterable) -> Iterable:
    return it


def estimate(
    model: nn.Module,
    modules: dict[str, nn.Module],
    batches: Iterable[Any],
    curvature: str = DEFAULT_CURVATURE,
    loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
    probes: int = 4,
    k: int = 4,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Curvature]:
    """One :class:`Curvature` per module name, estimated over ``batches`` (see the module docstring)."""
    if curvature not in CURVATURES:
        raise ValueError(f"unknown curvature {curvature!r}; valid: {', '.join(CURVATURES)}")

    def bar(it: Iterable) -> Iterable:
        return tqdm(it, desc=f"curvature ({curvature})", leave=False) if progress else it

    gen = torch.Generator().manual_seed(seed)
    reseed = None
    if loss_fn is None and curvature != "layerwise":
        sample_gen = torch.Generator().manual_seed(seed + 1)

        def loss_fn(output: Any, batch: Any) -> torch.Tensor:  # self-distillation, Fisher form (sampled labels)
            return sampled_fisher_loss(output, batch, sample_gen)

        def reseed(index: int) -> None:  # a batch's labels depend on its index only (not on the process)
            sample_gen.manual_seed(batch_seed(seed, index))
    from .distributed import world

    if world()[1] > 1 and curvature not in ("layerwise", "kfac", "probed"):
        raise ValueError(f"curvature {curvature!r} does not run data-parallel; under torchrun use kfac, probed or "
                         "layerwise")
    was_training = model.training
    model.eval()
    try:
        if curvature == "layerwise":
            return _layerwise(model, modules, batches, bar)
        if curvature in ("kfac", "probed"):
            return _layerwise(model, modules, batches, bar, loss_fn, reseed)
        if curvature == "fisher":
            return _fisher(model, modules, batches, loss_fn, bar)
        if curvature == "spectrum":
            return _spectrum(model, modules, batches, loss_fn, k, probes, gen, bar if progress else _quiet)
        diags = _hutchinson_diag(model, modules, batches, loss_fn, probes, gen, bar)
        if curvature == "hutchinson":
            return {n: Curvature("hutchinson", diag=_clip(weight_matrix(modules[n], d), f"{n} Hessian diagonal"))
                    for n, d in zip(modules, diags)}
        out = {}
        for n, d in zip(modules, diags):
            t = float(d.sum()) / d.numel()
            if t < 0:
                warnings.warn(f"{n}: negative Hessian trace estimate clipped to 0", RuntimeWarning, stacklevel=2)
                t = 0.0
            out[n] = Curvature("trace", scalar=t)
        return out
    finally:
        model.train(was_training)
