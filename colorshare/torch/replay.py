"""Forwards that change one part of a model reuse the blocks before it: a cache of the repeated blocks' outputs.

A probe (one layer cut) or the measurement of a class (a few layers changed) leaves every block before the
first changed one as it was. :class:`BlockReplay` runs the dense model once on the batches, records each
repeated block's output (the blocks: the longest ``nn.ModuleList`` of modules of one class, a transformers
model's decoder layers, a stack's stages), and afterwards runs a forward from block L on by putting stand-ins
in the list for blocks ``< L`` that hand back the recorded outputs. The result is the model's own forward,
bit for bit (the same operations on the same inputs), at the cost of blocks L.. only. A model without such
a list is run whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .batches import forward
from .targets import block_index, find_blocks

__all__ = ["BlockReplay"]


class _Recorded(nn.Module):
    """Stands in for a block: returns what the block returned in the dense run, for the current batch."""

    def __init__(self, outputs: list[Any], pointer: list[int]) -> None:
        super().__init__()
        self.outputs, self.pointer = outputs, pointer

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.outputs[self.pointer[0]]


def _prepare(model: nn.Module, batch: Any) -> Any:
    """No key/value cache for a transformers model: a replayed forward must not depend on earlier blocks'
    cache entries (and the measurements need none)."""
    if isinstance(batch, dict) and getattr(model, "config", None) is not None and "use_cache" not in batch:
        return {**batch, "use_cache": False}
    return batch


class BlockReplay:
    """Forwards of ``model`` on fixed ``batches`` that reuse the dense model's blocks before a given one."""

    def __init__(self, model: nn.Module, batches: Sequence[Any]) -> None:
        self.model = model
        self.batches = [_prepare(model, b) for b in batches]
        found = find_blocks(model)
        self.prefix: str = found[0] if found is not None else ""
        self.blocks: nn.ModuleList | None = found[1] if found is not None else None
        self.recorded: list[list[Any]] = []
        self.dense: list[Any] = []
        n = 0 if self.blocks is None else len(self.blocks)
        self.recorded = [[None] * len(self.batches) for _ in range(n)]
        hooks = []
        pointer = [0]
        calls = [0] * n
        if self.blocks is not None:
            for k, blk in enumerate(self.blocks):
                def hook(mod: nn.Module, args: Any, out: Any, k: int = k) -> None:
                    self.recorded[k][pointer[0]] = out
                    calls[k] += 1
                hooks.append(blk.register_forward_hook(hook))
        try:
            with torch.no_grad():
                for j, b in enumerate(self.batches):
                    pointer[0] = j
                    self.dense.append(forward(model, b))
        finally:
            for h in hooks:
                h.remove()
        if any(c != len(self.batches) for c in calls):  # a block called twice (or never) per forward: no replay
            self.blocks, self.recorded = None, []

    def block_of(self, module_name: str) -> int | None:
        """The index of the block that holds ``module_name`` (a name in ``model``), None if none does."""
        return None if self.blocks is None else block_index(module_name, self.prefix, len(self.blocks))

    def start(self, module_names: Sequence[str]) -> int:
        """The first block a change of these modules reaches (0: the whole model runs)."""
        idx = [self.block_of(n) for n in module_names]
        known = [i for i in idx if i is not None]
        return 0 if not idx or len(known) < len(idx) else min(known)

    def outputs(self, start: int) -> list[Any]:
        """The model's outputs on every batch, with blocks ``< start`` replayed from the dense run (the model's
        weights as they are now; those of blocks ``< start`` must be the dense ones)."""
        if start <= 0 or self.blocks is None:
            with torch.no_grad():
                return [forward(self.model, b) for b in self.batches]
        pointer = [0]
        saved = [self.blocks[k] for k in range(start)]
        try:
            for k in range(start):
                self.blocks[k] = _Recorded(self.recorded[k], pointer)
            out = []
            with torch.no_grad():
                for j, b in enumerate(self.batches):
                    pointer[0] = j
                    out.append(forward(self.model, b))
            return out
        finally:
            for k, blk in enumerate(saved):
                self.blocks[k] = blk
