"""Greedy construction: agglomerative merging until the budget holds. Warm start for every backend."""

from __future__ import annotations

import math
import time

from ..formulations.base import Chosen
from ..formulations.costs import Option
from ..formulations.graph import SharingGraph

__all__ = ["greedy"]


def _cheapest(options: list[Option]) -> Option | None:
    return min(options, key=lambda o: (o.cost, o.memory)) if options else None


class _Late(Exception):
    """The greedy's deadline passed."""


def greedy(graph: SharingGraph, budget: float, max_group_size: int | None = None,
           deadline: float | None = None) -> Chosen | None:
    """A budget-feasible coloring built by cheapest-per-parameter moves, or None if the greedy gets stuck.

    Start from singletons with their cheapest action; while the memory (parameters) exceeds ``budget``, apply
    the move with the least added cost per parameter saved: merge two classes of one family that may share
    (or of one input scope, :attr:`~colorshare.formulations.graph.SharingGraph.scopes`), or switch a class to a
    smaller action. None does not prove infeasibility. Merges never form a group of more than ``max_group_size``
    layers (none at all for 1). ``deadline`` (a ``time.perf_counter()`` value): give up, returning None, once it
    passes (evaluating a group's options can be slow).
    """
    if max_group_size is None:
        max_group_size = graph.max_group_size  # the graph's own space
    try:
        return _greedy(graph, budget, max_group_size, deadline)
    except _Late:
        return None


def _greedy(graph: SharingGraph, budget: float, max_group_size: int | None, deadline: float | None) -> Chosen | None:
    def late() -> None:
        if deadline is not None and time.perf_counter() > deadline:
            raise _Late

    classes: dict[int, tuple[tuple[int, ...], Option]] = {}
    for i in range(graph.n):
        late()
        opt = _cheapest(graph.options((i,)))
        if opt is None:
            return None
        classes[i] = ((i,), opt)
    next_id = graph.n
    memory = sum(o.memory for _, o in classes.values())
    merge_cache: dict[tuple[int, int], tuple[float, Option] | None] = {}

    def best_move_option(opts: list[Option], old_cost: float, old_mem: int) -> tuple[float, Option] | None:
        best = None
        for o in opts:
            saved = old_mem - o.memory
            if saved <= 0:
                continue
            ratio = (o.cost - old_cost) / saved
            if best is None or ratio < best[0]:
                best = (ratio, o)
        return best

    def merge_score(a: int, b: int) -> tuple[float, Option] | None:
        key = (a, b) if a < b else (b, a)
        if key not in merge_cache:
            (ga, oa), (gb, ob) = classes[a], classes[b]
            group = tuple(sorted(ga + gb))
            if not graph.is_group(group):  # one family without conflicts, or within one input scope
                merge_cache[key] = None
            else:
                late()
                merge_cache[key] = best_move_option(graph.cost_model.options(group, int(graph.sizes[group[0]])),
                                                    oa.cost + ob.cost, oa.memory + ob.memory)
        return merge_cache[key]

    switch_cache: dict[int, tuple[float, Option] | None] = {}  # a class's best switch, until it changes

    def switch_score(cid: int) -> tuple[float, Option] | None:
        if cid not in switch_cache:
            late()
            g, o = classes[cid]
            switch_cache[cid] = best_move_option(graph.cost_model.options(g, int(graph.sizes[g[0]])), o.cost, o.memory)
        return switch_cache[cid]

    while memory > budget:
        best: tuple[float, str, tuple[int, ...], Option] | None = None
        ids = list(classes)
        for cid in ids if graph.kind == "group" else ():  # matrix models have one action per group
            mv = switch_score(cid)
            if mv is not None and (best is None or mv[0] < best[0]):
                best = (mv[0], "switch", (cid,), mv[1])
        by_family: dict[str, list[int]] = {}
        for cid in ids:
            by_family.setdefault(graph.families[classes[cid][0][0]], []).append(cid)
        for fam_ids in by_family.values() if max_group_size != 1 else ():
            for k, a in enumerate(fam_ids):
                for b in fam_ids[k + 1 :]:
                    if max_group_size is not None and len(classes[a][0]) + len(classes[b][0]) > max_group_size:
                        continue
                    mv = merge_score(a, b)
                    if mv is not None and (best is None or mv[0] < best[0]):
                        best = (mv[0], "merge", (a, b), mv[1])
        by_scope: dict[int, list[int]] = {}  # classes inside a scope (any size: scopes ignore max_group_size)
        for cid in ids if graph.scopes and max_group_size != 1 else ():
            common = set.intersection(*(graph.scopes_of(i) for i in classes[cid][0]))
            for k in common:
                by_scope.setdefault(k, []).append(cid)
        for sc_ids in by_scope.values():
            for k, a in enumerate(sc_ids):
                for b in sc_ids[k + 1:]:
                    if graph.families[classes[a][0][0]] == graph.families[classes[b][0][0]]:
                        continue  # one family: scored above
                    mv = merge_score(a, b)
                    if mv is not None and (best is None or mv[0] < best[0]):
                        best = (mv[0], "merge", (a, b), mv[1])
        if best is None:
            return None
        _, kind, cids, opt = best
        if kind == "switch":
            g, old = classes[cids[0]]
            memory += opt.memory - old.memory
            classes[cids[0]] = (g, opt)
            switch_cache.pop(cids[0], None)
            for key in [k for k in merge_cache if cids[0] in k]:
                del merge_cache[key]
        else:
            a, b = cids
            (ga, oa), (gb, ob) = classes.pop(a), classes.pop(b)
            memory += opt.memory - oa.memory - ob.memory
            classes[next_id] = (tuple(sorted(ga + gb)), opt)
            next_id += 1
    if math.isfinite(budget) and memory > budget:
        return None
    return sorted(classes.values(), key=lambda t: t[0][0])
