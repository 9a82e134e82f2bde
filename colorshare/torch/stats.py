"""Per-layer statistics gathered by hooks on each layer's own device (the GPTQ / SVD-LLM pattern).

- :func:`layer_statistics`: one pass over the calibration batches. Forward hooks accumulate each layer's
  input second moment ``E[x x^T]`` (float32 matmuls summed into float64, on the layer's device, and kept in
  :data:`COVARIANCE_DTYPE` once normalised); layers
  fed the very same input tensor (q/k/v, gate/up) share one accumulator. With ``fisher_loss`` the pass
  also back-propagates a loss to the layers' OUTPUTS only (no parameter gradients are stored) and
  accumulates the mean squared output gradient per output channel: the output factor of K-FAC.
- :func:`sampled_fisher_loss`: the default loss, self-distillation in its Fisher form. The KL divergence to
  the dense model is 0 with zero gradient at the dense weights, so its Hessian there is the Fisher of the
  model's own predictive distribution. Sampling labels from that distribution and back-propagating their
  negative log-likelihood gives gradients g with ``E[g g^T]`` = that Fisher: positive semi-definite by
  construction, no labels needed. Logits (a causal LM's next-token distribution, a classifier's classes)
  are categorical; an encoder's pooled, normalised embedding gets a Gaussian likelihood (Gauss-Newton of the
  embedding MSE).
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from .batches import attention_mask, forward, model_logits, pooled_embedding
from .targets import is_transposed, layer_shape, weight_of

__all__ = ["COVARIANCE_DTYPE", "LayerStats", "layer_statistics", "sampled_fisher_loss", "layer_inputs",
           "NO_DEFAULT_LOSS"]


COVARIANCE_DTYPE = torch.float32
"""The dtype an input covariance is kept in once accumulated. Each batch's ``X^T X`` is a float32 matmul, so
float64 adds nothing to what is kept but the exactness of the sum, while it doubles the largest part of the
statistics (one 5632^2 matrix per TinyLlama down projection: 254 MB in float64). Every computation reads the
covariance in float64 (:meth:`colorshare.torch.curvature.Curvature.covariance`)."""


def layer_inputs(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A layer's input as rows of the vectors its weight multiplies (convolutions unfolded)."""
    x = x.detach()
    if isinstance(module, nn.Linear) or is_transposed(module):
        return x.reshape(-1, x.shape[-1])
    if isinstance(module, (nn.Conv1d, nn.Conv2d)) and isinstance(module.padding, str):
        raise TypeError(f"{type(module).__name__} with padding={module.padding!r} is not supported: give its padding "
                        "in numbers")
    if isinstance(module, nn.Conv2d):
        pad = cast(tuple[int, ...], module.padding)
        cols = torch.nn.functional.unfold(x, module.kernel_size, module.dilation, pad, module.stride)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    if isinstance(module, nn.Conv1d):
        pad1 = cast(tuple[int, ...], module.padding)[0]
        cols = torch.nn.functional.unfold(x.unsqueeze(-1), (module.kernel_size[0], 1), (module.dilation[0], 1),
                                          (pad1, 0), (module.stride[0], 1))
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    raise TypeError(f"unsupported module {type(module).__name__}")


NO_DEFAULT_LOSS = ("the default loss needs logits (output.logits or a 2-D tensor) or an encoder's "
                   "last_hidden_state; pass loss_fn(output, batch) for this model")


def sampled_fisher_loss(output: Any, batch: Any, generator: torch.Generator | None = None) -> torch.Tensor:
    """A loss whose output gradients sample the Fisher of self-distillation to the model's own outputs.

    - ``output.logits`` (causal LM) or a 2-D tensor (classifier): labels drawn from ``softmax(logits)``,
      summed negative log-likelihood over the (unmasked) positions.
    - ``output.last_hidden_state`` (encoder): ``<e, z>`` with ``e`` the mean-pooled, normalised embedding and
      ``z ~ N(0, I)``, so ``E[g g^T] = J^T J``, the Gauss-Newton matrix of the embedding's squared error.
    Scale is common to every layer, so it does not change which coloring is best.
    """
    logits = model_logits(output)
    if logits is not None:
        probs = torch.softmax(logits.detach().float(), dim=-1).reshape(-1, logits.shape[-1])
        # inverse-CDF sampling on the logits' device; only the uniforms come from the (CPU) generator, so a model
        # on CPU or CUDA draws the same labels
        u = torch.rand(probs.shape[0], 1, generator=generator).to(probs.device)
        y = torch.searchsorted(probs.cumsum(-1), u).squeeze(1).clamp(max=probs.shape[1] - 1)
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y, reduction="none")
        mask = attention_mask(batch)
        if mask is not None and mask.numel() == nll.numel():
            nll = nll * mask.reshape(-1).to(nll.dtype)
        return nll.sum()
    e = pooled_embedding(output, batch)
    if e is not None:
        z = torch.randn(e.shape, generator=generator).to(device=e.device, dtype=e.dtype)
        return (e * z).sum()
    raise ValueError(NO_DEFAULT_LOSS)


