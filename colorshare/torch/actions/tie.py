"""``tie``: the class's members become ONE tensor, the curvature-weighted centre of their weights (ALBERT-style
tying); stores one layer."""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ...formulations.bounds import KindBound
from ...formulations.costs import Option
from ..curvature import KRONECKER
from ..targets import weight_of
from .base import SAFE, Action, GraphStatistics

if TYPE_CHECKING:
    from ...formulations.graph import SharingClass


def _total(ts: list[torch.Tensor]) -> torch.Tensor:
    """``ts[0] + ts[1] + ...`` in that order (what ``sum`` computes, typed as a tensor)."""
    return functools.reduce(torch.add, ts)


def tie_center(g: GraphStatistics, group: tuple[int, ...]) -> torch.Tensor:
    """The curvature-weighted mean ``argmin_W sum_i quad_i(W - W_i)`` (d_out x d_in, float64, on the group's
    first member's device)."""
    home = g.home(group)
    Ws = [g.weight(i, home) for i in group]
    cs = [g.curvatures[i] for i in group]
    if cs[0].kind == KRONECKER:
        # (S + eps I) W^T = R^T + eps mean^T: input directions the calibration data never excites (dead
        # units, constant pixels) keep the plain mean instead of an arbitrary, unstable least-squares value
        S = _total([c.scale * c.covariance(home) for c in cs])
        R = _total([c.scale * (W @ c.covariance(home)) for W, c in zip(Ws, cs)])
        mean = _total(Ws) / len(Ws)
        eps = 1e-6 * float(torch.trace(S)) / S.shape[0]
        if eps <= 0:
            return mean
        eye = torch.eye(S.shape[0], dtype=S.dtype, device=S.device)
        return torch.linalg.solve(S + eps * eye, (R + eps * mean).T).T
    scales = [c.weight_scale() for c in cs]
    tot = sum(scales)
    num = _total([s * W for s, W in zip(scales, Ws)])
    mean = _total(Ws) / len(Ws)
    if isinstance(tot, torch.Tensor):
        return torch.where(tot > 0, num / torch.where(tot > 0, tot, 1.0), mean)
    return num / tot if tot > 0 else mean


def tie_errors(g: GraphStatistics, group: tuple[int, ...]) -> list[float]:
    """Each member's ``quad_i(W* - W_i)`` for the tie center W*; for input-aware curvature from the cached
    ``h_i W_i Sigma_i W_i^T`` and one product per member: ``h/2 (<W* S, W*> - 2 <W_i S, W*> + tr gram_i)``."""
    W = tie_center(g, group)
    if not g.input_aware(group[0]):
        return [g.curvatures[i].quad(W.to(g.device_of(i)) - g.weight(i)) for i in group]
    out = []
    for i in group:
        c, Wi = g.curvatures[i], g.weight(i)
        W = W.to(Wi.device)
        WS = (W - 2 * Wi) @ c.covariance()
        val = c.scale * float((WS * W).sum()) + g.gram_trace(i)
        out.append(max(0.0, 0.5 * val))
    return out


def pair_tie(g: GraphStatistics, a: int, b: int) -> float:
    """A tie's exact cost for the pair, ``1/2 tr(D (A_a : A_b) D^T)`` with ``D = W_a - W_b``, ``A = h Sigma``
    and ``A_a : A_b = A_a - A_a (A_a + A_b)^-1 A_a`` (parallel sum; one Cholesky factor, no regularisation:
    the bound needs the minimum itself, not a stabilised tie centre). Input-aware curvature only."""
    ca, cb = g.curvatures[a], g.curvatures[b]
    home = g.device_of(a)
    D = g.weight(a) - g.weight(b, home)
    Aa, Ab = ca.scale * ca.covariance(), cb.scale * cb.covariance(home)
    M = D @ Aa
    full = float((M * D).sum())
    L, info = torch.linalg.cholesky_ex(Aa + Ab)
    if int(info) == 0:
        X = torch.linalg.solve_triangular(L, M.T, upper=False)
        sub = float((X * X).sum())
    else:  # singular (inputs the data never excites): the pseudo-inverse, by eigenvalues
        vals, vecs = torch.linalg.eigh(Aa + Ab)
        keep = vals > vals.max().clamp(min=1e-300) * 1e-12
        Y = (M @ vecs[:, keep]) / vals[keep].sqrt()
        sub = float((Y * Y).sum())
    return max(0.0, 0.5 * (full - sub))


