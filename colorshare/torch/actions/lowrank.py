"""``lowrank``: a layer alone as the product of two factors stored in fewer bits, ``W ~ U C``: U (d_out x r) the
top whitened left singular vectors (the ``basis`` action's for a singleton: SVD-LLM's factorization) and
``C = U^T W`` (r x d_in), each packed in ``bits`` (:mod:`colorshare.torch.quant`; Dobi-SVD's quantized
factors). Offered where the graph counts bytes.

Its cost is the truncated tail (exact, from the spectrum) plus the rounding of the two factors, which are nearly
orthogonal to it in the whitened metric:

- C is rounded by GPTQ under the layer's input covariance, and ``U E_C`` costs ``h/2 tr(E_C Sigma E_C^T)`` (U is
  orthonormal); rows are independent, so one pass over the full-rank C prices every rank;
- U's inputs are the latent directions, whose covariance is the spectrum itself (``h C Sigma C^T = diag(lambda)``):
  its rounding ``E_U`` costs ``1/2 sum_k lambda_k |e_k|^2`` over its columns; round-to-nearest (error feedback
  gains nothing under a diagonal covariance), priced at each rank.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from ...formulations.costs import Option
from ..quant import QuantLinear, gptq, group_size, rtn, stored_bytes
from ..targets import bias_of, weight_of
from .base import Action, GraphStatistics, SharedLinear, parent_of, tails
from .basis import BasisLinear, basis_vectors, spectrum

if TYPE_CHECKING:
    from ...formulations.graph import SharingClass

LOWRANK_BITS = (8, 4, 3)
"""The bit-widths of a low-rank layer's factors (2 bits loses most of a factor's directions)."""


class LowRankLinear(SharedLinear):
    """``y = U_q (C_q x) + b``: a low-rank layer whose factors are packed :class:`QuantLinear` s (no dense copy)."""

    def __init__(self, basis: QuantLinear, coeff: QuantLinear, bias: nn.Parameter | None) -> None:
        super().__init__()
        self.basis, self.coeff = basis, coeff
        self.bias = bias
        self.in_features, self.out_features = coeff.in_features, basis.out_features

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.basis.weight, self.coeff.weight

    @property
    def rank(self) -> int:
        return self.coeff.out_features

    @property
    def bits(self) -> int:
        return self.coeff.bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.basis(self.coeff(x))
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, "
                f"bits={self.bits}")


def _memory(d_out: int, d_in: int, rank: int, bits: int) -> int:
    return stored_bytes(d_out, rank, bits) + stored_bytes(rank, d_in, bits)


def coefficient_rounding(g: GraphStatistics, i: int, bits: int) -> np.ndarray:
    """Layer i's cost of rounding its coefficients C (GPTQ) at every rank 0..m: the cumulative row costs
    (cached)."""
    def make() -> torch.Tensor:
        spec = spectrum(g, (i,))
        U = basis_vectors(g, (i,), max(1, len(spec.vals)))
        W = g.weight(i, U.device)
        C = U.T @ W
        c = g.curvatures[i]
        sigma = c.covariance(U.device)
        E = gptq(C, sigma, bits).dequantize(torch.float64) - C
        rows = 0.5 * c.scale * torch.einsum("ki,ij,kj->k", E, sigma, E)
        return torch.cat([rows.new_zeros(1), rows.cumsum(0)])
    return g.cached(("lowrank C", i, bits), make).cpu().numpy()


def basis_rounding(g: GraphStatistics, i: int, rank: int, bits: int) -> float:
    """The cost of rounding layer i's rank-``rank`` basis U (round-to-nearest, groups along the rank)."""
    spec = spectrum(g, (i,))
    U = basis_vectors(g, (i,), rank)
    E = rtn(U, bits, group_size(rank, bits)).dequantize(torch.float64) - U
    lam = torch.as_tensor(np.r_[spec.vals, np.zeros(max(0, rank - len(spec.vals)))][:rank], dtype=E.dtype,
                          device=E.device)
    return 0.5 * float(((E * E).sum(0) * lam).sum())


def lowrank_cost(g: GraphStatistics, i: int, rank: int, bits: int) -> tuple[float, float]:
    """(cost, relative error) of layer i as rank-``rank`` factors in ``bits``: tail + rounding of C and U."""
    spec = spectrum(g, (i,))
    tail = float(tails(spec.vals, [rank])[0])
    cum = coefficient_rounding(g, i, bits)
    cost = tail + float(cum[min(rank, len(cum) - 1)]) + basis_rounding(g, i, rank, bits)
    return cost, cost / max(g.energy(i), 1e-300)


def quantized_factors(g: GraphStatistics, i: int, rank: int, bits: int) -> tuple[Any, Any]:
    """Layer i's rank-``rank`` factors quantized: (U at ``bits``, C by GPTQ under its input covariance)."""
    U = basis_vectors(g, (i,), rank)
    W = g.weight(i, U.device)
    C = U.T @ W
    qC = gptq(C, g.curvatures[i].covariance(U.device), bits)
    qU = rtn(U, bits, group_size(rank, bits))
    return qU, qC


