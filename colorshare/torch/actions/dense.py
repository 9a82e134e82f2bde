"""``dense``: a layer alone, its weight kept as it is (16 bits: cost 0, its own parameters) or, where the graph
counts bytes, stored in fewer bits (:mod:`colorshare.torch.quant`: GPTQ under the layer's input covariance),
priced by the surrogate of the rounding error and stored packed in a :class:`~colorshare.torch.quant.QuantLinear`.
Every singleton may take it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ...formulations.costs import Option
from ..quant import QuantLinear, gptq, group_size
from ..targets import bias_of, layer_shape, weight_of
from .base import Action, GraphStatistics, parent_of

if TYPE_CHECKING:
    from ...formulations.graph import SharingClass


def _quantizable(g: GraphStatistics, i: int) -> bool:
    """A linear layer (a quantized one is a :class:`QuantLinear`; convolutions stay in 16 bits)."""
    return g.is_linear[i] and len(g.shapes[i]) == 2


class Dense(Action):
    name = "dense"
    layer = QuantLinear
    plan_fields = (frozenset({"in", "out", "bits"}), frozenset({"group", "bias"}))

    def options(self, g: GraphStatistics, group: tuple[int, ...]) -> list[Option]:
        if len(group) != 1:
            return []
        i = group[0]
        out = [Option("dense", 0.0, int(g.sizes[i]))]
        if not _quantizable(g, i):
            return out
        d_out, d_in = g.shapes[i]
        for bits in (b for b in g.bits_menu if b < 16):
            cost = g.quant_cost(i, bits)
            if g.fits([cost / max(g.energy(i), 1e-300)]):
                out.append(Option("dense", cost, g.memory(d_out, d_in, bits), params={"bits": bits}))
        return out

    def class_option(self, g: GraphStatistics, group: tuple[int, ...], memory: int, trust: bool) -> Option | None:
        if len(group) != 1:
            return None
        i = group[0]
        if memory == int(g.sizes[i]):
            return Option("dense", 0.0, memory)
        if not _quantizable(g, i):
            return None
        d_out, d_in = g.shapes[i]
        for bits in (b for b in g.bits_menu if b < 16):
            if g.memory(d_out, d_in, bits) == memory:
                cost = g.quant_cost(i, bits)
                if not trust or g.fits([cost / max(g.energy(i), 1e-300)]):
                    return Option("dense", cost, memory, params={"bits": bits})
        return None

    def weights(self, g: GraphStatistics, members: tuple[int, ...], rank: int | None,
                representative: int | None, bits: int = 16) -> list[torch.Tensor]:
        if bits < 16:
            return [g.quantize(i, bits).dequantize(torch.float64) for i in members]
        return [g.weight(i) for i in members]

    def apply(self, g: GraphStatistics, cl: SharingClass, target: nn.Module, mods: dict[str, nn.Module]) -> None:
        bits = int((cl.params or {}).get("bits", 16))
        if bits >= 16:
            return None
        i = cl.members[0]
        name = g.module_names[i]
        old = mods[name]
        parent, attr = parent_of(target, name)
        setattr(parent, attr, QuantLinear.from_quantized(g.quantize(i, bits), bias_of(old),
                                                          device=g.device_of(i)))
        return None

    def apply_float(self, g: GraphStatistics, cl: SharingClass, target: nn.Module,
                    mods: dict[str, nn.Module]) -> None:
        return None  # the layer stays as it is until it is rounded

    def requantize(self, g: GraphStatistics, cl: SharingClass, target: nn.Module,
                   mods: dict[str, nn.Module]) -> None:
        bits = int((cl.params or {}).get("bits", 16))
        if bits >= 16:
            return
        i = cl.members[0]
        name = g.module_names[i]
        layer = mods[name]
        W = weight_of(layer).detach().to(torch.float64)
        q = gptq(W, g.curvatures[i].covariance(W.device), bits)
        parent, attr = parent_of(target, name)
        setattr(parent, attr, QuantLinear.from_quantized(q, bias_of(layer), device=W.device))

    def plan_entry(self, module: nn.Module) -> dict[str, Any]:
        assert isinstance(module, QuantLinear)
        return {"in": module.in_features, "out": module.out_features, "bits": module.bits, "group": module.group,
                "bias": module.bias is not None}

    def rebuild(self, spec: dict[str, Any], old: nn.Module, name: str, source: str) -> nn.Module:
        w = getattr(old, "weight", None)
        shape = None if not isinstance(w, torch.Tensor) else layer_shape(old)
        if w is None or shape != (spec["out"], spec["in"]):
            raise ValueError(f"layer {name!r} is {spec['out']} x {spec['in']} in {source} but "
                             f"{shape} in this model: is it the same architecture?")
        group = int(spec.get("group") or group_size(spec["in"], spec["bits"]))
        return QuantLinear(spec["in"], spec["out"], int(spec["bits"]), group, bias_of(old), device=w.device)
