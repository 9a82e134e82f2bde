"""Model -> graph: families by shape and role, curvature per layer, exact cost and memory of every action."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn

from ..formulations.costs import GroupCosts, Option
from ..formulations.graph import SharingGraph
from .curvature import Curvature, estimate, matrix_of
from .targets import role_of, select_modules

__all__ = ["ModelGraph", "build_graph", "ACTIONS"]

ACTIONS = ("tie", "medoid", "basis", "dense")


class ModelGraph(SharingGraph):
    """A :class:`SharingGraph` built from a model: it keeps each layer's weight (float64 matrix) and
    curvature, so the shared tensors of a solution can be computed exactly as the costs were."""

    module_names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    weights: list[torch.Tensor]
    curvatures: list[Curvature]
    is_linear: list[bool]

    # ---- the shared tensors of each action --------------------------------------------------------------
    def tie_center(self, group: Sequence[int]) -> torch.Tensor:
        """The curvature-weighted mean ``argmin_W sum_i quad_i(W - W_i)`` (d_out x d_in, float64)."""
        Ws = [self.weights[i] for i in group]
        cs = [self.curvatures[i] for i in group]
        if cs[0].kind == "layerwise":
            # (S + eps I) W^T = R^T + eps mean^T: input directions the calibration data never excites (dead
            # units, constant pixels) keep the plain mean instead of an arbitrary, unstable least-squares value
            S = sum(c.sigma_in for c in cs)
            R = sum(W @ c.sigma_in for W, c in zip(Ws, cs))
            mean = sum(Ws) / len(Ws)
            eps = 1e-6 * float(torch.trace(S)) / S.shape[0]
            if eps <= 0:
                return mean
            eye = torch.eye(S.shape[0], dtype=S.dtype)
            return torch.linalg.solve(S + eps * eye, (R + eps * mean).T).T
        scales = [c.weight_scale() for c in cs]
        tot = sum(scales)
        num = sum(s * W for s, W in zip(scales, Ws))
        if isinstance(tot, torch.Tensor):
            mean = sum(Ws) / len(Ws)
            return torch.where(tot > 0, num / torch.where(tot > 0, tot, 1.0), mean)
        return num / tot if tot > 0 else sum(Ws) / len(Ws)

    def basis(self, group: Sequence[int], rank: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Shared basis U (d_out x rank) and per-layer coefficients C_i = U^T W_i (rank x d_in)."""
        U = self._eig(tuple(group))[1][:, :rank]
        return U, [U.T @ self.weights[i] for i in group]

    def _eig(self, group: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        cache = self.__dict__.setdefault("_eig_cache", {})
        if group not in cache:
            G = sum(self._gram(i) for i in group)
            vals, vecs = torch.linalg.eigh(G)
            cache[group] = (vals.flip(0).clamp(min=0), vecs.flip(1))
            if len(cache) > 4096:
                cache.pop(next(iter(cache)))
        return cache[group]

    def _gram(self, i: int) -> torch.Tensor:
        W, c = self.weights[i], self.curvatures[i]
        return W @ c.sigma_in @ W.T if c.kind == "layerwise" else W @ W.T

    # ---- exact costs --------------------------------------------------------------------------------------
    def _options(self, group: tuple[int, ...], ranks: Sequence[int], actions: Sequence[str]) -> list[Option]:
        m = int(self.sizes[group[0]])
        out: list[Option] = []
        if len(group) == 1:
            out.append(Option("dense", 0.0, m))
        else:
            if "tie" in actions:
                W = self.tie_center(group)
                out.append(Option("tie", sum(self.curvatures[i].quad(W - self.weights[i]) for i in group), m))
            if "medoid" in actions:
                costs = [sum(self.curvatures[i].quad(self.weights[j] - self.weights[i]) for i in group) for j in group]
                k = min(range(len(group)), key=costs.__getitem__)
                out.append(Option("medoid", costs[k], m, representative=group[k]))
        if "basis" in actions and self.is_linear[group[0]]:
            d_out, d_in = self.weights[group[0]].shape
            vals, vecs = self._eig(group)
            layerwise = self.curvatures[group[0]].kind == "layerwise"
            coeffs = [] if layerwise else [vecs.T @ self.weights[i] for i in group]
            approx = [torch.zeros_like(self.weights[i]) for i in group] if coeffs else []
            done = 0  # approx[k] = U_done U_done^T W_k, grown rank by rank instead of forming each projector
            for r in ranks:
                mem = d_out * r + len(group) * r * d_in
                if mem >= len(group) * m:
                    continue
                if layerwise:
                    cost = 0.5 * float(vals[r:].sum())
                else:
                    for a, C in zip(approx, coeffs):
                        a += vecs[:, done:r] @ C[done:r]
                    done = r
                    cost = sum(self.curvatures[i].quad(a - self.weights[i]) for a, i in zip(approx, group))
                out.append(Option("basis", cost, mem, params={"rank": int(r)}))
        return out


def _default_ranks(shape: tuple[int, ...]) -> list[int]:
    d = min(shape[0], int(torch.tensor(shape[1:]).prod()))
    return sorted({max(1, d // f) for f in (16, 8, 4, 2)})


def build_graph(
    model: nn.Module,
    batches: Iterable[Any],
    targets: str | Iterable[str] | None = None,
    curvature: str = "layerwise",
    loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
    *,
    exclude: str | Iterable[str] | None = None,
    actions: Sequence[str] = ("tie", "basis", "dense"),
    ranks: Sequence[int] | Callable[[tuple[int, ...]], Sequence[int]] | None = None,
    mix_roles: bool = False,
    probes: int = 4,
    k: int = 4,
    seed: int = 0,
    progress: bool = True,
) -> ModelGraph:
    """Build the sharing graph of ``model``'s shareable layers from calibration ``batches``.

    Parameters
    ----------
    model : any ``nn.Module``; it is not modified.
    batches : iterable of model inputs (tensor; tuple whose first element is the input; dict of keyword
        arguments, so a transformers model works as it is). Iterated once (twice for ``spectrum``; ``kfac`` keeps a list).
    targets, exclude : module name patterns (regex full match or name suffix); default every Linear/Conv
        with a same-shaped peer. A pattern matching nothing is a ValueError naming it.
    curvature : ``layerwise`` (no loss needed), ``fisher``, ``hutchinson``, ``spectrum``, ``trace``, ``kfac``.
    loss_fn : ``loss_fn(output, batch) -> scalar`` for the loss-based estimators.
    actions : subset of ``tie``, ``medoid``, ``basis``, ``dense`` (dense is always available to singletons).
    ranks : rank menu for ``basis`` (default d/16, d/8, d/4, d/2 with d = min(d_out, d_in)), or a function of
        the weight shape.
    mix_roles : let same-shaped layers of different roles share (default: a family = one role and shape).

    Returns
    -------
    :class:`ModelGraph`: layer sizes are weight parameters; costs are group costs (solve with setpart).

    Example
    -------
    >>> g = build_graph(model, batches)                      # doctest: +SKIP
    >>> sol = solve(g, 0.6 * g.dense_size, backend="highs")  # doctest: +SKIP
    """
    bad = set(actions) - set(ACTIONS)
    if bad:
        raise ValueError(f"unknown action(s) {sorted(bad)}; valid: {', '.join(ACTIONS)}")
    modules = select_modules(model, targets, exclude)
    curv = estimate(model, modules, batches, curvature, loss_fn, probes=probes, k=k, seed=seed, progress=progress)
    names = list(modules)
    weights = [matrix_of(m.weight.detach()).to(torch.float64).cpu() for m in modules.values()]
    shapes = [tuple(m.weight.shape) for m in modules.values()]
    fams = [f"{shape}" if mix_roles else f"{role_of(n)} {shape}" for n, shape in zip(names, shapes)]
    menus = {}
    for s in set(shapes):
        menu = ranks(s) if callable(ranks) else (ranks if ranks is not None else _default_ranks(s))
        menus[s] = sorted({int(r) for r in menu if 0 < int(r) < min(s[0], weights[shapes.index(s)].shape[1])})
    holder: dict[str, ModelGraph] = {}

    def oracle(group: tuple[int, ...]) -> list[Option]:
        return holder["g"]._options(group, menus[shapes[group[0]]], actions)

    g = ModelGraph(GroupCosts(oracle), [w.numel() for w in weights], (), names, fams, n=len(names))
    g.module_names = tuple(names)
    g.shapes = tuple(shapes)
    g.weights = weights
    g.curvatures = [curv[n] for n in names]
    g.is_linear = [isinstance(modules[n], nn.Linear) for n in names]
    holder["g"] = g
    return g
