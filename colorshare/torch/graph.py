"""Model -> graph: families by shape and role, curvature per layer, exact cost and memory of every action.

The graph keeps references to the model's own weights (no float64 copy of the model) and per-layer
statistics on each layer's device. A group's costs are computed when a solver asks for them, from its
members' statistics (a group's statistics are sums of its layers'), on the members' device.

For the input-aware estimators (``kfac``, ``layerwise``: ``quad_i(D) = h_i/2 tr(D Sigma_i D^T)``) a shared
basis of rank r costs half the discarded tail of the spectrum of ``sum_i h_i W_i Sigma_i W_i^T``. One
eigendecomposition serves the whole rank menu, and it is taken on the smaller side: ``d_out x d_out``, or
the Gram matrix of the whitened stack ``[W_1 L_1, ..., W_k L_k]`` (``k d_in`` square) when that is smaller
(``Sigma_i = L_i L_i^T``; gate/up projections of a LLaMA are 1536 x 576).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..formulations.bounds import FamilyBound, KindBound
from ..formulations.costs import GroupCosts, Option
from ..formulations.graph import SharingGraph
from .curvature import DEFAULT_CURVATURE, Curvature, estimate, matrix_of
from .targets import role_of, select_modules

__all__ = ["ModelGraph", "build_graph", "ACTIONS", "DEFAULT_ACTIONS", "DEFAULT_TRUST_REGION", "DEFAULT_MAX_GROUP_SIZE",
           "rank_menu"]

ACTIONS = ("tie", "medoid", "basis", "input", "dense")
DEFAULT_ACTIONS = ("tie", "basis", "input", "dense")
DEFAULT_TRUST_REGION = 0.6
"""Default cap on each layer's relative whitened error ``||(W' - W) L||^2 / ||W L||^2`` (see build_graph)."""
DEFAULT_MAX_GROUP_SIZE = 2
"""Default largest sharing class of a model's graph when it may share bases (see build_graph)."""


def _check_trust_region(trust_region: Any) -> float | None:
    if trust_region is not None and not (isinstance(trust_region, (int, float)) and 0 < trust_region <= 1):
        raise ValueError(f"trust_region must be None or a relative error in (0, 1], got {trust_region!r}")
    return None if trust_region is None else float(trust_region)


