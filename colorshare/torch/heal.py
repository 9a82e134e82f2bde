"""Healing: train a compressed model's stored tensors to match the dense model's outputs, on calibration text, with
a held-back slice for early stopping.

Only the targeted layers' parameters train (a shared basis or input factor, a tied tensor, each member's
coefficients, biases); everything else (embeddings, norms, the LM head) is frozen. A tensor several layers share
is one parameter: it receives the gradients of all its members and stays shared. The target is the dense model's
own output: the KL divergence of the next-token distributions for a causal LM (the divergence the probes
measure), ``1 - cosine`` of the pooled embedding for an encoder, or the user's ``loss_fn``.

AdamW with linear warm-up and cosine decay, gradient clipping, seeded order of the batches; the held-back loss is
measured every ``eval_every`` steps and the best state so far is kept, so that more steps never end worse than
the early-stopped result (:class:`HealResult` has the curve).

Data-parallel in a process group (``torchrun``, :mod:`colorshare.torch.distributed`): every rank takes the same
batch each step and runs its own contiguous slice of the batch's rows; the gradients, each scaled by the slice's
share of the rows, are summed over the ranks (one all-reduce of a flat buffer a step) before clipping, so every
rank holds the gradient of the whole batch and takes the same step: the healed weights are the one-process ones up
to the order of a sum. Where the device multiplies bfloat16 natively (a GPU; a CPU with AVX512-BF16 or AMX) the
forward passes run under bfloat16 autocast (the weights, the optimizer's state and the losses stay float32).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..defaults import HEAL_LR, HEAL_STEPS
from ..validation import POSITIVE_INT, Real, check
from . import distributed as dist
from .batches import forward, model_logits, pooled_embedding
from .kl import row_kl
from .stats import NO_DEFAULT_LOSS

__all__ = ["heal", "HealResult", "trainable_parameters", "distillation_loss", "native_bfloat16", "held_back_loss",
           "split_held_back", "HELD_BACK"]

HELD_BACK = 4
"""Batches held back for early stopping by default (the last ones; at most an eighth of them)."""


@dataclass
class HealResult:
    """What :func:`heal` did: steps run, the best step (its state is the model's now), held-back loss before
    and at the best step, the curve ``(step, train loss, held-back loss or None)``, seconds and why it stopped."""

    steps: int
    best_step: int
    held_before: float
    held_best: float
    parameters: int
    seconds: float
    stopped: str
    curve: list[tuple[int, float, float | None]] = field(default_factory=list)


def trainable_parameters(model: nn.Module, module_names: Sequence[str]) -> list[nn.Parameter]:
    """The unique parameters of the named modules (each shared one once), in order."""
    seen: dict[int, nn.Parameter] = {}
    for name in module_names:
        for p in model.get_submodule(name).parameters():
            if p.is_floating_point():
                seen.setdefault(id(p), p)
    return list(seen.values())


def distillation_loss(student: Any, teacher: Any, batch: Any) -> torch.Tensor:
    """The divergence of the student's output from the teacher's on one batch: the mean KL of the next-token
    distributions (logits; masked positions left out), or the mean ``1 - cosine`` of pooled embeddings."""
    s_logits, t_logits = model_logits(student), model_logits(teacher)
    if s_logits is not None and t_logits is not None:
        kl = row_kl(s_logits, t_logits)
        mask = batch.get("attention_mask") if isinstance(batch, dict) else None
        if mask is not None and mask.shape == kl.shape:
            m = mask.to(kl.dtype)
            return (kl * m).sum() / m.sum().clamp(min=1)
        return kl.mean()
    s_emb, t_emb = pooled_embedding(student, batch), pooled_embedding(teacher, batch)
    if s_emb is not None and t_emb is not None:
        return (1.0 - (s_emb * t_emb.detach()).sum(-1)).mean()
    raise ValueError(NO_DEFAULT_LOSS)


def _held_loss(model: nn.Module, target: Callable[[int], Any], held: Sequence[_Part], first: int,
               loss: Callable[..., torch.Tensor], cast: Any) -> float:
    """The mean loss over the held-back batches (indices ``first``.. of the teacher's), over all ranks."""
    with torch.no_grad():
        local = math.fsum(float(_loss(model, target, first + k, part, loss, cast)) for k, part in enumerate(held))
    device = next(model.parameters()).device
    return float(dist.all_reduce_sum(torch.tensor([local], dtype=torch.float64, device=device))[0]) / max(1, len(held))


@dataclass
class _Part:
    """This rank's rows of one batch (None: no row) and their share of the batch's rows."""

    batch: Any
    share: float


def _rows(batch: Any) -> int | None:
    """The number of rows (the first dimension) of a batch's tensors, None if it has no tensor."""
    items = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (tuple, list)) else [batch]
    return next((int(v.shape[0]) for v in items if isinstance(v, torch.Tensor) and v.dim() >= 1), None)


def _part(batch: Any, rank: int, size: int) -> _Part:
    """Rank ``rank``'s contiguous slice of ``batch``'s rows (every tensor whose first dimension is the batch's cut
    alike), with its share of the rows; the whole batch in a single process."""
    rows = _rows(batch)
    if size == 1:
        return _Part(batch, 1.0)
    if rows is None:
        raise ValueError("data-parallel healing splits each batch's rows over the processes: a batch holds no tensor")
    lo, hi = rows * rank // size, rows * (rank + 1) // size
    if hi == lo:
        return _Part(None, 0.0)

    def cut(v: Any) -> Any:
        return v[lo:hi] if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == rows else v
    if isinstance(batch, dict):
        part: Any = {k: cut(v) for k, v in batch.items()}
    elif isinstance(batch, (tuple, list)):
        part = type(batch)(cut(v) for v in batch)
    else:
        part = cut(batch)
    return _Part(part, (hi - lo) / rows)


def _loss(model: nn.Module, target: Callable[[int], Any], k: int, part: _Part, loss: Callable[..., torch.Tensor],
          cast: Any) -> torch.Tensor:
    """This rank's share of batch ``k``'s loss (its slice's loss times the slice's share of the rows)."""
    if part.batch is None:  # this rank holds no row of the batch: it adds nothing
        return torch.zeros((), device=next(model.parameters()).device)
    with cast():
        out = forward(model, part.batch)
    return loss(out, target(k), part.batch) * part.share


def _sum_gradients(params: Sequence[nn.Parameter]) -> None:
    """Sum the parameters' gradients over the ranks (one flat buffer; a missing gradient counts as zero)."""
    if dist.world()[1] == 1:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = dist.all_reduce_sum(torch.cat([g.reshape(-1) for g in grads]))
    at = 0
    for p, g in zip(params, grads):
        n = g.numel()
        p.grad = flat[at:at + n].view_as(g).to(g.dtype)
        at += n


def native_bfloat16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 natively: a CUDA GPU with bfloat16, a CPU with AVX512-BF16 or AMX
    (elsewhere bfloat16 products are emulated, slower than float32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)
    return False


def _autocast(model: nn.Module, autocast: Any) -> Callable[[], Any]:
    """A context factory for the forward passes: for ``"auto"`` bfloat16 autocast where the model's device
    multiplies bfloat16 natively (:func:`native_bfloat16`), ``autocast``'s dtype on the model's device for a
    dtype, nothing for None."""
    import contextlib

    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if autocast == "auto":
        autocast = torch.bfloat16 if native_bfloat16(device) else None
    if autocast is None:
        return contextlib.nullcontext
    if not isinstance(autocast, torch.dtype):
        raise ValueError(f"autocast must be 'auto', None or a torch dtype, got {autocast!r}")
    return lambda: torch.autocast(device.type, dtype=autocast)


def _schedule(step: int, steps: int, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 10 % over the rest."""
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))


def split_held_back(batches: Sequence[Any], held_out: Sequence[Any] | None = None) -> tuple[list[Any], list[Any]]:
    """The batches :func:`heal` trains on and those it holds back: ``held_out`` if given, else the last
    :data:`HELD_BACK` of ``batches`` (at most an eighth, at least one)."""
    batches = list(batches)
    if held_out is not None:
        return batches, list(held_out)
    if len(batches) < 2:
        raise ValueError("healing needs at least 2 batches (one is held back for early stopping)")
    cut = max(1, min(HELD_BACK, len(batches) // 8))
    return batches[:-cut], batches[-cut:]


def held_back_loss(model: nn.Module, teacher: nn.Module, batches: Sequence[Any], *,
                   held_out: Sequence[Any] | None = None, autocast: torch.dtype | str | None = "auto") -> float:
    """The loss :func:`heal` would measure on its held-back batches (same split, same autocast; over every
    rank in a process group), without training."""
    _, held = split_held_back(batches, held_out)
    rank, size = dist.world()
    parts = [_part(b, rank, size) for b in held]
    cast = _autocast(model, autocast)
    target = _targets(teacher, [p.batch for p in parts], None, cast)
    was = model.training
    model.eval()
    try:
        return _held_loss(model, target, parts, 0, distillation_loss, cast)
    finally:
        model.train(was)


def heal(model: nn.Module, teacher: nn.Module | None, batches: Sequence[Any], module_names: Sequence[str], *,
         held_out: Sequence[Any] | None = None, steps: int = HEAL_STEPS, lr: float = HEAL_LR, weight_decay: float = 0.0,
         warmup: int = 5, clip: float = 1.0, eval_every: int | None = None, seed: int = 0,
         loss_fn: Callable[[Any, Any, Any], torch.Tensor] | None = None, teacher_outputs: Sequence[Any] | None = None,
         autocast: torch.dtype | str | None = "auto", progress: bool = True) -> HealResult:
    """Train ``model``'s targeted layers (``module_names``) to match ``teacher`` on ``batches`` for ``steps`` steps
    (one batch a step, in a seeded order), keeping the state with the least held-back loss (on ``held_out``,
    default: the last :data:`HELD_BACK` of ``batches``, at most an eighth, left out of training).

    ``teacher``: the dense model (frozen, run alongside; None: ``teacher_outputs`` gives its outputs for
    ``batches`` then ``held_out``, cached). ``loss_fn(student_output, teacher_output, batch)``: default
    :func:`distillation_loss`. ``lr``: AdamW's peak learning rate; ``clip``: the gradients' largest norm.
    ``eval_every``: steps between held-back measurements (default: a tenth of ``steps``).
    ``autocast``: the forward passes' autocast dtype (``"auto"``: bfloat16 where the model's device multiplies it
    natively: a GPU, a CPU with AVX512-BF16 or AMX; float32 elsewhere).
    In a process group every rank must call it with the same arguments (data-parallel: see the module).
    Returns a :class:`HealResult`; the model is left in eval mode with the best state."""
    check("steps", steps, POSITIVE_INT)
    check("lr", lr, Real(low=0, low_open=True))
    eval_every = max(1, steps // 10) if eval_every is None else eval_every
    check("eval_every", eval_every, POSITIVE_INT)
    batches, held_out = split_held_back(batches, held_out)
    rank, size = dist.world()
    if size > 1 and teacher_outputs is not None:
        raise ValueError("data-parallel healing runs the teacher on each process's rows: pass the teacher, "
                         "not teacher_outputs")
    parts = [_part(b, rank, size) for b in batches]
    held = [_part(b, rank, size) for b in held_out]
    loss = loss_fn or distillation_loss
    params = trainable_parameters(model, module_names)
    if not params:
        raise ValueError("no parameter to heal: the targeted layers hold none (are they all quantized?)")
    if size > 1:  # every rank starts from rank 0's weights and buffers (as DistributedDataParallel does)
        for t in params + [b for name in module_names for b in model.get_submodule(name).buffers()]:
            dist.broadcast_(t)
    cast = _autocast(model, autocast)
    target = _targets(teacher, [p.batch for p in parts + held], teacher_outputs, cast)
    frozen = {id(p) for p in params}
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in frozen)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    model.eval()  # no dropout: the target is the dense model's deterministic output
    best = _held_loss(model, target, held, len(batches), loss, cast)
    result = HealResult(0, 0, best, best, sum(p.numel() for p in params), 0.0, "steps", [(0, math.nan, best)])
    best_state = [p.detach().clone() for p in params]
    order: list[int] = []
    try:
        with tqdm(total=steps, desc="healing", leave=False, disable=not progress or rank != 0) as bar:
            for step in range(steps):
                if not order:
                    order = torch.randperm(len(batches), generator=gen).tolist()
                k = order.pop()
                for group in opt.param_groups:
                    group["lr"] = lr * _schedule(step, steps, warmup)
                opt.zero_grad(set_to_none=True)
                value = _loss(model, target, k, parts[k], loss, cast)
                if value.requires_grad:
                    value.backward()
                _sum_gradients(params)
                torch.nn.utils.clip_grad_norm_(params, clip)
                opt.step()
                held_now = None
                if (step + 1) % eval_every == 0 or step + 1 == steps:
                    held_now = _held_loss(model, target, held, len(batches), loss, cast)
                    if held_now < best:
                        best, result.best_step = held_now, step + 1
                        best_state = [p.detach().clone() for p in params]
                    bar.set_postfix_str(f"held-back {held_now:.4g} (best {best:.4g} at {result.best_step})")
                train = float(dist.all_reduce_sum(value.detach().double().reshape(1))[0])
                result.curve.append((step + 1, train, held_now))
                result.steps = step + 1
                bar.update()
    finally:
        with torch.no_grad():
            for p, b in zip(params, best_state):
                p.copy_(b)
        for n, p in model.named_parameters():
            p.requires_grad_(flags.get(n, p.requires_grad))
        model.eval()
    result.held_best, result.seconds = best, time.perf_counter() - t0
    result.stopped = f"{steps} steps; best held-back loss at step {result.best_step}"
    return result


def _targets(teacher: nn.Module | None, batches: list[Any], given: Sequence[Any] | None,
             cast: Callable[[], Any]) -> Callable[[int], Any]:
    """The teacher's output for batch k (no gradients): from ``given`` where it is cached, else computed on the
    fly (the teacher runs alongside: a forward a step, and no logits kept, 200 MB a batch of 4 x 256 tokens of a
    49k vocabulary)."""
    if given is not None:
        outs = list(given)
        if len(outs) != len(batches):
            raise ValueError(f"teacher_outputs has {len(outs)} entries for {len(batches)} batches")
        return lambda k: outs[k]
    if teacher is None:
        raise ValueError("heal needs the dense model (teacher) or its outputs (teacher_outputs)")
    teacher.eval()  # (its gradients are never asked for: it runs under no_grad)

    def run(k: int) -> Any:
        with torch.no_grad(), cast():
            return _detached(forward(teacher, batches[k]))
    return run


def _detached(out: Any) -> Any:
    """What the losses read of a teacher's output, detached (logits or a hidden state)."""
    logits = model_logits(out)
    if logits is not None:
        return _Output(logits=logits.detach())
    hidden = getattr(out, "last_hidden_state", None)
    if hidden is not None:
        return _Output(last_hidden_state=hidden.detach())
    return copy.copy(out)


class _Output:
    """A model output reduced to what the distillation loss reads."""

    def __init__(self, **fields: torch.Tensor) -> None:
        self.__dict__.update(fields)
