"""``medoid``: the class's members use one member's own weight (the one that costs the others least); stores
one layer. Bounded by the tie (the same memory, and a tie is the best single tensor)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from .tie import Tie, tie_errors

if TYPE_CHECKING:
    from ...formulations.graph import SharingClass
    from ..graph import ModelGraph


class Medoid(Tie):
    name = "medoid"

    def errors(self, g: ModelGraph, group: tuple[int, ...]) -> tuple[list[float], int | None]:
        if len(group) == 2 and "tie" not in g.actions and group not in g.pairs("tie"):
            g.pairs("tie")[group] = math.fsum(tie_errors(g, group))  # medoids are bounded by ties
        costs = [[g.curvatures[i].quad(g.weight(j, g.device_of(i)) - g.weight(i)) for i in group] for j in group]
        k = min(range(len(group)), key=lambda j: sum(costs[j]))
        return costs[k], group[k]

    def weights(self, g: ModelGraph, members: tuple[int, ...], rank: int | None,
                representative: int | None) -> list[torch.Tensor]:
        if representative is None:
            raise ValueError("a medoid class needs its representative")
        return [g.weight(representative, g.device_of(i)) for i in members]

    def shared_parameter(self, g: ModelGraph, cl: SharingClass, mods: dict[str, nn.Module]) -> nn.Parameter:
        if cl.representative is None:
            raise ValueError("a medoid class needs its representative")
        return mods[g.module_names[cl.representative]].weight