def _reduce(modules: dict[str, nn.Module], sums: dict[str, torch.Tensor], counts: dict[str, int],
            leader_of: dict[str, str], sq: dict[str, torch.Tensor | None] | None, grad_rows: dict[str, int]) -> None:
    """All-reduce one rank's accumulators in place (sums in float64; the same layers share on every rank)."""
    from . import distributed as dist

    shared = {n: leader_of.get(n, n) for n in modules}
    views = dist.all_gather((shared, sorted(sums)))
    if any(v != views[0] for v in views):
        raise ValueError("the processes saw different layers sharing an input (the model or its batches differ "
                         "between ranks); data-parallel statistics need the same model on every rank")
    for n in sorted(sums):
        sums[n] = dist.all_reduce_sum(sums[n])
    names = list(modules)
    rows = dist.all_reduce_ints([counts[n] for n in names] + [grad_rows[n] for n in names])
    for i, n in enumerate(names):
        counts[n], grad_rows[n] = rows[i], rows[len(names) + i]
    if sq is not None:
        for n in names:
            d_out = layer_shape(modules[n])[0]
            mine = sq[n]
            local = mine if mine is not None else \
                torch.zeros(d_out, dtype=torch.float64, device=weight_of(modules[n]).device)
            total = dist.all_reduce_sum(local)
            sq[n] = total if grad_rows[n] > 0 else None


@dataclass
class LayerStats:
    """Per-layer statistics (tensors on each layer's device; covariances in :data:`COVARIANCE_DTYPE`, the rest
    float64).

    ``sigma[name]``: ``E[x x^T]`` of the layer's inputs (layers fed the same tensor share one object);
    ``out_sq[name]``: mean squared output gradient per output channel (None without a loss);
    ``tokens``: input rows seen per layer; ``unreached``: layers the loss never reached (left out).
    """

    sigma: dict[str, torch.Tensor]
    out_sq: dict[str, torch.Tensor] | None
    tokens: dict[str, int]
    unreached: list[str]


