"""``input``: layers fed the very same tensor (q/k/v, gate/up) share one input-side factor B (r x d_in), each
keeps A_j (d_out_j x r), ``W_j ~ A_j B``; stores ``r (d_in + sum_j d_out_j)``, and ``x B^T`` is computed once
per forward for the whole class.

The members read one input, so its covariance is common and B spans the top right singular directions of the
stacked whitened weights: the cost is half the discarded eigenvalues of ``sum_j Z_j^T Z_j`` (``Z_j = W_j L``).
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ...formulations.costs import Option
from ..curvature import KRONECKER
from ..targets import bias_of, weight_of
from .base import Action, GraphStatistics, SharedLinear, Spectrum, host_spectrum, parent_of, relative_errors, tails

if TYPE_CHECKING:
    from ...formulations.graph import SharingClass


def _version(t: torch.Tensor) -> int:
    """A tensor's in-place version counter; -1 for an inference-mode tensor, which keeps none (the cache then
    tells inputs apart by identity alone)."""
    return -1 if t.is_inference() else t._version


class _FactorCache:
    """``x @ B^T`` for the input a group of layers was last called with: the first member of the group
    computes it, the others (fed the very same tensor, as q/k/v and gate/up are) reuse it. ``computed`` counts
    the products (a test counts one per forward)."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.ref: Any = None
        self.value: torch.Tensor | None = None
        self.computed = 0

    def __deepcopy__(self, memo: dict) -> _FactorCache:
        return _FactorCache()  # a copy starts empty (the cached product belongs to the original's tensors)

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.key, self.ref, self.value, self.computed = None, None, None, 0

    def get(self, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        key = (x.data_ptr(), tuple(x.shape), _version(x), _version(factor), torch.is_grad_enabled())
        if self.value is None or self.key != key or self.ref() is not x:
            self.value = x @ factor.to(x.device).T
            self.key, self.ref = key, weakref.ref(x)
            self.computed += 1
        return self.value


def factor_cache(factor: nn.Parameter) -> _FactorCache:
    """The cache of the layers that share ``factor``: kept on the parameter itself, so that the members of a
    group share it (also after load_shared re-ties them, and in a deep copy)."""
    cache = getattr(factor, "_colorshare_cache", None)
    if cache is None:
        cache = _FactorCache()
        setattr(factor, "_colorshare_cache", cache)  # noqa: B010 - an attribute torch does not declare
    return cache


class InputFactorLinear(SharedLinear):
    """``y = (x B^T) A^T + b``: a linear layer whose weight A @ B shares its input-side factor B (rank x d_in)
    with the other layers fed the same input; ``x B^T`` is computed once for all of them per forward."""

    def __init__(self, factor: nn.Parameter, coeff: nn.Parameter, bias: nn.Parameter | None) -> None:
        super().__init__()
        self.factor, self.coeff = factor, coeff
        self._set_bias(bias)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.coeff, self.factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = factor_cache(self.factor).get(x, self.factor) @ self.coeff.T
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank} (shared input)"


def _d_in(g: GraphStatistics, group: Sequence[int]) -> int:
    return int(np.prod(g.shapes[group[0]][1:]))


def input_menu(g: GraphStatistics, group: Sequence[int]) -> list[int]:
    """The rank menu of a shared input factor of ``group``: the menu rule at (sum of d_out, d_in)."""
    d_in = _d_in(g, group)
    shape = (sum(g.shapes[i][0] for i in group), d_in)
    return [r for r in g.rank_rule(shape) if 0 < r < d_in]


def _whitened_members(g: GraphStatistics, group: tuple[int, ...]) -> list[torch.Tensor]:
    home = g.home(group)
    return [g.whitened(i).to(home) for i in group]


def _decomposition(g: GraphStatistics, group: tuple[int, ...]) -> torch.Tensor:
    """Row 0: the eigenvalues (descending) of ``sum_j Z_j^T Z_j``; below it their eigenvectors V (d_in x d_in,
    whitened input directions). Kept in the byte-bounded cache, recomputed if evicted."""
    def decompose() -> torch.Tensor:
        vals, V = torch.linalg.eigh(sum(Z.T @ Z for Z in _whitened_members(g, group)))
        return torch.cat([vals.flip(0).clamp(min=0)[None], V.flip(1)], 0)

    return g.cached(("in", group), decompose)


def input_spectrum(g: GraphStatistics, group: tuple[int, ...]) -> Spectrum:
    """Eigenvalues (descending) of ``sum_j Z_j^T Z_j`` (``Z_j = W_j L_j``, one input covariance) and each
    member's relative error per rank (cached: a hit reads no statistics)."""
    spec = g.spectra.get(("in", group))
    if spec is None:
        packed = _decomposition(g, group)
        vals, V = packed[0], packed[1:]
        Zs = _whitened_members(g, group)
        proj = torch.stack([((Z @ V) ** 2).sum(0) for Z in Zs])
        tot = torch.stack([(Z * Z).sum() for Z in Zs])
        spec = host_spectrum(vals, relative_errors(proj, tot, proj.shape[1]))
        g.spectra.put(("in", group), spec)
    return spec


