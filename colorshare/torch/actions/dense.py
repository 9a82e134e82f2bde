"""``dense``: a layer alone, unchanged (cost 0, its own parameters); every singleton may take it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from ...formulations.costs import Option
from .base import Action, GraphStatistics

if TYPE_CHECKING:
    from ...formulations.graph import SharingClass


class Dense(Action):
    name = "dense"

    def options(self, g: GraphStatistics, group: tuple[int, ...]) -> list[Option]:
        return [Option("dense", 0.0, int(g.sizes[group[0]]))] if len(group) == 1 else []

    def class_option(self, g: GraphStatistics, group: tuple[int, ...], memory: int, trust: bool) -> Option | None:
        m = int(g.sizes[group[0]])
        return Option("dense", 0.0, m) if len(group) == 1 and memory == m else None

    def weights(self, g: GraphStatistics, members: tuple[int, ...], rank: int | None,
                representative: int | None) -> list[torch.Tensor]:
        return [g.weight(i) for i in members]

    def apply(self, g: GraphStatistics, cl: SharingClass, target: nn.Module, mods: dict[str, nn.Module]) -> None:
        return None