class LowRank(Action):
    name = "lowrank"
    layer = LowRankLinear
    needs_rank = True
    plan_fields = (frozenset({"in", "out", "rank", "bits"}), frozenset({"group_basis", "group_coeff", "bias"}))

    def _offered(self, g: GraphStatistics, group: tuple[int, ...]) -> bool:
        i = group[0]
        return (len(group) == 1 and g.is_linear[i] and len(g.shapes[i]) == 2 and g.input_aware(i)
                and any(b < 16 for b in g.bits_menu))

    def options(self, g: GraphStatistics, group: tuple[int, ...]) -> list[Option]:
        if not self._offered(g, group):
            return []
        i = group[0]
        d_out, d_in = g.shapes[i]
        out = []
        for bits in (b for b in g.bits_menu if b in LOWRANK_BITS):
            for r in g.menu(i):
                if bits < 8 and r % 32:  # groups of 32 or 64 along the rank: what the int4 kernel takes
                    continue
                mem = _memory(d_out, d_in, r, bits)
                if mem >= g.memory(d_out, d_in, bits):  # no smaller than the whole layer at these bits
                    break
                cost, rel = lowrank_cost(g, i, r, bits)
                if g.fits([rel]):
                    out.append(Option(self.name, cost, mem, params={"rank": int(r), "bits": bits}))
        return out

    def class_option(self, g: GraphStatistics, group: tuple[int, ...], memory: int, trust: bool) -> Option | None:
        if not self._offered(g, group):
            return None
        i = group[0]
        d_out, d_in = g.shapes[i]
        for bits in (b for b in g.bits_menu if b in LOWRANK_BITS):
            for r in range(1, min(d_out, d_in)):
                if _memory(d_out, d_in, r, bits) == memory:
                    cost, rel = lowrank_cost(g, i, r, bits)
                    if not trust or g.fits([rel]):
                        return Option(self.name, cost, memory, params={"rank": r, "bits": bits})
        return None

    def weights(self, g: GraphStatistics, members: tuple[int, ...], rank: int | None,
                representative: int | None, bits: int = 16) -> list[torch.Tensor]:
        i = members[0]
        qU, qC = quantized_factors(g, i, self.rank_of(rank), bits)
        return [(qU.dequantize(torch.float64) @ qC.dequantize(torch.float64)).to(g.device_of(i))]

    def bounds(self, g: GraphStatistics, family: tuple[int, ...], pos: dict[int, int]) -> list[Any] | None:
        return []  # singletons only: no group of 2+ members to bound

    def apply(self, g: GraphStatistics, cl: SharingClass, target: nn.Module, mods: dict[str, nn.Module]) -> None:
        params = cl.params or {}
        i = cl.members[0]
        name = g.module_names[i]
        qU, qC = quantized_factors(g, i, self.rank_of(params.get("rank")), int(params.get("bits", 8)))
        device = weight_of(mods[name]).device
        parent, attr = parent_of(target, name)
        setattr(parent, attr, LowRankLinear(QuantLinear.from_quantized(qU, None, device),
                                            QuantLinear.from_quantized(qC, None, device), bias_of(mods[name])))

    def apply_float(self, g: GraphStatistics, cl: SharingClass, target: nn.Module,
                    mods: dict[str, nn.Module]) -> None:
        i = cl.members[0]
        name = g.module_names[i]
        U = basis_vectors(g, (i,), self.rank_of((cl.params or {}).get("rank")))
        own = weight_of(mods[name])
        C = U.T @ g.weight(i, U.device)
        parent, attr = parent_of(target, name)
        setattr(parent, attr, BasisLinear(nn.Parameter(U.to(dtype=own.dtype, device=own.device)),
                                          nn.Parameter(C.to(dtype=own.dtype, device=own.device)), bias_of(mods[name])))

    def requantize(self, g: GraphStatistics, cl: SharingClass, target: nn.Module,
                   mods: dict[str, nn.Module]) -> None:
        i = cl.members[0]
        name = g.module_names[i]
        layer = mods[name]
        if not isinstance(layer, BasisLinear):
            return
        bits = int((cl.params or {}).get("bits", 8))
        U, C = (t.detach().to(torch.float64) for t in (layer.basis, layer.coeff))
        sigma = g.curvatures[i].covariance(U.device)
        qC = gptq(C, sigma, bits)  # C's inputs are the layer's; U's are the latent C x, covariance C Sigma C^T
        qU = gptq(U, C @ sigma @ C.T, bits, group_size(U.shape[1], bits))
        parent, attr = parent_of(target, name)
        setattr(parent, attr, LowRankLinear(QuantLinear.from_quantized(qU, None, U.device),
                                            QuantLinear.from_quantized(qC, None, U.device), layer.bias))

    def plan_entry(self, module: nn.Module) -> dict[str, Any]:
        assert isinstance(module, LowRankLinear)
        return {"in": module.in_features, "out": module.out_features, "rank": module.rank, "bits": module.bits,
                "group_basis": module.basis.group, "group_coeff": module.coeff.group,
                "bias": module.bias is not None}

    def empty_layer(self, spec: dict[str, Any], dtype: torch.dtype, device: Any,
                    bias: nn.Parameter | None) -> SharedLinear:
        r, bits = int(spec["rank"]), int(spec["bits"])
        basis = QuantLinear(r, spec["out"], bits, int(spec.get("group_basis") or group_size(r, bits)), None, device)
        coeff = QuantLinear(spec["in"], r, bits, int(spec.get("group_coeff") or group_size(spec["in"], bits)), None,
                            device)
        return LowRankLinear(basis, coeff, bias)
