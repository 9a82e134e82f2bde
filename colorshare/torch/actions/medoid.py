"""``medoid``: the class's members use one member's own weight (the one that costs the others least); stores
one layer. Bounded by the tie (the same memory, and a tie is the best single tensor)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..targets import weight_of
from .base import GraphStatistics
from .tie import Tie, tie_errors

if TYPE_CHECKING:
    from ...formulations.graph import SharingClass


class Medoid(Tie):
    name = "medoid"

    def errors(self, g: GraphStatistics, group: tuple[int, ...]) -> tuple[list[float], int | None]:
        if len(group) == 2 and "tie" not in g.actions and group not in g.pairs("tie"):
            g.pairs("tie")[group] = math.fsum(tie_errors(g, group))  # medoids are bounded by ties
        costs = [[g.curvatures[i].quad(g.weight(j, g.device_of(i)) - g.weight(i)) for i in group] for j in group]
        k = min(range(len(group)), key=lambda j: sum(costs[j]))
        return costs[k], group[k]

    def weights(self, g: GraphStatistics, members: tuple[int, ...], rank: int | None,
                representative: int | None, bits: int = 16) -> list[torch.Tensor]:
        if representative is None:
            raise ValueError("a medoid class needs its representative")
        return [g.weight(representative, g.device_of(i)) for i in members]

    def shared_parameter(self, g: GraphStatistics, cl: SharingClass, mods: dict[str, nn.Module]) -> nn.Parameter:
        if cl.representative is None:
            raise ValueError("a medoid class needs its representative")
        w = weight_of(mods[g.module_names[cl.representative]])
        if not isinstance(w, nn.Parameter):
            raise TypeError(f"layer {g.module_names[cl.representative]!r} holds its weight as a plain tensor")
        return w