class _LRU:
    """A cache bounded by bytes of tensors held (pitfalls.md: caches keyed by group grow with groups)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.data: OrderedDict[Any, torch.Tensor] = OrderedDict()

    def get(self, key: Any, make: Callable[[], torch.Tensor]) -> torch.Tensor:
        if key in self.data:
            self.data.move_to_end(key)
            return self.data[key]
        value = make()
        size = value.numel() * value.element_size()
        if size <= self.max_bytes:
            self.data[key] = value
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, old = self.data.popitem(last=False)
                self.bytes -= old.numel() * old.element_size()
        return value


@dataclass
class _Spectrum:
    """A group's whitened spectrum: eigenvalues (descending, CPU float64) and each member's relative error
    per rank (``rel_err[k, r]`` = discarded fraction of member k's whitened energy at rank r)."""

    vals: np.ndarray
    rel_err: np.ndarray


class _PairCosts:
    """What every evaluated pair costs without a trust region, kept for the pair bounds (small: per pair one
    float per menu rank and one for the tie): ``basis[pair]`` = half the tail of the pair's spectrum at each
    rank of its family's menu, ``tie[pair]`` = the tie's cost."""

    def __init__(self) -> None:
        self.basis: dict[tuple[int, int], np.ndarray] = {}
        self.tie: dict[tuple[int, int], float] = {}


def _tails(vals: np.ndarray, ranks: Sequence[int]) -> np.ndarray:
    """Half the sum of the eigenvalues beyond each rank (``vals`` descending): a rank-r basis's cost."""
    tail = np.concatenate([np.cumsum(vals[::-1])[::-1], [0.0]])
    return 0.5 * tail[np.minimum(np.asarray(ranks, dtype=int), len(vals))]


def rank_menu(shape: tuple[int, ...]) -> list[int]:
    """The default rank menu: multiples of a step (8 below 512, then 16 per 1024 of ``min(d_out, d_in)``)."""
    d = min(shape[0], int(np.prod(shape[1:])))
    step = 8 if d < 512 else 16 * math.ceil(d / 1024)
    return list(range(step, d, step)) or [max(1, d // 2)]


_MODEL_STATE = ("module_names", "shapes", "_params", "curvatures", "is_linear", "_actions", "_menus", "_rank_rule",
                "scopes", "_scope_of", "_cache",
                "_spectra", "_max_spectra", "_energies", "probe_ratios", "_pairs", "max_group_size", "_measured")
"""What a :class:`ModelGraph` holds beyond its :class:`SharingGraph` (set by build_graph)."""


class ModelGraph(SharingGraph):
    """A :class:`SharingGraph` built from a model: it keeps references to each layer's weight and its
    curvature, so the shared tensors of a solution are computed exactly as the costs were."""

    module_names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    curvatures: list[Curvature]
    is_linear: list[bool]
    trust_region: float | None

    # ---- weights, on their own device ---------------------------------------------------------------------
    def weight(self, i: int) -> torch.Tensor:
        """Layer ``i``'s weight as a float64 d_out x d_in matrix on the layer's (or its curvature's) device."""
        W = matrix_of(self._params[i].detach())
        c = self.curvatures[i]
        device = c.sigma_in.device if c.sigma_in is not None else W.device
        return W.to(device=device, dtype=torch.float64)

    @property
    def weights(self) -> list[torch.Tensor]:
        """Every layer's weight in float64 (a copy of all of them: for small models and tests only)."""
        return [self.weight(i) for i in range(self.n)]

    def weight_gram(self, group: Sequence[int]) -> np.ndarray:
        """Inner products ``<W_i, W_j>`` of the group's weights (float64, k x k), computed on their device; only
        the k x k result comes to the host."""
        W = torch.stack([self.weight(i).reshape(-1) for i in group])
        return (W @ W.T).cpu().numpy()

    def _reset(self) -> None:
        """Forget every cached quantity (after the curvatures' scales changed)."""
        self._cache = _LRU(self._cache.max_bytes)
        self._spectra = OrderedDict()
        self._energies = {}
        self._pairs = _PairCosts()

    @classmethod
    def _empty(cls, sizes: Sequence[int], names: Sequence[str], families: Sequence[str]) -> ModelGraph:
        """A graph whose cost oracle and bounds are its own ``_options`` and ``_bounds`` (state set by the caller)."""
        holder: dict[str, ModelGraph] = {}
        g = cls(GroupCosts(lambda grp: holder["g"]._options(grp), bounds=lambda fam: holder["g"]._bounds(fam),
                           refine=lambda pairs, deadline=None: holder["g"].refine(pairs, deadline),
                           known_pairs=lambda fam: holder["g"].known_pairs(fam)),
                list(sizes), (), list(names), list(families), n=len(names))
        holder["g"] = g
        return g

    def with_trust_region(self, trust_region: float | None) -> ModelGraph:
        """The same graph (same curvatures and caches, no new statistics) under another trust region."""
        g = ModelGraph._empty(self.sizes, self.names, self.families)
        for key in _MODEL_STATE:
            setattr(g, key, getattr(self, key))
        g._measured = dict(self._measured)  # measured prices are the graph's own from here on
        g.trust_region = _check_trust_region(trust_region)
        return g

    def _input_aware(self, i: int) -> bool:
        return self.curvatures[i].kind == "layerwise"

    # ---- the shared tensors of each action --------------------------------------------------------------
    def tie_center(self, group: Sequence[int]) -> torch.Tensor:
        """The curvature-weighted mean ``argmin_W sum_i quad_i(W - W_i)`` (d_out x d_in, float64)."""
        Ws = [self.weight(i) for i in group]
        cs = [self.curvatures[i] for i in group]
        if cs[0].kind == "layerwise":
            # (S + eps I) W^T = R^T + eps mean^T: input directions the calibration data never excites (dead
            # units, constant pixels) keep the plain mean instead of an arbitrary, unstable least-squares value
            S = sum(c.scale * c.sigma_in for c in cs)
            R = sum(c.scale * (W @ c.sigma_in) for W, c in zip(Ws, cs))
            mean = sum(Ws) / len(Ws)
            eps = 1e-6 * float(torch.trace(S)) / S.shape[0]
            if eps <= 0:
                return mean
            eye = torch.eye(S.shape[0], dtype=S.dtype, device=S.device)
            return torch.linalg.solve(S + eps * eye, (R + eps * mean).T).T
        scales = [c.weight_scale() for c in cs]
        tot = sum(scales)
        num = sum(s * W for s, W in zip(scales, Ws))
        if isinstance(tot, torch.Tensor):
            mean = sum(Ws) / len(Ws)
            return torch.where(tot > 0, num / torch.where(tot > 0, tot, 1.0), mean)
        return num / tot if tot > 0 else sum(Ws) / len(Ws)

    def basis(self, group: Sequence[int], rank: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Shared basis U (d_out x rank, orthonormal) and per-layer coefficients C_i = U^T W_i (rank x d_in)."""
        U = self._basis_vectors(tuple(group), rank)
        return U, [U.T @ self.weight(i) for i in group]

    def class_weights(self, members: Sequence[int], action: str, rank: int | None = None,
                      representative: int | None = None) -> list[torch.Tensor]:
        """Each member's weight under one sharing class (float64, d_out x d_in, on the members' device): what
        :func:`~colorshare.torch.apply_coloring` makes the model compute, without changing the model."""
        members = tuple(members)
        if action == "dense":
            return [self.weight(i) for i in members]
        if action == "tie":
            W = self.tie_center(members)
            return [W for _ in members]
        if action == "medoid":
            if representative is None:
                raise ValueError("a medoid class needs its representative")
            return [self.weight(representative) for _ in members]
        if action == "basis":
            if rank is None:
                raise ValueError("a basis class needs its rank")
            U, Cs = self.basis(members, int(rank))
            return [U @ C for C in Cs]
        if action == "input":
            if rank is None:
                raise ValueError("an input class needs its rank")
            B, As = self.input_factors(members, int(rank))
            return [A @ B for A in As]
        raise ValueError(f"unknown action {action!r}")

    def set_measured(self, members: Sequence[int], action: str, memory: int, cost: float) -> None:
        """Replace the surrogate cost of one option (the class's members, action and parameters stored) by a
        measured one, in the graph's units; solves from then on price that option by it (its bounds too)."""
        group = tuple(sorted(int(i) for i in members))
        if not (math.isfinite(cost) and cost >= 0):
            raise ValueError(f"a measured cost must be finite and >= 0, got {cost!r}")
        self._measured[(group, action, int(memory))] = float(cost)
        self.model.forget(group)  # type: ignore[attr-defined]

    @property
    def measured(self) -> dict[tuple[tuple[int, ...], str, int], float]:
        """The options priced by measurement (:meth:`set_measured`): (members, action, parameters) -> cost."""
        return dict(self._measured)

    # ---- spectra -------------------------------------------------------------------------------------------
    def _root(self, i: int) -> torch.Tensor:
        """``L_i`` with ``h_i Sigma_i = L_i L_i^T`` (symmetric eigen-root: exact for singular Sigma)."""
        c = self.curvatures[i]

        def make() -> torch.Tensor:
            vals, vecs = torch.linalg.eigh(c.sigma_in)
            return vecs * vals.clamp(min=0).sqrt()
        return math.sqrt(c.scale) * self._cache.get(("root", id(c.sigma_in)), make)

    def _gram(self, i: int) -> torch.Tensor:
        """``h_i W_i Sigma_i W_i^T`` (d_out x d_out) for input-aware curvature, else ``W_i W_i^T`` (cached)."""
        def make() -> torch.Tensor:
            W, c = self.weight(i), self.curvatures[i]
            return c.scale * (W @ c.sigma_in @ W.T) if c.kind == "layerwise" else W @ W.T
        return self._cache.get(("gram", i), make)

    def _side(self, group: tuple[int, ...]) -> str:
        d_out, d_in = self.shapes[group[0]][0], int(np.prod(self.shapes[group[0]][1:]))
        return "in" if self._input_aware(group[0]) and len(group) * d_in < d_out else "out"

    def _stack(self, group: tuple[int, ...]) -> torch.Tensor:
        return torch.cat([self._cache.get(("z", i), lambda i=i: self.weight(i) @ self._root(i)) for i in group], dim=1)

    def _decompose(self, group: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor] | None]:
        """Eigenvalues (descending) of the group's whitened Gram ``sum_i h_i W_i Sigma_i W_i^T`` and its left
        eigenvectors U (d_out x m, orthonormal), on the smaller side. On the ``k d_in`` side only the positive
        spectrum has vectors, and the members' whitened blocks ``W_i L_i`` come back too (None on the other)."""
        if self._side(group) == "in":
            Z = self._stack(group)
            vals, V = torch.linalg.eigh(Z.T @ Z)
            vals, V = vals.flip(0).clamp(min=0), V.flip(1)
            pos = vals > vals[0] * 1e-13 if len(vals) and vals[0] > 0 else torch.zeros_like(vals, dtype=torch.bool)
            d_in = Z.shape[1] // len(group)
            return vals, (Z @ V[:, pos]) / vals[pos].sqrt(), list(Z.split(d_in, dim=1))
        vals, U = torch.linalg.eigh(sum(self._gram(i) for i in group))
        return vals.flip(0).clamp(min=0), U.flip(1), None

    def _spectrum(self, group: tuple[int, ...]) -> _Spectrum:
        """Eigenvalues and per-member relative errors of ``group``'s shared basis at every rank."""
        hit = self._spectra.get(group)
        if hit is not None:
            self._spectra.move_to_end(group)
            return hit
        vals, U, blocks = self._decompose(group)
        if blocks is not None:
            proj = torch.stack([((U.T @ B) ** 2).sum(1) for B in blocks])
            tot = torch.stack([(B * B).sum() for B in blocks])
        else:
            grams = [self._gram(i) for i in group]
            proj = torch.stack([((U.T @ G) * U.T).sum(1) for G in grams])
            tot = torch.stack([torch.trace(G) for G in grams])
        # captured energy per member and rank, the relative errors computed where the data is, one transfer
        width = len(vals)
        captured = torch.zeros(len(group), width + 1, dtype=torch.float64, device=vals.device)
        captured[:, 1:proj.shape[1] + 1] = proj.double().cumsum(1)
        captured[:, proj.shape[1] + 1:] = captured[:, proj.shape[1]:proj.shape[1] + 1]
        t = tot.double()[:, None]
        rel = torch.where(t > 0, (1.0 - captured / t.clamp(min=1e-300)).clamp(0.0, 1.0), torch.zeros_like(captured))
        packed = torch.cat([torch.cat([vals.double(), vals.new_zeros(1, dtype=torch.float64)])[None], rel])
        host = packed.cpu().numpy()
        spec = _Spectrum(host[0, :width].copy(), host[1:].copy())
        self._spectra[group] = spec
        if len(group) == 2:
            self._pairs.basis[group] = _tails(spec.vals, self._menus[self.shapes[group[0]]])
        while len(self._spectra) > self._max_spectra:
            self._spectra.popitem(last=False)
        return spec

    def _basis_vectors(self, group: tuple[int, ...], rank: int) -> torch.Tensor:
        U = self._decompose(group)[1]
        if U.shape[1] >= rank:
            return U[:, :rank]
        # fewer directions carry energy than the rank asks for: complete U to an orthonormal d_out x rank basis
        return torch.linalg.qr(U, mode="complete")[0][:, :rank]

    # ---- exact costs --------------------------------------------------------------------------------------
    def _fits(self, errors: Iterable[float]) -> bool:
        return self.trust_region is None or all(e <= self.trust_region + 1e-12 for e in errors)

    def basis_option(self, group: Sequence[int], rank: int, trust: bool = True) -> Option | None:
        """The exact cost and memory of a shared basis of any ``rank`` for ``group`` (None if out of the trust
        region, unless ``trust=False``). Used for the baselines' ranks, which need not be on the menu."""
        group = tuple(sorted(group))
        d_out, d_in = self.shapes[group[0]][0], int(np.prod(self.shapes[group[0]][1:]))
        mem = d_out * rank + len(group) * rank * d_in
        if self._input_aware(group[0]):
            spec = self._spectrum(group)
            r = min(rank, len(spec.vals))
            if trust and not self._fits(spec.rel_err[:, r]):
                return None
            return Option("basis", 0.5 * float(spec.vals[r:].sum()), mem, params={"rank": int(rank)})
        return next(iter(self._generic_basis(group, [rank], trust)), None)

    def _options(self, group: tuple[int, ...]) -> list[Option]:
        family = len({self.families[i] for i in group}) == 1
        out = self._surrogate_options(group) if family else []
        if len(group) > 1 and "input" in self._actions and self.in_scope(group):
            out = out + self._input_options(group)
        if self._measured:
            out = [dataclasses.replace(o, cost=self._measured.get((group, o.action, o.memory), o.cost)) for o in out]
        return out

    def _surrogate_options(self, group: tuple[int, ...]) -> list[Option]:
        actions, ranks = self._actions, self._menus[self.shapes[group[0]]]
        m = int(self.sizes[group[0]])
        out: list[Option] = []
        if len(group) == 1:
            out.append(Option("dense", 0.0, m))
        else:
            if len(group) == 2 and "medoid" in actions and "tie" not in actions and group not in self._pairs.tie:
                self._pairs.tie[group] = math.fsum(self._tie_errors(group))  # medoids are bounded by ties
            for action in ("tie", "medoid"):
                opt = self._shared_tensor(group, action) if action in actions else None
                if opt is not None:
                    out.append(opt)
        if "basis" in actions and self.is_linear[group[0]]:
            d_out, d_in = self.shapes[group[0]][0], int(np.prod(self.shapes[group[0]][1:]))
            ranks = [r for r in ranks if d_out * r + len(group) * r * d_in < len(group) * m]
            if self._input_aware(group[0]):
                spec = self._spectrum(group)
                for r, cost in zip(ranks, _tails(spec.vals, ranks)):
                    if self._fits(spec.rel_err[:, min(r, len(spec.vals))]):
                        out.append(Option("basis", float(cost), d_out * r + len(group) * r * d_in,
                                          params={"rank": int(r)}))
            else:
                out.extend(self._generic_basis(group, ranks))
        return out

    def _shared_tensor(self, group: tuple[int, ...], action: str, trust: bool = True) -> Option | None:
        """The ``tie`` (curvature-weighted center) or ``medoid`` option of ``group``; None if out of the trust
        region (unless ``trust=False``)."""
        if action == "tie":
            errs, rep = self._tie_errors(group), None
            if len(group) == 2:
                self._pairs.tie[group] = math.fsum(errs)  # a tie's cost, for the pair bounds
        else:
            costs = [[self.curvatures[i].quad(self.weight(j) - self.weight(i)) for i in group] for j in group]
            k = min(range(len(group)), key=lambda j: sum(costs[j]))
            errs, rep = costs[k], group[k]
        if trust and not self._fits(e / max(self._energy(i), 1e-300) for e, i in zip(errs, group)):
            return None
        return Option(action, math.fsum(errs), int(self.sizes[group[0]]), representative=rep)

    def class_option(self, group: Sequence[int], action: str, memory: int, trust: bool = True) -> Option | None:
        """The exact option of a class given as (members, action, parameters stored), at any basis rank (on the
        menu or not) and, with ``trust=False``, outside the trust region: how a coloring chosen on another graph
        (another estimator, a baseline) is priced on this one. None if no such option exists."""
        group = tuple(sorted(int(i) for i in group))
        m = int(self.sizes[group[0]])
        if action == "dense":
            return Option("dense", 0.0, m) if len(group) == 1 and memory == m else None
        if action in ("tie", "medoid"):
            return self._shared_tensor(group, action, trust) if len(group) > 1 and memory == m else None
        if action == "basis" and self.is_linear[group[0]]:
            d_out, d_in = self.shapes[group[0]][0], int(np.prod(self.shapes[group[0]][1:]))
            rank, rest = divmod(int(memory), d_out + len(group) * d_in)
            return self.basis_option(group, rank, trust) if rank > 0 and not rest else None
        if action == "input" and len(group) > 1 and self.in_scope(group):
            d_in = int(np.prod(self.shapes[group[0]][1:]))
            rank, rest = divmod(int(memory), d_in + sum(self.shapes[i][0] for i in group))
            if rank <= 0 or rest:
                return None
            spec, _ = self._input_spectrum(group)
            rr = min(rank, len(spec.vals))
            if trust and not self._fits(spec.rel_err[:, rr]):
                return None
            return Option("input", 0.5 * float(spec.vals[rr:].sum()), int(memory), params={"rank": rank})
        return None

    def _tie_errors(self, group: tuple[int, ...]) -> list[float]:
        """Each member's ``quad_i(W* - W_i)`` for the tie center W*; for input-aware curvature from the cached
        ``h_i W_i Sigma_i W_i^T`` and one product per member: ``h/2 (<W* S, W*> - 2 <W_i S, W*> + tr gram_i)``."""
        W = self.tie_center(group)
        if not self._input_aware(group[0]):
            return [self.curvatures[i].quad(W - self.weight(i)) for i in group]
        out = []
        for i in group:
            c, Wi = self.curvatures[i], self.weight(i)
            WS = (W - 2 * Wi) @ c.sigma_in
            val = c.scale * float((WS * W).sum()) + float(torch.trace(self._gram(i)))
            out.append(max(0.0, 0.5 * val))
        return out

    def _energy(self, i: int) -> float:
        """``quad_i(W_i)``: the surrogate of removing layer i entirely (the trust region's denominator)."""
        if i not in self._energies:
            self._energies[i] = 0.5 * float(torch.trace(self._gram(i))) if self._input_aware(i) else \
                self.curvatures[i].quad(self.weight(i))
        return self._energies[i]

    def _generic_basis(self, group: tuple[int, ...], ranks: Sequence[int], trust: bool = True) -> list[Option]:
        """Basis costs for the diagonal / spectral / scalar estimators: the left singular basis of the stack,
        costs by each member's own quadratic form, grown rank by rank."""
        d_out, d_in = self.shapes[group[0]][0], int(np.prod(self.shapes[group[0]][1:]))
        vecs = self._decompose(group)[1]
        Ws = [self.weight(i) for i in group]
        coeffs = [vecs.T @ W for W in Ws]
        approx = [torch.zeros_like(W) for W in Ws]
        done = 0
        out = []
        for r in ranks:
            for a, C in zip(approx, coeffs):
                a += vecs[:, done:r] @ C[done:r]
            done = r
            errs = [self.curvatures[i].quad(a - W) for a, W, i in zip(approx, Ws, group)]
            if not trust or self._fits(e / max(self._energy(i), 1e-300) for e, i in zip(errs, group)):
                out.append(Option("basis", math.fsum(errs), d_out * r + len(group) * r * d_in, params={"rank": int(r)}))
        return out

    # ---- input-side shared factors (layers fed the same tensor) --------------------------------------------
    def input_menu(self, group: Sequence[int]) -> list[int]:
        """The rank menu of a shared input factor of ``group``: the menu rule at (sum of d_out, d_in)."""
        d_in = int(np.prod(self.shapes[group[0]][1:]))
        shape = (sum(self.shapes[i][0] for i in group), d_in)
        return [r for r in self._rank_rule(shape) if 0 < r < d_in]

    def _input_spectrum(self, group: tuple[int, ...]) -> tuple[_Spectrum, torch.Tensor]:
        """Eigenvalues (descending) of ``sum_j Z_j^T Z_j`` (``Z_j = W_j L_j``, one input covariance), each
        member's relative error per rank, and the eigenvectors V (d_in x m, whitened input directions; kept in
        the byte-bounded cache, recomputed if evicted)."""
        Zs = [self._cache.get(("z", i), lambda i=i: self.weight(i) @ self._root(i)) for i in group]

        def decompose() -> torch.Tensor:
            vals, V = torch.linalg.eigh(sum(Z.T @ Z for Z in Zs))
            return torch.cat([vals.flip(0).clamp(min=0)[None], V.flip(1)], 0)  # row 0: eigenvalues

        packed = self._cache.get(("in", group), decompose)
        vals, V = packed[0], packed[1:]
        spec = self._spectra.get(("in", group))
        if spec is None:
            proj = torch.stack([((Z @ V) ** 2).sum(0) for Z in Zs])
            tot = torch.stack([(Z * Z).sum() for Z in Zs]).double()[:, None]
            captured = torch.cat([torch.zeros(len(group), 1, dtype=torch.float64, device=vals.device),
                                  proj.double().cumsum(1)], 1)
            rel = torch.where(tot > 0, (1.0 - captured / tot.clamp(min=1e-300)).clamp(0.0, 1.0),
                              torch.zeros_like(captured))
            spec = _Spectrum(vals.double().cpu().numpy(), rel.cpu().numpy())
            self._spectra[("in", group)] = spec
            while len(self._spectra) > self._max_spectra:
                self._spectra.popitem(last=False)
        return spec, V

    def _input_options(self, group: tuple[int, ...]) -> list[Option]:
        """A shared input-side factor B (rank x d_in) and per-member A_j (d_out_j x rank), ``W_j ~ A_j B``: the
        members read one input, so its covariance is common and B spans the top right singular directions
        of the stacked whitened weights; cost = half the discarded eigenvalues of ``sum_j Z_j^T Z_j``, memory
        ``rank * (d_in + sum_j d_out_j)`` parameters."""
        if not all(self.is_linear[i] and self._input_aware(i) for i in group):
            return []
        spec, _ = self._input_spectrum(group)
        d_in = int(np.prod(self.shapes[group[0]][1:]))
        outs = sum(self.shapes[i][0] for i in group)
        dense = sum(int(self.sizes[i]) for i in group)
        ranks = [r for r in self.input_menu(group) if r * (d_in + outs) < dense]
        out = []
        for r, cost in zip(ranks, _tails(spec.vals, ranks)):
            if self._fits(spec.rel_err[:, min(r, len(spec.vals))]):
                out.append(Option("input", float(cost), r * (d_in + outs), params={"rank": int(r)}))
        return out

    def input_factors(self, group: Sequence[int], rank: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The shared input factor B (rank x d_in) and each member's A_j (d_out_j x rank), float64, with
        ``A_j B = W_j L V V^T L^+`` (L the input covariance's root, V the top ``rank`` directions)."""
        group = tuple(sorted(group))
        _, V = self._input_spectrum(group)
        c = self.curvatures[group[0]]
        evals, evecs = torch.linalg.eigh(c.sigma_in)
        root = evecs * evals.clamp(min=0).sqrt()
        pos = evals > evals.max().clamp(min=1e-300) * 1e-12
        pinv = torch.zeros_like(root).T.contiguous()
        pinv[pos] = (evecs[:, pos] / evals[pos].sqrt()).T
        Vr = V[:, :rank]
        if Vr.shape[1] < rank:  # fewer directions than the rank: complete the basis
            Vr = torch.linalg.qr(torch.cat([Vr, torch.eye(V.shape[0], dtype=V.dtype, device=V.device)], 1))[0][:, :rank]
        B = Vr.T @ pinv
        return B, [self.weight(i) @ root @ Vr for i in group]

    # ---- pair statistics for the bounds -------------------------------------------------------------------
    def _pair_tie(self, a: int, b: int) -> float:
        """A tie's exact cost for the pair, ``1/2 tr(D (A_a : A_b) D^T)`` with ``D = W_a - W_b``, ``A = h Sigma``
        and ``A_a : A_b = A_a - A_a (A_a + A_b)^-1 A_a`` (parallel sum; one Cholesky factor, no regularisation:
        the bound needs the minimum itself, not a stabilised tie centre). Input-aware curvature only."""
        ca, cb = self.curvatures[a], self.curvatures[b]
        D = self.weight(a) - self.weight(b)
        Aa, Ab = ca.scale * ca.sigma_in, cb.scale * cb.sigma_in
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

    def _pair_tails(self, a: int, b: int) -> np.ndarray:
        """Half the tail of the pair's whitened spectrum at every rank of its menu, from its eigenvalues only."""
        group = (a, b)
        if self._side(group) == "in":
            za, zb = (self._cache.get(("z", i), lambda i=i: self.weight(i) @ self._root(i)) for i in group)
            gaa, gbb = (self._cache.get(("zz", i), lambda z=z: z.T @ z) for i, z in zip(group, (za, zb)))
            cross = za.T @ zb
            big = torch.cat([torch.cat([gaa, cross], 1), torch.cat([cross.T, gbb], 1)], 0)
        else:
            big = self._gram(a) + self._gram(b)
        vals = torch.linalg.eigvalsh(big).flip(0).clamp(min=0).cpu().numpy()
        return _tails(vals, self._menus[self.shapes[a]])

    def refine(self, pairs: Sequence[tuple[int, int]], deadline: float | None = None) -> int:
        """Compute the bound data of ``pairs`` (their tails at every menu rank, and their tie's cost) that are not
        known yet, by the cheapest exact path (eigenvalues only; one Cholesky factor), until ``deadline`` (a
        ``time.perf_counter()`` value). Returns how many pairs were done. The bounds of their families then
        hold each pair's exact excess (:meth:`_bounds`)."""
        import time

        done = 0
        for a, b in pairs:
            a, b = (a, b) if a < b else (b, a)
            if deadline is not None and time.perf_counter() > deadline:
                break
            if not self._input_aware(a):
                continue
            if "basis" in self._actions and self.is_linear[a] and (a, b) not in self._pairs.basis:
                self._spectrum((a,)), self._spectrum((b,))
                self._pairs.basis[(a, b)] = self._pair_tails(a, b)
            if ("tie" in self._actions or "medoid" in self._actions) and (a, b) not in self._pairs.tie:
                self._pairs.tie[(a, b)] = self._pair_tie(a, b)
            done += 1
        return done

    def pair_statistics(self, progress: bool = True) -> int:
        """Compute the bound data of every pair of every family (:meth:`refine`), with a progress bar, so that
        solves at any budget prove their answers without spending their time limit on it (``solve`` does it
        lazily otherwise, for the pairs that pricing asks about). Returns how many pairs were done. Measured on
        SmolLM2 (3,045 pairs), 2-core CPU: about 3.5 minutes, two thirds of it the MLP projections."""
        pairs = [(a, b) for m in self.family_members.values() if len(m) > 1 for k, a in enumerate(m) for b in m[k + 1:]
                 if self.can_share(a, b)]
        done = 0
        with tqdm(total=len(pairs), desc="pair statistics", leave=False, disable=not progress) as bar:
            for k in range(0, len(pairs), 64):
                done += self.refine(pairs[k:k + 64])
                bar.update(len(pairs[k:k + 64]))
        return done

    def known_pairs(self, family: tuple[int, ...]) -> set[tuple[int, int]]:
        """The pairs of ``family`` whose bound data is exact (every kind of option the graph has)."""
        need_basis = "basis" in self._actions and self.is_linear[family[0]] and self._input_aware(family[0])
        need_tie = "tie" in self._actions or "medoid" in self._actions
        fam = set(family)
        pairs = set(self._pairs.basis) if need_basis else set(self._pairs.tie)
        if need_basis and need_tie:
            pairs &= set(self._pairs.tie)
        return {p for p in pairs if p[0] in fam and p[1] in fam}

    # ---- bounds for generated columns -------------------------------------------------------------------
    def _bounds(self, family: tuple[int, ...]) -> FamilyBound | None:
        """Lower bounds on every option of every group (2+ members) of ``family``, from its members' own costs
        and the exact costs of the pairs evaluated so far (:mod:`colorshare.formulations.bounds`).

        A shared basis of rank r costs half the tail of the spectrum of a sum of PSD matrices (the members'
        whitened Grams), concave and homogeneous by Ky Fan: at least the weighted sum over any fractional cover of
        the group, so at least its members' own rank-r costs plus ``1/(k-1)`` of every evaluated pair's excess
        over them (each pair of the k members at weight ``1/(k-1)``). A
        member that leaves the trust region alone at rank r leaves it in any group (its own basis is its best
        rank-r subspace). A tie costs the minimum of a sum of quadratics, superadditive as well; a medoid costs
        at least the tie, and a tie or medoid stores one layer.
        """
        i0 = family[0]
        m = int(self.sizes[i0])
        pos = {i: k for k, i in enumerate(family)}
        n = len(family)
        out = []
        if "tie" in self._actions or "medoid" in self._actions:
            E = np.zeros((n, n))
            for (i, j), cost in self._pairs.tie.items():
                if i in pos and j in pos:
                    E[pos[i], pos[j]] = E[pos[j], pos[i]] = max(0.0, cost) * _SAFE
            for (grp, action, _), cost in self._measured.items():
                if len(grp) == 2 and action in ("tie", "medoid") and grp[0] in pos and grp[1] in pos:
                    a, b = pos[grp[0]], pos[grp[1]]
                    E[a, b] = E[b, a] = min(E[a, b], cost)  # a measured pair prices itself
            out.append(KindBound("tie/medoid", m, 0, np.zeros(n), E))
        if "basis" in self._actions and self.is_linear[i0] and self._input_aware(i0):
            d_out, d_in = self.shapes[i0][0], int(np.prod(self.shapes[i0][1:]))
            menu = self._menus[self.shapes[i0]]
            specs = [self._spectrum((i,)) for i in family]
            own = np.stack([_tails(s.vals, menu) for s in specs])  # member x rank
            fits = np.stack([s.rel_err[0, np.minimum(menu, len(s.vals))] <= self.trust_region + 1e-12
                             if self.trust_region is not None else np.ones(len(menu), dtype=bool) for s in specs])
            E = np.zeros((len(menu), n, n))
            for (i, j), tails in self._pairs.basis.items():
                if i in pos and j in pos:
                    a, b = pos[i], pos[j]
                    E[:, a, b] = E[:, b, a] = np.maximum(0.0, tails - own[a] - own[b]) * _SAFE
            col = {d_out * r + 2 * r * d_in: k for k, r in enumerate(menu)}  # a pair's basis memory -> rank
            for (grp, action, mem), cost in self._measured.items():
                if len(grp) == 2 and action == "basis" and grp[0] in pos and grp[1] in pos and mem in col:
                    a, b, k = pos[grp[0]], pos[grp[1]], col[mem]
                    E[k, a, b] = E[k, b, a] = min(E[k, a, b], cost - own[a, k] - own[b, k])  # may be < 0
            for k, r in enumerate(menu):
                out.append(KindBound(f"basis r={r}", d_out * r, r * d_in, np.where(fits[:, k], own[:, k], np.inf),
                                     E[k]))
        elif "basis" in self._actions and self.is_linear[i0]:
            return None  # no bound known for these estimators: columns are not generated
        return FamilyBound(out)


_SAFE = 1 - 1e-9
"""Pair excesses are shrunk by this factor: eigenvalues and tie centres carry float64 rounding."""


def build_graph(
    model: nn.Module,
    batches: Iterable[Any],
    targets: str | Iterable[str] | None = None,
    curvature: str = DEFAULT_CURVATURE,
    loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
    *,
    exclude: str | Iterable[str] | None = None,
    actions: Sequence[str] = DEFAULT_ACTIONS,
    ranks: Sequence[int] | Callable[[tuple[int, ...]], Sequence[int]] | None = None,
    trust_region: float | None = DEFAULT_TRUST_REGION,
    mix_roles: bool = False,
    probes: int = 4,
    k: int = 4,
    seed: int = 0,
    probe_batches: int = 2,
    probe_fraction: float = 0.5,
    max_group_size: int | None | str = "auto",
    progress: bool = True,
) -> ModelGraph:
    """Build the sharing graph of ``model``'s shareable layers from calibration ``batches``.

    Parameters
    ----------
    model : any ``nn.Module``, on any device (statistics stay on each layer's device); it is not modified.
    batches : iterable of model inputs (tensor; tuple whose first element is the input; dict of keyword
        arguments, so a transformers model works as it is), on the model's device. Iterated once.
    targets, exclude : module name patterns (regex full match or name suffix); default every Linear/Conv
        with a same-shaped peer. A pattern matching nothing is a ValueError naming it.
    curvature : ``probed`` (default: ``kfac``, each layer's level fitted to one measured probe cut, see
        :mod:`colorshare.torch.probe`), ``kfac`` (input covariance x output-gradient Fisher of the
        self-distillation loss), ``layerwise`` (input covariance only, no loss), ``fisher``, ``hutchinson``,
        ``spectrum``, ``trace``.
    loss_fn : ``loss_fn(output, batch) -> scalar``; default: the sampled self-distillation Fisher
        (KL of the next-token distribution for a causal LM, the pooled embedding for an encoder).
    actions : subset of ``tie``, ``medoid``, ``basis``, ``dense`` (dense is always available to singletons).
    ranks : rank menu for ``basis`` (default :func:`rank_menu`: multiples of 8 or 16), or a function of the shape.
    trust_region : the largest relative whitened error ``||(W' - W) L||^2 / ||W L||^2`` any layer may take
        (0..1; None: no limit). Options that break it are left out of the program, so no layer is driven to
        nothing where the second-order model is not valid.
    mix_roles : let same-shaped layers of different roles share (default: a family = one role and shape).
    probe_batches, probe_fraction : ``probed`` only: the probes run on the first ``probe_batches`` batches (one
        forward pass over them per layer), each cutting its layer to ``probe_fraction`` of its full rank.
    max_group_size : the largest sharing class of the graph's space; ``"auto"`` (default): 2, Basis Sharing's
        group size, when ``basis`` is an action, else None (ALBERT-style ties need whole families to go below
        half the size); None: up to a whole family. Within it ``solve`` proves its answers on real models: a pair's exact cost
        bounds it exactly, while a class of k > 2 layers is bounded by its pairs only to ``1/(k-1)`` of their
        excess (measured on SmolLM2: about 60 % of a triple's true excess, far less for large classes), which
        leaves 30-layer families without a useful bound.

    Returns
    -------
    :class:`ModelGraph`: layer sizes are weight parameters; costs are group costs (solve with setpart;
    ``solve`` generates columns for families too large to enumerate).

    Raises
    ------
    ValueError naming the layer whose weight holds NaN or inf, an unknown action or curvature, a pattern
    that matches nothing, or a layer the calibration batches never reach.

    Example
    -------
    >>> g = build_graph(model, batches)                      # doctest: +SKIP
    >>> sol = solve(g, 0.6 * g.dense_size, backend="highs")  # doctest: +SKIP
    """
    bad = set(actions) - set(ACTIONS)
    if bad:
        raise ValueError(f"unknown action(s) {sorted(bad)}; valid: {', '.join(ACTIONS)}")
    trust_region = _check_trust_region(trust_region)
    if max_group_size == "auto":
        max_group_size = DEFAULT_MAX_GROUP_SIZE if "basis" in actions else None
    if max_group_size is not None and (isinstance(max_group_size, bool) or not isinstance(max_group_size, int)
                                       or max_group_size < 1):
        raise ValueError(f"max_group_size must be None or a positive int, got {max_group_size!r}")
    if curvature == "probed":
        if not (isinstance(probe_batches, int) and probe_batches >= 1):
            raise ValueError(f"probe_batches must be a positive int, got {probe_batches!r}")
        if not (isinstance(probe_fraction, (int, float)) and 0 < probe_fraction < 1):
            raise ValueError(f"probe_fraction must be in (0, 1), got {probe_fraction!r}")
        batches = list(batches)  # iterated twice: statistics, then the probes
    modules = select_modules(model, targets, exclude)
    for n, m in modules.items():
        w = m.weight.detach()
        if not bool(torch.isfinite(w).all()):
            bad_count = int((~torch.isfinite(w)).sum())
            raise ValueError(f"layer {n!r} has {bad_count} NaN or infinite weight value(s); "
                             "colorshare cannot estimate what sharing it costs")
    curv = estimate(model, modules, batches, curvature, loss_fn, probes=probes, k=k, seed=seed, progress=progress)
    names = [n for n in modules if n in curv]
    shapes = [tuple(modules[n].weight.shape) for n in names]
    fams = [f"{shape}" if mix_roles else f"{role_of(n)} {shape}" for n, shape in zip(names, shapes)]
    def rank_rule(s: tuple[int, ...]) -> list[int]:
        d = min(s[0], int(np.prod(s[1:])))
        menu = ranks(s) if callable(ranks) else (ranks if ranks is not None else rank_menu(s))
        return sorted({int(r) for r in menu if 0 < int(r) < d})

    menus = {s: rank_rule(s) for s in set(shapes)}
    sizes = [int(np.prod(s)) for s in shapes]
    g = ModelGraph._empty(sizes, names, fams)
    g.module_names = tuple(names)
    g.shapes = tuple(shapes)
    g._params = [modules[n].weight for n in names]
    g.curvatures = [curv[n] for n in names]
    g.is_linear = [isinstance(modules[n], nn.Linear) for n in names]
    g.trust_region = trust_region
    g.max_group_size = max_group_size
    g._actions = tuple(actions)
    g._menus = menus
    g._rank_rule = rank_rule
    g._cache = _LRU(512 * 2**20)
    g._max_spectra = 4096
    g._measured = {}
    if "input" in actions:
        # layers fed the very same tensor (the statistics pass shares their covariance object): q/k/v, gate/up
        by_input: dict[int, list[int]] = {}
        for i, c in enumerate(g.curvatures):
            if c.kind == "layerwise" and g.is_linear[i] and c.sigma_in is not None:
                by_input.setdefault(id(c.sigma_in), []).append(i)
        g.set_scopes([m for m in by_input.values() if len(m) > 1 and len({g.families[i] for i in m}) > 1])
    g._reset()
    g.probe_ratios = None
    if curvature == "probed":
        from .probe import probe_scales

        ratios = probe_scales(g, {n: modules[n] for n in names}, model, batches[:probe_batches], loss_fn,
                              probe_fraction, progress)
        for c, r in zip(g.curvatures, ratios):
            c.scale *= float(r)
        g._reset()
        g.probe_ratios = ratios
    return g


def precompute(graph: ModelGraph, groups: Iterable[tuple[int, ...]], progress: bool = True) -> None:
    """Evaluate the options of ``groups`` now, with a progress bar (the solver would otherwise do it lazily)."""
    groups = list(groups)
    for grp in tqdm(groups, desc="group costs", leave=False, disable=not progress):
        graph.options(grp)
    if not groups:
        warnings.warn("no groups to precompute", RuntimeWarning, stacklevel=2)