class Tie(Action):
    name = "tie"
    pair_kind = "tie"

    def shared_tensor(self, g: GraphStatistics, group: tuple[int, ...], trust: bool = True) -> Option | None:
        """The class's option; None if out of the trust region (unless ``trust=False``)."""
        errs, rep = self.errors(g, group)
        if trust and not g.fits(e / max(g.energy(i), 1e-300) for e, i in zip(errs, group)):
            return None
        return Option(self.name, math.fsum(errs), int(g.sizes[group[0]]), representative=rep)

    def errors(self, g: GraphStatistics, group: tuple[int, ...]) -> tuple[list[float], int | None]:
        """Each member's cost, and the representative (None: the tie centre)."""
        errs = tie_errors(g, group)
        if len(group) == 2:
            g.pairs("tie")[group] = math.fsum(errs)  # a tie's cost, for the pair bounds
        return errs, None

    def options(self, g: GraphStatistics, group: tuple[int, ...]) -> list[Option]:
        # one nn.Parameter in modules on several devices cannot follow each one's input: no such class
        opt = self.shared_tensor(g, group) if len(group) > 1 and not g.spans_devices(group) else None
        return [opt] if opt is not None else []

    def class_option(self, g: GraphStatistics, group: tuple[int, ...], memory: int, trust: bool) -> Option | None:
        if len(group) < 2 or memory != int(g.sizes[group[0]]) or g.spans_devices(group):
            return None
        return self.shared_tensor(g, group, trust)

    def weights(self, g: GraphStatistics, members: tuple[int, ...], rank: int | None,
                representative: int | None, bits: int = 16) -> list[torch.Tensor]:
        W = tie_center(g, members)
        return [W.to(g.device_of(i)) for i in members]

    # ---- bounds: a tie costs the minimum of a sum of quadratics (superadditive); a medoid at least the tie ----
    def reads_pairs(self, g: GraphStatistics, family: tuple[int, ...]) -> bool:
        return True

    def pair_data(self, g: GraphStatistics, a: int, b: int) -> float | None:
        return pair_tie(g, a, b) if g.input_aware(a) else None

    def bounds(self, g: GraphStatistics, family: tuple[int, ...], pos: dict[int, int]) -> list[KindBound] | None:
        n = len(family)
        E = np.zeros((n, n))
        for (i, j), cost in g.pairs("tie").items():
            if i in pos and j in pos:
                E[pos[i], pos[j]] = E[pos[j], pos[i]] = max(0.0, cost) * SAFE
        for a, b, _, cost in self.measured_pairs(g, ("tie", "medoid"), pos):
            E[a, b] = E[b, a] = min(E[a, b], cost)  # a measured pair prices itself
        return [KindBound("tie/medoid", int(g.sizes[family[0]]), 0, np.zeros(n), E)]

    # ---- in a model -------------------------------------------------------------------------------------
    def shared_parameter(self, g: GraphStatistics, cl: SharingClass, mods: dict[str, nn.Module]) -> nn.Parameter:
        first = weight_of(mods[g.module_names[cl.members[0]]])
        W = g.to_layout(cl.members[0], tie_center(g, cl.members))
        return nn.Parameter(W.contiguous(), requires_grad=first.requires_grad)

    def check_placement(self, g: GraphStatistics, cl: SharingClass, mods: dict[str, nn.Module]) -> None:
        devices = {str(weight_of(mods[g.module_names[i]]).device) for i in cl.members}
        if len(devices) > 1:
            raise ValueError(f"cannot place a {self.name} class across devices: "
                             f"{', '.join(g.module_names[i] for i in cl.members)} sit on {', '.join(sorted(devices))}, "
                             "and one weight tensor cannot be on each (a basis or input class can: its shared "
                             "factor follows the input); the graph of this model offers no such class")

    def apply(self, g: GraphStatistics, cl: SharingClass, target: nn.Module, mods: dict[str, nn.Module]) -> None:
        shared = self.shared_parameter(g, cl, mods)
        for i in cl.members:
            mods[g.module_names[i]].weight = shared
