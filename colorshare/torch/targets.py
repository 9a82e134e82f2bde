"""Selecting the shareable modules of a model by name pattern (peft ``target_modules`` style), and the layout
of their weights.

Shareable: ``nn.Linear``, ``nn.Conv1d``, ``nn.Conv2d`` and transformers' ``Conv1D`` (GPT-2's ``c_attn``,
``c_fc``, ``c_proj``), whose weight is stored transposed (d_in x d_out, ``y = x W + b``). Everything else in
colorshare sees a layer's weight as a d_out x d_in matrix (:func:`weight_matrix`, :func:`layer_shape`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["select_modules", "role_of", "SHAREABLE", "ALL_LINEAR", "is_shareable", "is_linear", "is_transposed",
           "layer_shape", "weight_matrix", "to_layout", "left_out", "find_blocks", "weight_of", "bias_of",
           "block_index", "blocks_of"]

SHAREABLE = (nn.Linear, nn.Conv1d, nn.Conv2d)
"""The torch module types that may share (transformers' Conv1D too, recognised by :func:`is_transposed`)."""

ALL_LINEAR = "all-linear"
"""The target that selects every linear layer inside the model's repeated blocks (peft's ``all-linear``):
``nn.Linear`` and transformers' ``Conv1D``; embeddings and the LM head are outside the blocks."""


def is_transposed(module: nn.Module) -> bool:
    """transformers' ``Conv1D`` (weight d_in x d_out), recognised without importing transformers."""
    return type(module).__name__ == "Conv1D" and hasattr(module, "nf") and hasattr(module, "weight")


def is_shareable(module: nn.Module) -> bool:
    return isinstance(module, SHAREABLE) or is_transposed(module)


def is_linear(module: nn.Module) -> bool:
    """A linear map of the last axis (``nn.Linear`` or ``Conv1D``): low-rank and shared factors apply."""
    return isinstance(module, nn.Linear) or is_transposed(module)


def weight_of(module: nn.Module) -> torch.Tensor:
    """The module's ``weight`` tensor (a Parameter); TypeError naming the module type if it has none."""
    w = getattr(module, "weight", None)
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"{type(module).__name__} has no weight tensor")
    return w


def bias_of(module: nn.Module) -> nn.Parameter | None:
    """The module's ``bias`` Parameter, or None."""
    b = getattr(module, "bias", None)
    return b if isinstance(b, nn.Parameter) else None


def layer_shape(module: nn.Module) -> tuple[int, ...]:
    """The weight's shape as colorshare sees it: (d_out, d_in) for a linear layer, the kernel's for a conv."""
    w = weight_of(module)
    return tuple(w.shape[::-1]) if is_transposed(module) else tuple(w.shape)


def weight_matrix(module: nn.Module, weight: torch.Tensor | None = None) -> torch.Tensor:
    """``weight`` (default the module's) as a d_out x d_in matrix (kernels flattened; Conv1D transposed)."""
    w = weight_of(module) if weight is None else weight
    return w.T if is_transposed(module) else w.reshape(w.shape[0], -1)


def to_layout(module: nn.Module, W: torch.Tensor) -> torch.Tensor:
    """A d_out x d_in matrix in the layout of ``module``'s weight (the inverse of :func:`weight_matrix`)."""
    return W.T if is_transposed(module) else W.reshape(weight_of(module).shape)


def role_of(name: str) -> str:
    """A module's role: its name with layer indices replaced by ``*`` (``encoder.layer.*.attention.self.query``)."""
    return ".".join("*" if part.isdigit() else part for part in name.split("."))


def _matches(pattern: str, name: str) -> bool:
    return re.fullmatch(pattern, name) is not None or name == pattern or name.endswith("." + pattern)


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """The model's repeated blocks: the longest ``nn.ModuleList`` (2+ entries) whose entries share one class."""
    best = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) >= 2 and len({type(m) for m in mod}) == 1:
            if best is None or len(mod) > len(best[1]):
                best = (name, mod)
    return best


