"""Straight-through healing of quantized layers, on their own grid and at their own bytes.

:func:`unfreeze` turns every :class:`~colorshare.torch.quant.QuantLinear` under the named modules into a
:class:`FakeQuantLinear`: a latent float weight that starts at the stored codes' values and is rounded on the
layer's grid (its float16 scales and zero points, groups and bit-width) at every forward, the rounding passed
straight through in the backward (the straight-through estimator; a weight clamped at the grid's ends gets no
gradient). With ``scales=True`` the scales train too (their gradient through the rounded values, as in LSQ).
:func:`freeze` turns each back into a ``QuantLinear`` whose codes are the latent weight rounded on the grid: the
model it leaves is exactly the one the last forward computed, in the bytes the plan counted.

:func:`heal_in_bits` heals a plan in fewer bits as ``compress --heal`` does: its 16-bit version first, then
rounded (GPTQ), then straight through the rounding (``benchmarks/heal_bits.py`` measures why both).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .quant import Quantized, QuantLinear, QuantSpec

__all__ = ["FakeQuantLinear", "unfreeze", "freeze", "heal_in_bits"]


class FakeQuantLinear(nn.Module):
    """A :class:`QuantLinear` in training: ``y = x round(W)^T + b`` with a float latent ``weight`` and the grid's
    ``scales`` (a parameter with ``scales=True``, else a buffer) and ``zeros`` (a buffer; None at 8 bits)."""

    zeros: torch.Tensor | None

    def __init__(self, layer: QuantLinear, scales: bool = False) -> None:
        super().__init__()
        q = layer.quantized()
        self.in_features, self.out_features = layer.in_features, layer.out_features
        self.bits, self.group = layer.bits, layer.group
        self.weight = nn.Parameter(q.dequantize(torch.float32))
        s = q.scales.to(torch.float32).clone()
        if scales:
            self.scales = nn.Parameter(s)
        else:
            self.register_buffer("scales", s)
        self.register_buffer("zeros", None if q.zeros is None else q.zeros.to(torch.float32).clone())
        self.bias = layer.bias

    def _codes(self, straight: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The codes of the latent weight on the grid (float; with the straight-through gradient if
        ``straight``), and the grid's scales and zeros per weight."""
        s = self.scales + (self.scales.to(torch.float16).to(self.scales.dtype) - self.scales).detach()
        s = s.repeat_interleave(self.group, dim=1)[:, :self.in_features]
        v = self.weight / s
        r = v + (torch.round(v) - v).detach() if straight else torch.round(v)
        if self.zeros is None:
            return r.clamp(-127, 127), s, None
        z = self.zeros.repeat_interleave(self.group, dim=1)[:, :self.in_features]
        return (r + z).clamp(0, 2**self.bits - 1), s, z

    def rounded(self) -> torch.Tensor:
        """The weight as stored (the latent weight rounded on the grid), differentiable straight through."""
        q, s, z = self._codes(True)
        return q * s if z is None else (q - z) * s

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.rounded()
        return nn.functional.linear(x, w.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))

    def to_quantized(self) -> QuantLinear:
        """The :class:`QuantLinear` this layer stands for now (codes, float16 scales, zeros)."""
        with torch.no_grad():
            q, _, _ = self._codes(False)
            zeros = None if self.zeros is None else self.zeros.to(torch.float16)
            quant = Quantized(q.to(torch.int16), self.scales.detach().to(torch.float16), zeros,
                              QuantSpec(self.bits, self.group))
        return QuantLinear.from_quantized(quant, self.bias, device=self.weight.device)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, bits={self.bits}, "
                f"group={self.group}, scales={'trained' if isinstance(self.scales, nn.Parameter) else 'fixed'}")


def _swap(model: nn.Module, module_names: Sequence[str], kind: type, make: object) -> int:
    """Replace every ``kind`` module at or under ``module_names`` by ``make(module)``; returns how many."""
    count = 0
    for root in module_names:
        top = model.get_submodule(root)
        for name, mod in list(top.named_modules()):
            if isinstance(mod, kind):
                new = make(mod)  # type: ignore[operator]
                if name:
                    parent_name, _, attr = name.rpartition(".")
                    setattr(top.get_submodule(parent_name) if parent_name else top, attr, new)
                else:
                    parent_name, _, attr = root.rpartition(".")
                    setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)
                count += 1
    return count


def unfreeze(model: nn.Module, module_names: Sequence[str], scales: bool = False) -> int:
    """Make the quantized layers at or under ``module_names`` trainable (:class:`FakeQuantLinear`, in place);
    returns how many. ``scales``: train the grid's scales too."""
    return _swap(model, module_names, QuantLinear, lambda m: FakeQuantLinear(m, scales))


def freeze(model: nn.Module, module_names: Sequence[str]) -> int:
    """Store the layers :func:`unfreeze` made trainable as quantized layers again (in place: their codes the
    latent weights rounded on their grids); returns how many."""
    return _swap(model, module_names, FakeQuantLinear, lambda m: m.to_quantized())


def heal_in_bits(teacher: nn.Module, graph: Any, solution: Any, batches: Sequence[Any], steps: int,
                 float_share: float = 0.5, plan: nn.Module | None = None,
                 **heal_options: Any) -> tuple[nn.Module, list[Any]]:
    """Heal ``solution``'s plan in fewer bits from the dense ``teacher`` (left as it is): its 16-bit version for
    ``float_share`` of ``steps`` (:func:`colorshare.torch.heal`), then rounded to the planned bit-widths (GPTQ
    under each layer's input covariance), then straight through the rounding for the other steps. Returns the
    quantized model, in the plan's bytes, and the :class:`~colorshare.torch.heal.HealResult` of each phase run.
    ``float_share`` 1: heal then round; 0: straight through only. ``plan``: the plan as applied (quantized, as
    ``apply_coloring`` builds it; used in place): the straight-through phase then starts from whichever of it
    and the rounded healed 16-bit model holds back less, so healing never ends worse than the plan."""
    from .apply import apply_coloring, quantize_classes
    from .heal import heal, held_back_loss

    if not 0.0 <= float_share <= 1.0:
        raise ValueError(f"float_share must lie in [0, 1], got {float_share!r}")
    first = round(steps * float_share)
    model = apply_coloring(teacher, graph, solution, inplace=False, quantize=False)
    results = []
    if first:
        results.append(heal(model, teacher, batches, graph.module_names, steps=first, **heal_options))
    quantize_classes(model, graph, solution)
    if plan is not None and first:
        cast = heal_options.get("autocast", "auto")
        if held_back_loss(plan, teacher, batches, autocast=cast) <= held_back_loss(model, teacher, batches,
                                                                                   autocast=cast):
            model = plan
    elif plan is not None:
        model = plan
    if steps - first and unfreeze(model, graph.module_names):
        try:
            results.append(heal(model, teacher, batches, graph.module_names, steps=steps - first, **heal_options))
        finally:
            freeze(model, graph.module_names)
    return model, results
