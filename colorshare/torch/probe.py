"""Probed K-FAC: each layer's K-FAC cost put on the measured scale by one probe perturbation per layer.

K-FAC (``kfac`` in :mod:`colorshare.torch.curvature`) gets the SHAPE of a layer's cost right: which input
directions a cut may drop (whitening by ``E[x x^T]``) and how the cost grows along the rank menu. Its LEVEL
from one layer to the next rests on independence assumptions (positions independent of each other, inputs
independent of output gradients) that attention and pooling break. On MiniLM the measured loss of a 50 % cut of
one layer divided by its K-FAC prediction ranges from 10 (value projections) to 370 (the last block), so the
optimum kept every value projection dense and paid for it elsewhere.

The probe: each layer alone is cut to its whitened rank ``fraction * min(d_out, d_in)`` truncation (the layer's
own ``basis`` at that rank, exactly what a solution would apply), the divergence of the model's outputs from the
dense model's is measured on the first calibration batches, and the layer's K-FAC scale is multiplied by
measured / predicted. The divergence, computed on the outputs' device:

- logits (causal LM, classifier): mean KL divergence of the dense next-token (class) distribution to the
  probed one, per (unmasked) position, in nats;
- an encoder's ``last_hidden_state``: mean ``1 - cosine`` of the mean-pooled, normalised embeddings;
- with a ``loss_fn``: its increase over the dense model.

Costs of a probed graph are then in the divergence's units. Cost: per layer, one forward pass over the probe
batches from the layer's block on (:class:`~colorshare.torch.replay.BlockReplay` replays the blocks before it
from the dense run; no gradients). In a process group (:mod:`colorshare.torch.distributed`) each rank probes
its share of the layers and the ratios are gathered.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import distributed as dist
from .actions.basis import basis_factors, basis_option
from .batches import attention_mask, model_logits, pooled_embedding
from .kl import row_kl
from .replay import BlockReplay
from .stats import NO_DEFAULT_LOSS
from .targets import weight_of

__all__ = ["probe_scales", "output_divergence", "position_kl", "probe_cut", "cut_rank"]


def _reference(output: Any, batch: Any, loss_fn: Callable | None) -> Any:
    if loss_fn is not None:
        return float(loss_fn(output, batch))
    logits = model_logits(output)
    if logits is not None:
        return torch.log_softmax(logits.float(), dim=-1)
    e = pooled_embedding(output, batch)
    if e is not None:
        return e.float()
    raise ValueError(NO_DEFAULT_LOSS)


def position_kl(logits: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """KL(dense || changed) of the next-token distributions at every position (nats; ``reference``: the dense
    model's log-probabilities). >= 0 at every position: a change below float32 resolution can round to a tiny
    negative sum, clamped to 0."""
    return row_kl(logits, reference).clamp(min=0)


def cut_rank(graph: Any, i: int, fraction: float) -> int:
    """The rank a probe cuts layer ``i`` to: ``fraction`` of its full rank, in 1 .. full - 1 (0: no cut)."""
    d = min(graph.shapes[i][0], int(np.prod(graph.shapes[i][1:])))
    return min(d - 1, max(1, round(fraction * d)))


@contextmanager
def probe_cut(graph: Any, i: int, weight: torch.Tensor, rank: int) -> Iterator[float]:
    """Layer ``i`` (whose parameter is ``weight``) cut to its best rank-``rank`` whitened approximation for the
    duration of the block, its weight restored exactly afterwards; yields the K-FAC prediction of the cut."""
    option = basis_option(graph, (i,), rank, trust=False)
    if option is None:
        raise ValueError(f"layer {graph.module_names[i]!r} has no rank-{rank} cut to probe")
    predicted = option.cost
    U, C = basis_factors(graph, (i,), rank)
    old = weight.detach().clone()
    try:
        with torch.no_grad():
            weight.copy_(graph.to_layout(i, U @ C[0]))
            yield predicted
    finally:
        with torch.no_grad():
            weight.copy_(old)


def output_divergence(output: Any, batch: Any, reference: Any, loss_fn: Callable | None = None) -> float:
    """The divergence of ``output`` from the dense model's ``reference`` for one batch (see the module
    docstring): mean KL per position (logits), mean 1 - cosine (pooled embedding), or the loss increase."""
    if loss_fn is not None:
        return float(loss_fn(output, batch)) - reference
    logits = model_logits(output)
    if logits is not None:
        kl = position_kl(logits, reference).reshape(-1)
        mask = attention_mask(batch)
        if mask is not None and mask.numel() == kl.numel():
            m = mask.reshape(-1).to(device=kl.device, dtype=kl.dtype)
            return float((kl * m).sum() / m.sum().clamp(min=1))
        return float(kl.mean())
    e = pooled_embedding(output, batch)
    if e is None:
        raise ValueError(NO_DEFAULT_LOSS)
    return float((1.0 - (e.float() * reference).sum(-1)).clamp(min=0).mean())


def probe_scales(graph: Any, modules: dict[str, nn.Module], model: nn.Module, batches: Sequence[Any],
                 loss_fn: Callable[[Any, Any], torch.Tensor] | None = None, fraction: float = 0.5,
                 progress: bool = True) -> np.ndarray:
    """Measured / predicted divergence of each layer's probe cut (one value per layer of ``graph``, in its order).

    ``graph``: a K-FAC :class:`~colorshare.torch.model_graph.ModelGraph` of ``model`` (its ``basis`` gives the cut
    and ``basis_option`` its predicted cost); ``modules``: the graph's layers by name; ``batches``: the probe
    batches (the model's inputs). Every weight is restored exactly after its probe. A layer whose probe
    predicts or measures no change gets the median ratio of the others (with a warning)."""
    if not batches:
        raise ValueError("the probes need at least one calibration batch")
    replay = BlockReplay(model, batches)  # a probe in block L reruns blocks L.. only
    refs = [_reference(o, b, loss_fn) for o, b in zip(replay.dense, batches)]
    ratios = np.full(graph.n, np.nan)
    mine = dist.shard(list(enumerate(graph.module_names)))  # in a process group: this rank's layers
    for i, name in tqdm(mine, desc="probes", leave=False, disable=not progress):
        rank = cut_rank(graph, i, fraction)
        if rank < 1:
            continue
        with probe_cut(graph, i, weight_of(modules[name]), rank) as predicted:
            outs = replay.outputs(replay.start([name]))
            measured = math.fsum(output_divergence(o, b, r, loss_fn) for o, b, r in zip(outs, batches, refs)) \
                / len(refs)
        if predicted > 0 and measured > 0 and math.isfinite(measured):
            ratios[i] = measured / predicted
    if dist.world()[1] > 1:  # every rank's probes, exactly as one process measures them
        for part in dist.all_gather({i: float(ratios[i]) for i, _ in mine}):
            for i, r in part.items():
                ratios[i] = r
    bad = ~np.isfinite(ratios)
    if bad.all():
        warnings.warn("no probe measured a change: the K-FAC scales are kept", RuntimeWarning, stacklevel=2)
        return np.ones(graph.n)
    if bad.any():
        names = [graph.module_names[i] for i in np.flatnonzero(bad)]
        warnings.warn(f"{len(names)} layer(s) whose probe measured or predicted no change get the median ratio: "
                      + ", ".join(names[:8]) + (" ..." if len(names) > 8 else ""), RuntimeWarning, stacklevel=2)
        ratios[bad] = float(np.median(ratios[~bad]))
    return ratios