def input_factors(g: GraphStatistics, group: Sequence[int], rank: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The shared input factor B (rank x d_in) and each member's A_j (d_out_j x rank), float64, with
    ``A_j B = W_j L V V^T L^+`` (L the input covariance's root, V the top ``rank`` directions)."""
    group = tuple(sorted(group))
    V = _decomposition(g, group)[1:]
    root = g.sigma_root(group[0])  # columns v_k sqrt(l_k): the pseudo-inverse's rows are v_k / sqrt(l_k)
    evals = (root * root).sum(0)
    pos = evals > evals.max().clamp(min=1e-300) * 1e-12
    pinv = torch.zeros_like(root).T.contiguous()
    pinv[pos] = (root[:, pos] / evals[pos]).T
    Vr = V[:, :rank]
    if Vr.shape[1] < rank:  # fewer directions than the rank: complete the basis
        Vr = torch.linalg.qr(torch.cat([Vr, torch.eye(V.shape[0], dtype=V.dtype, device=V.device)], 1))[0][:, :rank]
    B = Vr.T @ pinv
    return B, [g.weight(i, root.device) @ root @ Vr for i in group]


class InputFactor(Action):
    name = "input"
    scope = "input"
    layer = InputFactorLinear
    needs_rank = True

    def scopes(self, g: GraphStatistics) -> list[tuple[int, ...]]:
        """Layers fed the very same tensor (the statistics pass shares their covariance object: q/k/v, gate/up),
        of more than one family (a fused projection is one layer already)."""
        by_input: dict[int, list[int]] = {}
        for i, c in enumerate(g.curvatures):
            if c.kind == KRONECKER and g.is_linear[i] and c.sigma_in is not None:
                by_input.setdefault(id(c.sigma_in), []).append(i)
        return [tuple(m) for m in by_input.values() if len(m) > 1 and len({g.families[i] for i in m}) > 1]

    def options(self, g: GraphStatistics, group: tuple[int, ...]) -> list[Option]:
        if len(group) < 2 or not all(g.is_linear[i] and g.input_aware(i) for i in group):
            return []
        spec = input_spectrum(g, group)
        d_in = _d_in(g, group)
        outs = sum(g.shapes[i][0] for i in group)
        dense = sum(int(g.sizes[i]) for i in group)
        ranks = [r for r in input_menu(g, group) if g.per_value * r * (d_in + outs) < dense]
        out = []
        for r, cost in zip(ranks, tails(spec.vals, ranks)):
            if g.fits(spec.rel_err[:, min(r, len(spec.vals))]):
                out.append(Option("input", float(cost), g.per_value * r * (d_in + outs), params={"rank": int(r)}))
        return out

    def class_option(self, g: GraphStatistics, group: tuple[int, ...], memory: int, trust: bool) -> Option | None:
        if len(group) < 2 or not g.in_scope(group):
            return None
        rank, rest = divmod(int(memory), g.per_value * (_d_in(g, group) + sum(g.shapes[i][0] for i in group)))
        if rank <= 0 or rest:
            return None
        spec = input_spectrum(g, group)
        rr = min(rank, len(spec.vals))
        if trust and not g.fits(spec.rel_err[:, rr]):
            return None
        return Option("input", 0.5 * float(spec.vals[rr:].sum()), int(memory), params={"rank": rank})

    def weights(self, g: GraphStatistics, members: tuple[int, ...], rank: int | None,
                representative: int | None, bits: int = 16) -> list[torch.Tensor]:
        B, As = input_factors(g, members, self.rank_of(rank))
        return [(A @ B).to(g.device_of(i)) for i, A in zip(members, As)]

    def apply(self, g: GraphStatistics, cl: SharingClass, target: nn.Module, mods: dict[str, nn.Module]) -> None:
        first = weight_of(mods[g.module_names[cl.members[0]]])
        B, As = input_factors(g, cl.members, self.rank_of((cl.params or {}).get("rank")))
        factor = nn.Parameter(B.to(dtype=first.dtype, device=first.device))
        for i, A in zip(cl.members, As):
            name = g.module_names[i]
            old = mods[name]
            parent, attr = parent_of(target, name)
            own = weight_of(old)
            coeff = nn.Parameter(A.to(dtype=own.dtype, device=own.device))
            setattr(parent, attr, InputFactorLinear(factor, coeff, bias_of(old)))

    def empty_layer(self, spec: dict[str, Any], dtype: torch.dtype, device: Any,
                    bias: nn.Parameter | None) -> SharedLinear:
        factor = nn.Parameter(torch.empty(spec["rank"], spec["in"], dtype=dtype, device=device))
        coeff = nn.Parameter(torch.empty(spec["out"], spec["rank"], dtype=dtype, device=device))
        return InputFactorLinear(factor, coeff, bias)
