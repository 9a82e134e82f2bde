"""``basis``: the class's members share a left basis U (d_out x r, orthonormal), each keeps its coefficients
C_i = U^T W_i (r x d_in); stores ``d_out r + k r d_in`` (Basis Sharing's construction, a singleton is a
low-rank layer).

For the input-aware estimators (``kfac``, ``layerwise``: ``quad_i(D) = h_i/2 tr(D Sigma_i D^T)``) a shared
basis of rank r costs half the discarded tail of the spectrum of ``sum_i h_i W_i Sigma_i W_i^T``. One
eigendecomposition serves the whole rank menu, and it is taken on the smaller side: ``d_out x d_out``, or
the Gram matrix of the whitened stack ``[W_1 L_1, ..., W_k L_k]`` (``k d_in`` square) when that is smaller
(``Sigma_i = L_i L_i^T``; gate/up projections of a LLaMA are 1536 x 576).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ...formulations.bounds import KindBound
from ...formulations.costs import Option
from ..targets import bias_of, weight_of
from .base import (
    SAFE,
    Action,
    GraphStatistics,
    SharedLinear,
    Spectrum,
    host_spectrum,
    parent_of,
    relative_errors,
    tails,
)

if TYPE_CHECKING:
    from ...formulations.graph import SharingClass


class BasisLinear(SharedLinear):
    """``y = x C^T U^T + b``: a linear layer whose weight U @ C uses a basis U shared across its class."""

    def __init__(self, basis: nn.Parameter, coeff: nn.Parameter, bias: nn.Parameter | None) -> None:
        super().__init__()
        self.basis, self.coeff = basis, coeff
        self._set_bias(bias)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.basis, self.coeff

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a basis shared across devices (accelerate's device_map) is stored once, on its first member's
        # device, and follows the input to the others
        y = (x @ self.coeff.T) @ self.basis.to(x.device).T
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}"


def _dims(g: GraphStatistics, group: Sequence[int]) -> tuple[int, int]:
    s = g.shapes[group[0]]
    return s[0], int(np.prod(s[1:]))


def _memory(g: GraphStatistics, group: Sequence[int], rank: int) -> int:
    """What a shared basis of ``rank`` for ``group`` stores, in the graph's unit: U and every member's C."""
    d_out, d_in = _dims(g, group)
    return g.per_value * (d_out * rank + len(group) * rank * d_in)


def _side(g: GraphStatistics, group: tuple[int, ...]) -> str:
    d_out, d_in = _dims(g, group)
    return "in" if g.input_aware(group[0]) and len(group) * d_in < d_out else "out"


def _whitened(g: GraphStatistics, i: int) -> torch.Tensor:
    """``W_i L_i`` (d_out x d_in, cached)."""
    return g.whitened(i)


def decompose(g: GraphStatistics,
              group: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor] | None]:
    """Eigenvalues (descending) of the group's whitened Gram ``sum_i h_i W_i Sigma_i W_i^T`` and its left
    eigenvectors U (d_out x m, orthonormal), on the smaller side. On the ``k d_in`` side only the positive
    spectrum has vectors, and the members' whitened blocks ``W_i L_i`` come back too (None on the other)."""
    home = g.home(group)  # members on several devices: computed on the first one's
    if _side(g, group) == "in":
        Z = torch.cat([_whitened(g, i).to(home) for i in group], dim=1)
        vals, V = torch.linalg.eigh(Z.T @ Z)
        vals, V = vals.flip(0).clamp(min=0), V.flip(1)
        pos = vals > vals[0] * 1e-13 if len(vals) and vals[0] > 0 else torch.zeros_like(vals, dtype=torch.bool)
        d_in = Z.shape[1] // len(group)
        return vals, (Z @ V[:, pos]) / vals[pos].sqrt(), list(Z.split(d_in, dim=1))
    vals, U = torch.linalg.eigh(sum(g.gram(i).to(home) for i in group))
    return vals.flip(0).clamp(min=0), U.flip(1), None


def spectrum(g: GraphStatistics, group: tuple[int, ...]) -> Spectrum:
    """Eigenvalues and per-member relative errors of ``group``'s shared basis at every rank (cached)."""
    hit = g.spectra.get(group)
    if hit is not None:
        return hit
    vals, U, blocks = decompose(g, group)
    g.cached(("U", group), lambda: U)  # the probes and apply ask for the vectors next: one eigh, not two
    if blocks is not None:
        proj = torch.stack([((U.T @ B) ** 2).sum(1) for B in blocks])
        tot = torch.stack([(B * B).sum() for B in blocks])
    else:
        grams = [g.gram(i).to(U.device) for i in group]
        proj = torch.stack([((U.T @ G) * U.T).sum(1) for G in grams])
        tot = torch.stack([torch.trace(G) for G in grams])
    # captured energy per member and rank, the relative errors computed where the data is, one transfer
    spec = host_spectrum(vals, relative_errors(proj, tot, len(vals)))
    g.spectra.put(group, spec)
    if len(group) == 2:
        g.pairs("basis")[group] = tails(spec.vals, g.menu(group[0]))
    return spec


