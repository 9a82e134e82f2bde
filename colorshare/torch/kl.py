"""The KL divergence of next-token distributions, row by row, in chunks: ``KL(softmax(t) || softmax(s))`` for
logits over a large vocabulary without a full-size temporary.

The textbook expression (two ``log_softmax``, an ``exp``, a difference, a product, a sum) makes six temporaries
the size of the logits, each kept for the backward pass: for 4 x 256 positions of a 49k vocabulary, 200 MB each
in float32, and on a CPU most of a healing step's time. Here the rows are taken a few at a time (float32, a few
MB); the backward pass recomputes the chunk's probabilities and forms the gradient ``softmax(s) - softmax(t)``
directly. Same values and gradients as the textbook expression (float32 arithmetic for lower precisions, float64
for float64).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["row_kl"]

CHUNK_ELEMENTS = 1 << 22
"""Elements (rows x vocabulary) of one chunk's float32 temporaries: 16 MB."""


def _up(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32, or float64 if it is float64."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _rows(vocab: int) -> int:
    return max(1, CHUNK_ELEMENTS // max(1, vocab))


class _RowKL(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = torch.empty(s.shape[0], dtype=torch.promote_types(s.dtype, torch.float32), device=s.device)
        step = _rows(s.shape[1])
        for i in range(0, s.shape[0], step):
            lt = torch.log_softmax(_up(t[i:i + step]), dim=-1)
            ls = torch.log_softmax(_up(s[i:i + step]), dim=-1)
            out[i:i + step] = (lt.exp() * (lt - ls)).sum(-1)
        ctx.save_for_backward(s, t)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        s, t = ctx.saved_tensors
        out = torch.empty_like(s)
        step = _rows(s.shape[1])
        for i in range(0, s.shape[0], step):
            diff = torch.softmax(_up(s[i:i + step]), dim=-1) - torch.softmax(_up(t[i:i + step]), dim=-1)
            out[i:i + step] = diff * grad[i:i + step, None]
        return out, None


def row_kl(logits: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``KL(softmax(reference) || softmax(logits))`` over the last dimension, one value per position (nats;
    shape ``logits.shape[:-1]``; float32, or float64 for float64 logits). ``reference``: the teacher's logits or
    log-probabilities (constant: no gradient flows to it). ``logits`` may require gradients (any float dtype; its
    gradient has its dtype)."""
    if logits.shape != reference.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and reference {tuple(reference.shape)} differ in shape")
    lead = logits.shape[:-1]
    s = logits.reshape(-1, logits.shape[-1])
    t = reference.detach().reshape(-1, reference.shape[-1]).to(s.device)
    return _RowKL.apply(s, t).reshape(lead)