def block_index(module_name: str, prefix: str, count: int) -> int | None:
    """The index of the repeated block (``prefix``: the blocks' ``ModuleList``, ``count`` of them) that holds
    ``module_name``, None if none does."""
    head = f"{prefix}." if prefix else ""
    if not module_name.startswith(head):
        return None
    first = module_name[len(head):].split(".", 1)[0]
    return int(first) if first.isdigit() and int(first) < count else None


def blocks_of(model: nn.Module, module_names: Iterable[str]) -> list[int | None]:
    """Each module's repeated block (:func:`block_index`); all None for a model without repeated blocks."""
    found = find_blocks(model)
    if found is None:
        return [None for _ in module_names]
    return [block_index(n, found[0], len(found[1])) for n in module_names]


def _in_blocks(model: nn.Module) -> set[str]:
    """The shareable modules inside the model's repeated blocks (:func:`find_blocks`)."""
    found = find_blocks(model)
    if found is None:
        return set()
    prefix = found[0] + "." if found[0] else ""
    return {n for n, m in model.named_modules() if n.startswith(prefix) and is_linear(m)}


def left_out(model: nn.Module, chosen: Iterable[str]) -> dict[str, str]:
    """The model's linear layers that are not in ``chosen``, each with the reason (module name -> reason)."""
    chosen = set(chosen)
    blocks = _in_blocks(model)
    out_emb = getattr(model, "get_output_embeddings", lambda: None)()
    out = {}
    for n, m in model.named_modules():
        if not n or not is_linear(m) or n in chosen:
            continue
        if out_emb is not None and m is out_emb:
            out[n] = "the LM head (output embedding): left out, as peft's all-linear does"
        elif n not in blocks:
            out[n] = "outside the repeated blocks (no same-role peer to share with)"
        else:
            out[n] = "in a repeated block but not in the graph (not targeted, excluded, or never reached by the data)"
    return out


def select_modules(
    model: nn.Module, targets: str | Iterable[str] | None = None, exclude: str | Iterable[str] | None = None
) -> dict[str, nn.Module]:
    """The shareable modules (Linear, transformers' Conv1D, Conv1d, Conv2d) to build a graph from, by name.

    ``targets``: patterns, each a regex matched against the full module name or a name suffix (``"query"``
    matches ``encoder.layer.0.attention.self.query``), or ``"all-linear"``: every linear layer inside the
    model's repeated blocks (the LM head and embeddings left out). Default: every shareable module with at
    least one same-shaped peer. ``exclude``: patterns removed afterwards. A pattern that matches no shareable
    module is a ``ValueError`` naming it and the closest names.
    """
    mods = {n: m for n, m in model.named_modules() if is_shareable(m) and n}
    if isinstance(targets, str):
        targets = [targets]
    if isinstance(exclude, str):
        exclude = [exclude]
    if targets is None:
        shapes: dict[tuple, int] = {}
        for m in mods.values():
            shapes[layer_shape(m)] = shapes.get(layer_shape(m), 0) + 1
        chosen = {n: m for n, m in mods.items() if shapes[layer_shape(m)] > 1}
    else:
        chosen = {}
        for pat in targets:
            if pat == ALL_LINEAR:
                hit = {n: mods[n] for n in _in_blocks(model) if n in mods}
                if not hit:
                    raise ValueError("target 'all-linear' found no linear layer inside repeated blocks (a "
                                     "ModuleList of one module class); name the layers with patterns instead")
            else:
                hit = {n: m for n, m in mods.items() if _matches(pat, n)}
            if not hit:
                sample = ", ".join(list(mods)[:6])
                raise ValueError(f"target pattern {pat!r} matches no Linear/Conv module (modules: {sample}, ...)")
            chosen.update(hit)
    for pat in exclude or ():
        dropped = [n for n in chosen if _matches(pat, n)]
        if not dropped:
            raise ValueError(f"exclude pattern {pat!r} matches no selected module")
        for n in dropped:
            del chosen[n]
    if not chosen:
        raise ValueError("no shareable module selected (no Linear/Conv module has a same-shaped peer)")
    return dict(sorted(chosen.items(), key=lambda kv: list(mods).index(kv[0])))