def basis_vectors(g: GraphStatistics, group: tuple[int, ...], rank: int) -> torch.Tensor:
    """The shared basis U (d_out x rank, orthonormal) of ``group``."""
    U = g.cached(("U", group), lambda: decompose(g, group)[1])
    if U.shape[1] >= rank:
        return U[:, :rank]
    # fewer directions carry energy than the rank asks for: complete U to an orthonormal d_out x rank basis
    return torch.linalg.qr(U, mode="complete")[0][:, :rank]


def basis_factors(g: GraphStatistics, group: Sequence[int], rank: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Shared basis U (d_out x rank, orthonormal) and per-layer coefficients C_i = U^T W_i (rank x d_in)."""
    U = basis_vectors(g, tuple(group), rank)
    return U, [U.T @ g.weight(i, U.device) for i in group]


def _generic(g: GraphStatistics, group: tuple[int, ...], ranks: Sequence[int], trust: bool = True) -> list[Option]:
    """Basis costs for the diagonal / spectral / scalar estimators: the left singular basis of the stack,
    costs by each member's own quadratic form, grown rank by rank."""
    d_out, d_in = _dims(g, group)
    vecs = g.cached(("U", group), lambda: decompose(g, group)[1])
    Ws = [g.weight(i, vecs.device) for i in group]
    coeffs = [vecs.T @ W for W in Ws]
    approx = [torch.zeros_like(W) for W in Ws]
    done = 0
    out = []
    for r in ranks:
        for a, C in zip(approx, coeffs):
            a += vecs[:, done:r] @ C[done:r]
        done = r
        errs = [g.curvatures[i].quad(a - W) for a, W, i in zip(approx, Ws, group)]
        if not trust or g.fits(e / max(g.energy(i), 1e-300) for e, i in zip(errs, group)):
            out.append(Option("basis", math.fsum(errs), _memory(g, group, r), params={"rank": int(r)}))
    return out


def basis_option(g: GraphStatistics, group: Sequence[int], rank: int, trust: bool = True) -> Option | None:
    """The exact cost and memory of a shared basis of any ``rank`` for ``group`` (None if out of the trust
    region, unless ``trust=False``)."""
    group = tuple(sorted(group))
    d_out, d_in = _dims(g, group)
    mem = _memory(g, group, rank)
    if g.input_aware(group[0]):
        spec = spectrum(g, group)
        r = min(rank, len(spec.vals))
        if trust and not g.fits(spec.rel_err[:, r]):
            return None
        return Option("basis", 0.5 * float(spec.vals[r:].sum()), mem, params={"rank": int(rank)})
    return next(iter(_generic(g, group, [rank], trust)), None)


def _gram_of(z: torch.Tensor) -> Callable[[], torch.Tensor]:
    return lambda: z.T @ z


def pair_tails(g: GraphStatistics, a: int, b: int) -> np.ndarray:
    """Half the tail of the pair's whitened spectrum at every rank of its menu, from its eigenvalues only."""
    group = (a, b)
    if _side(g, group) == "in":
        home = g.device_of(a)
        za, zb = _whitened(g, a), _whitened(g, b)
        gaa, gbb = (g.cached(("zz", i), _gram_of(z)).to(home) for i, z in zip(group, (za, zb)))
        cross = za.T @ zb.to(home)
        big = torch.cat([torch.cat([gaa, cross], 1), torch.cat([cross.T, gbb], 1)], 0)
    else:
        big = g.gram(a) + g.gram(b).to(g.device_of(a))
    vals = torch.linalg.eigvalsh(big).flip(0).clamp(min=0).cpu().numpy()
    return tails(vals, g.menu(a))


class Basis(Action):
    name = "basis"
    layer = BasisLinear
    pair_kind = "basis"
    needs_rank = True

    def options(self, g: GraphStatistics, group: tuple[int, ...]) -> list[Option]:
        if not g.is_linear[group[0]]:
            return []
        d_out, d_in = _dims(g, group)
        m = int(g.sizes[group[0]])
        ranks = [r for r in g.menu(group[0]) if _memory(g, group, r) < len(group) * m]
        if not g.input_aware(group[0]):
            return _generic(g, group, ranks)
        spec = spectrum(g, group)
        out = []
        for r, cost in zip(ranks, tails(spec.vals, ranks)):
            if g.fits(spec.rel_err[:, min(r, len(spec.vals))]):
                out.append(Option("basis", float(cost), _memory(g, group, r), params={"rank": int(r)}))
        return out

    def class_option(self, g: GraphStatistics, group: tuple[int, ...], memory: int, trust: bool) -> Option | None:
        if not g.is_linear[group[0]]:
            return None
        d_out, d_in = _dims(g, group)
        rank, rest = divmod(int(memory), g.per_value * (d_out + len(group) * d_in))
        return basis_option(g, group, rank, trust) if rank > 0 and not rest else None

    def weights(self, g: GraphStatistics, members: tuple[int, ...], rank: int | None,
                representative: int | None, bits: int = 16) -> list[torch.Tensor]:
        U, Cs = basis_factors(g, members, self.rank_of(rank))
        return [(U @ C).to(g.device_of(i)) for i, C in zip(members, Cs)]

    # ---- bounds: half the tail of a sum of PSD matrices is concave and homogeneous (Ky Fan) ---------------
    def reads_pairs(self, g: GraphStatistics, family: tuple[int, ...]) -> bool:
        return g.is_linear[family[0]] and g.input_aware(family[0])

    def pair_data(self, g: GraphStatistics, a: int, b: int) -> np.ndarray | None:
        if not self.reads_pairs(g, (a, b)):
            return None
        spectrum(g, (a,)), spectrum(g, (b,))
        return pair_tails(g, a, b)

    def bounds(self, g: GraphStatistics, family: tuple[int, ...], pos: dict[int, int]) -> list[KindBound] | None:
        """A shared basis of rank r costs at least its members' own rank-r costs plus ``1/(k-1)`` of every
        evaluated pair's excess over them; a member that leaves the trust region alone at rank r leaves it in
        any group (its own basis is its best rank-r subspace)."""
        i0 = family[0]
        if not g.is_linear[i0]:
            return []
        if not g.input_aware(i0):
            return None  # no bound known for these estimators: columns are not generated
        d_out, d_in = _dims(g, family)
        menu = g.menu(i0)
        n = len(family)
        specs = [spectrum(g, (i,)) for i in family]
        own = np.stack([tails(s.vals, menu) for s in specs])  # member x rank
        fits = np.stack([s.rel_err[0, np.minimum(menu, len(s.vals))] <= g.trust_region + 1e-12
                         if g.trust_region is not None else np.ones(len(menu), dtype=bool) for s in specs])
        E = np.zeros((len(menu), n, n))
        for (i, j), tl in g.pairs("basis").items():
            if i in pos and j in pos:
                a, b = pos[i], pos[j]
                E[:, a, b] = E[:, b, a] = np.maximum(0.0, tl - own[a] - own[b]) * SAFE
        col = {_memory(g, family[:2], r): k for k, r in enumerate(menu)}  # a pair's basis memory -> rank
        for a, b, mem, cost in self.measured_pairs(g, ("basis",), pos):
            if mem in col:
                k = col[mem]
                E[k, a, b] = E[k, b, a] = min(E[k, a, b], cost - own[a, k] - own[b, k])  # may be < 0
        pv = g.per_value
        return [KindBound(f"basis r={r}", pv * d_out * r, pv * r * d_in, np.where(fits[:, k], own[:, k], np.inf), E[k])
                for k, r in enumerate(menu)]

    # ---- in a model -------------------------------------------------------------------------------------
    def apply(self, g: GraphStatistics, cl: SharingClass, target: nn.Module, mods: dict[str, nn.Module]) -> None:
        first = weight_of(mods[g.module_names[cl.members[0]]])
        U, Cs = basis_factors(g, cl.members, self.rank_of((cl.params or {}).get("rank")))
        basis = nn.Parameter(U.to(dtype=first.dtype, device=first.device))
        for i, C in zip(cl.members, Cs):
            name = g.module_names[i]
            parent, attr = parent_of(target, name)
            own = weight_of(mods[name])  # each member's coefficients on its own device; the basis on the first's
            coeff = nn.Parameter(C.to(dtype=first.dtype, device=own.device))
            setattr(parent, attr, BasisLinear(basis, coeff, bias_of(mods[name])))

    def empty_layer(self, spec: dict[str, Any], dtype: torch.dtype, device: Any,
                    bias: nn.Parameter | None) -> SharedLinear:
        basis = nn.Parameter(torch.empty(spec["out"], spec["rank"], dtype=dtype, device=device))
        coeff = nn.Parameter(torch.empty(spec["rank"], spec["in"], dtype=dtype, device=device))
        return BasisLinear(basis, coeff, bias)