def layer_statistics(
    model: nn.Module,
    modules: dict[str, nn.Module],
    batches: Iterable[Any],
    bar: Callable[[Iterable], Iterable] = lambda it: it,
    fisher_loss: Callable[[Any, Any], torch.Tensor] | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> LayerStats:
    """Gather :class:`LayerStats` in one pass over ``batches`` (see the module docstring). ``on_batch(i)`` is
    called before batch ``i`` (its index in ``batches``; :func:`colorshare.torch.curvature.estimate` seeds the
    sampled labels by it). In a process group (:mod:`colorshare.torch.distributed`) each rank runs its share
    of the batches and the sums are all-reduced: every rank gets the statistics of all of them."""
    from . import distributed as dist

    acc = _Accumulator(modules, fisher_loss is not None)
    handles = [m.register_forward_hook(acc.hook(n)) for n, m in modules.items()]
    flags = {n: weight_of(m).requires_grad for n, m in modules.items()}
    try:
        if fisher_loss is not None:
            for m in modules.values():
                weight_of(m).requires_grad_(True)
        for index, batch in bar(dist.shard(list(enumerate(batches)))):  # in a process group: this rank's batches
            if on_batch is not None:
                on_batch(index)
            acc.new_batch()
            if fisher_loss is None:
                with torch.no_grad():
                    forward(model, batch)
                continue
            out = forward(model, batch)
            acc.output_gradients(fisher_loss(out, batch))
            del out
    finally:
        for h in handles:
            h.remove()
        for n, m in modules.items():
            weight_of(m).requires_grad_(flags[n])
    if dist.world()[1] > 1:
        _reduce(modules, acc.sums, acc.counts, acc.leader_of, acc.sq, acc.grad_rows)
    return acc.result()


class _Accumulator:
    """The sums of one statistics pass: input second moments (layers fed the very same tensor share one
    accumulator: their leader's) and, with a loss, squared output gradients per channel."""

    def __init__(self, modules: dict[str, nn.Module], with_gradients: bool) -> None:
        self.modules = modules
        self.sums: dict[str, torch.Tensor] = {}
        self.counts = dict.fromkeys(modules, 0)
        self.leader_of: dict[str, str] = {}
        self.seen_inputs: dict[tuple, tuple[weakref.ref, str]] = {}
        self.outputs: dict[str, torch.Tensor] = {}
        self.sq: dict[str, torch.Tensor | None] | None = {n: None for n in modules} if with_gradients else None
        self.grad_rows = dict.fromkeys(modules, 0)
        # what an accumulator other layers follow added in the current batch (float32: exactly what was added), so
        # that a follower that stops following can continue from the leader's sums before it; kept for leaders
        # only (a copy of every covariance would double the statistics' memory: 5632^2 per block for TinyLlama)
        self.batch_s: dict[str, torch.Tensor] = {}
        self.followed: set[str] = set()

    def new_batch(self) -> None:
        self.seen_inputs.clear()
        self.batch_s.clear()
        self.outputs.clear()

    def hook(self, name: str) -> Callable:
        def fn(mod: nn.Module, args: tuple, out: Any) -> None:
            self._add_input(name, mod, args[0])
            if self.sq is not None and isinstance(out, torch.Tensor) and out.requires_grad:
                self.outputs[name] = out
        return fn

    def _add_input(self, name: str, mod: nn.Module, x: torch.Tensor) -> None:
        # the same tensor object (not merely the same address: freed memory is reused within a forward)
        key = (x.data_ptr(), tuple(x.shape), tuple(x.stride()), x.dtype, type(mod))
        hit = self.seen_inputs.get(key)
        if hit is None or hit[0]() is not x:
            hit = self.seen_inputs[key] = (weakref.ref(x), name)
        first, sums = hit[1], self.sums
        with torch.no_grad():
            X = layer_inputs(mod, x)
            self.counts[name] += X.shape[0]
            lead = self.leader_of.get(name, first)
            if first != name and lead == first:
                self.leader_of[name] = first  # the same input as `first` again: share its accumulator
                self.followed.add(first)
                return
            if lead != name and name not in sums and lead in sums:
                # followed another layer before, not now: continue from what that layer had
                sums[name] = sums[lead] - self.batch_s.get(lead, 0)
            self.leader_of[name] = name
            Xf = X.float()
            s32 = Xf.T @ Xf
            if name in sums:
                sums[name].add_(s32)  # in place, summed in float64: no second copy of a 5632^2 sum
            else:
                sums[name] = s32.to(torch.float64)
            if name in self.followed:
                self.batch_s[name] = s32

    def output_gradients(self, loss: torch.Tensor) -> None:
        """Back-propagate ``loss`` to the layers' outputs only and add the squared gradients per channel."""
        assert self.sq is not None
        names = list(self.outputs)
        grads = torch.autograd.grad(loss, [self.outputs[n] for n in names], allow_unused=True) if names else []
        for n, g in zip(names, grads):
            if g is None:
                continue
            g = g.detach()
            channels_last = isinstance(self.modules[n], nn.Linear) or is_transposed(self.modules[n])  # Conv1D too
            G = g.reshape(-1, g.shape[-1]) if channels_last else g.transpose(1, -1).reshape(-1, g.shape[1])
            s = (G.float() ** 2).sum(0).to(torch.float64)
            prev = self.sq[n]
            self.sq[n] = s if prev is None else prev + s
            self.grad_rows[n] += G.shape[0]
        del loss, grads
        self.outputs.clear()

    def result(self) -> LayerStats:
        """The normalised statistics; ValueError naming a layer no batch reached."""
        modules = self.modules
        for n in modules:
            if self.counts[n] == 0:
                raise ValueError(f"layer {n!r} saw no input: the calibration batches never reach it")
        for n, total in self.sums.items():
            if not bool(torch.isfinite(total).all()):
                raise ValueError(f"layer {n!r} received NaN or infinite inputs in the calibration pass: a weight "
                                 "before it (the embedding, a norm) or the batches hold NaN or inf")
        for n, grad in (self.sq or {}).items():
            if grad is not None and not bool(torch.isfinite(grad).all()):
                raise ValueError(f"layer {n!r} got NaN or infinite output gradients in the calibration pass: the "
                                 "model's outputs are not finite (a weight or the batches hold NaN or inf)")
        sigma: dict[str, torch.Tensor] = {}
        for n in modules:
            lead = self.leader_of.get(n, n)
            if lead not in sigma:
                # the float64 sum, normalised in place, is released as soon as its stored copy is made
                sigma[lead] = self.sums.pop(lead).div_(self.counts[lead]).to(COVARIANCE_DTYPE)
            sigma[n] = sigma[lead]
        unreached: list[str] = []
        out_sq = None
        if self.sq is not None:
            out_sq = {}
            for n in modules:
                s = self.sq[n]
                if s is None or not bool((s > 0).any()):
                    unreached.append(n)
                else:
                    out_sq[n] = s / self.grad_rows[n]
            if unreached:
                warnings.warn(f"{len(unreached)} targeted layer(s) never reached by the loss, left out of the graph: "
                              + ", ".join(unreached[:8]) + (" ..." if len(unreached) > 8 else ""), RuntimeWarning,
                              stacklevel=4)
        return LayerStats(sigma, out_sq, self.counts, unreached)
