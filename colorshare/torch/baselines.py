"""The baselines papers compare against, at a stored-parameter ratio, as Solutions of a model's graph.

- ``svd-uniform`` (SVD-LLM style): every targeted linear whitened low rank at the same ratio:
  ``r = floor(keep * d_out * d_in / (d_out + d_in))`` (dense where that stores no less).
- ``basis-sharing`` (Basis Sharing, ICLR 2025): each family (q, k, v, gate, up, ...) cut into fixed groups of
  2 consecutive layers with one whitened shared basis each; output projections (o, down) per layer; the same
  ratio everywhere, ``k = floor(d1 * d2 * n * keep / (d1 + d2 * n))`` for a group of n layers of d1 x d2.

Both use the graph's whitened bases (top eigenvectors of ``sum_i W_i Sigma_i W_i^T``): on a ``layerwise``
graph exactly the papers' construction. The returned :class:`~colorshare.Solution` (status "feasible",
backend = the baseline's name) goes to :func:`apply_coloring` like any other.
"""

from __future__ import annotations

import math
import time

from ..formulations.graph import SharingClass
from ..solvers.solution import Solution, Status, colors_of
from .actions.basis import basis_option
from .model_graph import ModelGraph

__all__ = ["BASELINES", "baseline", "PER_LAYER_ROLES"]

PER_LAYER_ROLES = ("o_proj", "down_proj", "out_proj", "fc2", "attention.output.dense", "output.dense", "dense_4h_to_h",
                   "c_proj", "w2")
"""Roles Basis Sharing keeps per layer (the projections that write back into the residual stream)."""

BASELINES = ("svd-uniform", "basis-sharing")


def _per_layer_role(name: str) -> bool:
    return any(name.endswith(r) for r in PER_LAYER_ROLES)


def _class(graph: ModelGraph, group: tuple[int, ...], keep: float) -> SharingClass:
    d_out, d_in = graph.shapes[group[0]][0], int(math.prod(graph.shapes[group[0]][1:]))
    n = len(group)
    r = int(math.floor(d_out * d_in * n * keep / (d_out + d_in * n)))
    if r < 1 or r >= min(d_out, n * d_in) or d_out * r + n * r * d_in >= n * d_out * d_in:
        if n > 1:
            raise ValueError(f"keep {keep} leaves group {group} no useful rank")
        return SharingClass(group, "dense", 0.0, d_out * d_in)
    opt = basis_option(graph, group, r, trust=False)
    assert opt is not None
    return SharingClass(group, "basis", opt.cost, opt.memory, None, {"rank": r})


def baseline(graph: ModelGraph, method: str, keep: float) -> Solution:
    """The ``method`` baseline (``svd-uniform`` or ``basis-sharing``) at ``keep`` = stored / dense parameters.

    Raises ValueError for an unknown method, a keep outside (0, 1], or a graph with non-linear layers."""
    t0 = time.perf_counter()
    if method not in BASELINES:
        raise ValueError(f"unknown baseline {method!r}; valid: {', '.join(BASELINES)}")
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1] (stored / dense parameters), got {keep!r}")
    if not all(graph.is_linear):
        raise ValueError("the low-rank baselines apply to linear layers only")
    classes: list[SharingClass] = []
    for members in graph.family_members.values():
        name = graph.module_names[members[0]]
        if method == "svd-uniform" or _per_layer_role(name):
            groups: list[tuple[int, ...]] = [(i,) for i in members]
        else:
            groups = [tuple(members[s:s + 2]) for s in range(0, len(members), 2)]
        classes += [_class(graph, g, keep) for g in groups]
    classes.sort(key=lambda c: c.members[0])
    memory = sum(c.memory for c in classes)
    return Solution(colors_of(graph.n, classes), math.fsum(c.cost for c in classes), None, None, Status.FEASIBLE,
                    time.perf_counter() - t0,
                    memory, method, keep * graph.dense_size, classes, {"keep": keep})
