"""The compression methods compared at equal memory: each one is the SAME set-partitioning model restricted
to the groups its structure allows, so each gets the best configuration (actions, ranks) it can have.

- ``optimal``: every conflict-free same-family group (the exact answer).
- ``per-layer`` (SVD-LLM): singletons only (dense or a per-layer low-rank basis).
- ``all-shared`` (ALBERT): exactly one group per family, all of its layers (tie or a shared basis).
- ``adjacent`` (Basis Sharing): each family cut into runs of ``k`` consecutive layers (default pairs) from its
  first layer; a shorter run is left at the end.
- ``similarity`` (SharVeT-like): the clusters of a spectral clustering of weight similarity (about ``k``
  layers per cluster).
- ``random``: a random partition of each family into groups of ``k`` (seeded).

Each heuristic's groups are fixed; within them the solver still picks the best action and rank of every
group under the budget, so each heuristic gets its strongest configuration. ``optimal`` contains every
heuristic's groups of at most the graph's class size (2 for a model's graph: every heuristic but
``all-shared``), so its surrogate is never worse than theirs; the real metrics can still disagree. Under the
probed surrogate ``optimal`` also prices the shared classes it picks by measurement
(:func:`colorshare.torch.measure.solve_measured`, ``BenchConfig.measure_rounds``), so its surrogate column is
then partly measured.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..formulations.graph import SharingGraph

__all__ = ["METHODS", "allowed_groups", "method_names"]

Groups = set[tuple[int, ...]]


def _singletons(graph: SharingGraph) -> Groups:
    return {(i,) for i in range(graph.n)}


def _optimal(graph: SharingGraph, k: int, seed: int) -> Groups | None:
    return None  # no restriction


def _per_layer(graph: SharingGraph, k: int, seed: int) -> Groups:
    return _singletons(graph)


def _all_shared(graph: SharingGraph, k: int, seed: int) -> Groups:
    return {tuple(m) for m in graph.family_members.values()}


def _adjacent(graph: SharingGraph, k: int, seed: int) -> Groups:
    return {tuple(m[s:s + k]) for m in graph.family_members.values() for s in range(0, len(m), k)}


def _random(graph: SharingGraph, k: int, seed: int) -> Groups:
    rng = np.random.default_rng(seed)
    out: Groups = set()
    for members in graph.family_members.values():
        perm = [int(i) for i in rng.permutation(members)]
        out.update(tuple(sorted(perm[s:s + k])) for s in range(0, len(perm), k))
    return out


def _similarity(graph: SharingGraph, k: int, seed: int) -> Groups:
    from sklearn.cluster import SpectralClustering

    weight_gram = getattr(graph, "weight_gram", None)
    if weight_gram is None:
        raise ValueError("the similarity method needs a graph built from a model (colorshare.torch.build_graph)")
    out: Groups = set()
    for members in graph.family_members.values():
        if len(members) < 3:
            out.add(tuple(members))
            continue
        gram = weight_gram(members)  # squared distances from inner products: no copy of the weights on the host
        sq = np.diag(gram)
        d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * gram, 0.0)
        scale = np.median(d2[np.triu_indices(len(members), 1)]) or 1.0
        affinity = np.exp(-d2 / scale)
        labels = SpectralClustering(n_clusters=math.ceil(len(members) / k), affinity="precomputed",
                                    random_state=seed).fit_predict(affinity)
        for c in sorted(set(labels.tolist())):
            out.add(tuple(int(members[j]) for j in np.flatnonzero(labels == c)))
    return out


METHODS: dict[str, Callable[[SharingGraph, int, int], Groups | None]] = {
    "optimal": _optimal,
    "adjacent": _adjacent,
    "per-layer": _per_layer,
    "all-shared": _all_shared,
    "similarity": _similarity,
    "random": _random,
}


def method_names() -> list[str]:
    return list(METHODS)


def allowed_groups(graph: SharingGraph, method: str, k: int = 2, seed: int = 0) -> Groups | None:
    """The groups ``method`` may form on ``graph`` (None: no restriction); pass them to ``solve`` as
    ``groups=sorted(groups)`` with ``formulation="setpart"`` (only these are built, whatever the family size).

    Parameters
    ----------
    graph : the sharing graph; ``similarity`` needs one from :func:`colorshare.torch.build_graph`.
    method : one of :data:`METHODS`.
    k : group size of ``adjacent``, ``similarity`` and ``random``.
    seed : seed of ``random`` and of the spectral clustering.

    Raises
    ------
    ValueError for an unknown method or a bad ``k``.

    Example
    -------
    >>> from colorshare import SharingGraph
    >>> g = SharingGraph.from_matrix([[0, 1, 2], [1, 0, 1], [2, 1, 0]])
    >>> sorted(allowed_groups(g, "adjacent"))
    [(0, 1), (2,)]
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"group size k must be a positive integer, got {k!r}")
    return METHODS[method](graph, k, seed)
