"""Simulated-annealing baseline on colorings. Works on every cost model, including ones too big to enumerate.

Medoid graphs without conflicts take the representatives' path instead (:mod:`.medoid_search`: annealed
iterated swap descent with cross-family trades), measured within 1 % of the optimum on OR-Library pmed1-20.

Moves (conflict-checked): move a layer to another or a new class, swap two layers, merge two classes (of one
family, or of one input scope across families), split a class, trade memory between families (merge in one,
split in another), and (group costs) change an action. Each changed class takes its cheapest option(s) that keep the memory within the budget. Metropolis acceptance with geometric cooling over
the iteration or time limit; seeded, so a run is repeatable for a given ``iterations``. A start that breaks the
budget (no greedy start) is repaired under a penalty on the excess memory. No bound: gap is left None. It stops
early once converged (no better coloring in a stretch of proposals) and says why it stopped.
"""

from __future__ import annotations

import math
import random
import time
from itertools import product
from typing import Any

from ..formulations.base import Chosen
from ..formulations.costs import Option
from ..formulations.graph import SharingGraph
from .backend import HeuristicBackend
from .medoid_search import medoid_search

__all__ = ["AnnealBackend"]


class _State:
    def __init__(self, graph: SharingGraph, budget: float) -> None:
        self.g = graph
        self.budget = budget
        self.cache: dict[tuple[int, ...], list[Option]] = {}
        self.label = [0] * graph.n
        self.members: dict[int, set[int]] = {}
        self.opt: dict[int, Option] = {}
        self.fam_classes: dict[str, set[int]] = {f: set() for f in graph.family_members}
        self.cost = 0.0
        self.mem = 0
        self.next_id = 0

    def options(self, group: set[int] | tuple[int, ...]) -> list[Option]:
        """The group's options; none for a class larger than the graph's space allows (``max_group_size``)."""
        if self.g.max_group_size is not None and len(group) > self.g.max_group_size:
            return []
        key = tuple(sorted(group))
        hit = self.cache.get(key)
        if hit is None:
            if len(self.cache) > 400_000:
                self.cache.clear()
            hit = self.g.model.options(key, int(self.g.sizes[key[0]]))
            self.cache[key] = hit
        return hit

    def add(self, members: set[int], opt: Option) -> int:
        cid = self.next_id
        self.next_id += 1
        self.members[cid] = members
        self.opt[cid] = opt
        for f in {self.g.families[i] for i in members}:  # a scope class is listed under each of its families
            self.fam_classes[f].add(cid)
        for i in members:
            self.label[i] = cid
        self.cost += opt.cost
        self.mem += opt.memory
        return cid

    def remove(self, cid: int) -> None:
        members = self.members.pop(cid)
        opt = self.opt.pop(cid)
        for f in {self.g.families[i] for i in members}:
            self.fam_classes[f].discard(cid)
        self.cost -= opt.cost
        self.mem -= opt.memory

    def compatible(self, i: int, group: set[int]) -> bool:
        conf = self.g.conflicts_of(i)
        return not conf or conf.isdisjoint(group)

    def chosen(self) -> Chosen:
        return sorted(((tuple(sorted(m)), self.opt[c]) for c, m in self.members.items()), key=lambda t: t[0][0])


def _pick(st: _State, groups: list[set[int]], room: float, penalty: float) -> tuple[list[Option], float] | None:
    """Cheapest options for ``groups`` (energy = cost + penalty * excess memory over ``room``)."""
    lists = [st.options(g) for g in groups]
    if any(not opts for opts in lists):
        return None
    best = None
    for combo in product(*lists):
        mem = sum(o.memory for o in combo)
        excess = max(0.0, mem - room)
        if excess > 0 and penalty == 0:
            continue
        e = sum(o.cost for o in combo) + penalty * excess
        if best is None or e < best[1]:
            best = (list(combo), e)
    return best


class AnnealBackend(HeuristicBackend):
    name = "anneal"
    accepts = ("iterations", "t_start", "t_end_ratio", "stall")
    description = "simulated annealing on colorings (no bound)"

    def solve_graph(
        self,
        graph: SharingGraph,
        budget: float,
        time_limit: float | None,
        seed: int,
        start: Chosen | None,
        iterations: int | None = None,
        t_start: float | None = None,
        t_end_ratio: float = 1e-4,
        stall: int | None = None,
        **options: Any,
    ) -> tuple[Chosen | None, dict[str, Any]]:
        """Anneal from ``start`` (or from singletons); returns the best budget-feasible classes found and facts.

        Stops at the time limit or ``iterations``, at a zero-cost coloring, or when converged: no better
        coloring in ``stall`` proposals (default ``max(20000, 500 n)``); ``facts["stopped"]`` says which."""
        if options:
            raise ValueError(f"unknown option(s) for backend 'anneal': {', '.join(options)}")
        if iterations is not None and (not isinstance(iterations, int) or iterations < 0):
            raise ValueError(f"iterations must be a non-negative integer, got {iterations!r}")
        if graph.kind == "medoid" and not graph.conflicts:
            return medoid_search(graph, budget, start, time_limit, seed, steps=iterations, patience=stall)
        if iterations is None:
            iterations = 400 * graph.n + 20_000 if time_limit is None else 10**12
        if not isinstance(iterations, int) or iterations < 0:
            raise ValueError(f"iterations must be a non-negative integer, got {iterations!r}")

        rng = random.Random(seed)
        st = _State(graph, budget)
        if start is None:
            for i in range(graph.n):
                opts = st.options((i,))
                if not opts:
                    return None, {"iterations": 0, "reason": f"layer {graph.names[i]!r} has no action"}
                st.add({i}, min(opts, key=lambda o: (o.memory, o.cost)))
        else:
            for group, opt in start:
                st.add(set(group), opt)
        fams = [f for f, m in graph.family_members.items() if len(m) > 1 or graph.scopes]
        multi_option = graph.kind == "group"
        scale = max(1e-12, max((o.cost for o in st.opt.values()), default=0.0))
        penalty = 0.0 if st.mem <= budget else 1e3 * scale / max(1, int(graph.sizes.min())) + 1.0

        def excess() -> float:
            return max(0.0, st.mem - budget)

        best_chosen = st.chosen() if st.mem <= budget else None
        best_cost = st.cost if best_chosen is not None else math.inf
        t0 = time.perf_counter()
        deadline = None if time_limit is None else t0 + time_limit
        temp0 = t_start
        accepted = 0
        it = 0
        if not fams:
            iterations = 0
        samples: list[float] = []
        patience = max(20_000, 500 * graph.n) if stall is None else int(stall)
        last_best, since = best_cost, 0
        stopped = "iterations"
        while it < iterations:
            if (it & 63) == 0:
                if best_cost <= 0.0:
                    stopped = "zero cost (costs are >= 0: cannot improve)"
                    break
                if deadline is not None and time.perf_counter() >= deadline:
                    stopped = "time limit"
                    break
                if best_cost < last_best - 1e-15:
                    last_best, since = best_cost, 0
                elif temp0 is not None and since >= patience:
                    stopped = f"converged: no better coloring in {since} proposals"
                    break
            since += 1
            if temp0 is None:
                temp = math.inf  # calibration: the first 200 proposals measure typical |delta|
            else:
                frac = it / iterations if deadline is None else (time.perf_counter() - t0) / time_limit  # type: ignore[operator]
                temp = temp0 * (t_end_ratio ** min(1.0, frac))
            it += 1
            fam = fams[rng.randrange(len(fams))]
            cids = list(st.fam_classes[fam])
            r = rng.random()
            old: list[int]
            new_groups: list[set[int]]
            if graph.scopes and r < 0.1:  # within an input scope (across families): merge two of its classes
                sc = graph.scopes[rng.randrange(len(graph.scopes))]
                scids = list({st.label[i] for i in sc if st.members[st.label[i]] <= set(sc)})
                if len(scids) < 2:
                    continue
                ca, cb = rng.sample(scids, 2)
                old, new_groups = [ca, cb], [st.members[ca] | st.members[cb]]
            elif r < 0.5 or len(cids) == 1:  # move one layer
                i = rng.choice(graph.family_members[fam])
                src = st.label[i]
                k = rng.randrange(len(cids) + 1)
                if k == len(cids) or cids[k] == src:
                    if len(st.members[src]) == 1:
                        continue
                    old, new_groups = [src], [st.members[src] - {i}, {i}]
                else:
                    tgt = cids[k]
                    if not st.compatible(i, st.members[tgt]):
                        continue
                    rest = st.members[src] - {i}
                    old = [src, tgt]
                    new_groups = ([rest] if rest else []) + [st.members[tgt] | {i}]
            elif r < 0.7:  # swap two layers of different classes
                a, b = rng.sample(graph.family_members[fam], 2)
                ca, cb = st.label[a], st.label[b]
                if ca == cb:
                    continue
                ga, gb = st.members[ca] - {a}, st.members[cb] - {b}
                if not (st.compatible(b, ga) and st.compatible(a, gb)):
                    continue
                old, new_groups = [ca, cb], [ga | {b}, gb | {a}]
            elif r < 0.85:  # merge two classes
                if len(cids) < 2:
                    continue
                ca, cb = rng.sample(cids, 2)
                ma, mb = st.members[ca], st.members[cb]
                if any(not st.compatible(i, mb) for i in ma):
                    continue
                old, new_groups = [ca, cb], [ma | mb]
            elif r < 0.9:  # trade memory between families: merge two classes here, split one elsewhere
                other = fams[rng.randrange(len(fams))]
                ocids = list(st.fam_classes[other])
                if len(cids) < 2:
                    continue
                ca, cb = rng.sample(cids, 2)
                cc = rng.choice(ocids)
                mc = list(st.members[cc])
                if cc in (ca, cb) or len(mc) < 2:
                    continue
                ma, mb = st.members[ca], st.members[cb]
                if any(not st.compatible(i, mb) for i in ma):
                    continue
                rng.shuffle(mc)
                cut = rng.randrange(1, len(mc))
                old, new_groups = [ca, cb, cc], [ma | mb, set(mc[:cut]), set(mc[cut:])]
            elif r < 0.95 or not multi_option:  # split a class in two
                if not cids:
                    continue
                ca = rng.choice(cids)
                ma = list(st.members[ca])
                if len(ma) < 2:
                    continue
                rng.shuffle(ma)
                cut = rng.randrange(1, len(ma))
                old, new_groups = [ca], [set(ma[:cut]), set(ma[cut:])]
            else:  # change a class's action
                if not cids:
                    continue
                ca = rng.choice(cids)
                opts = st.options(st.members[ca])
                o = rng.choice(opts)
                if o == st.opt[ca]:
                    continue
                room = budget - (st.mem - st.opt[ca].memory)
                if o.memory > room and penalty == 0:
                    continue
                delta = o.cost - st.opt[ca].cost + penalty * (max(0.0, o.memory - room) - excess())
                if temp0 is None:
                    samples.append(abs(delta))
                    if len(samples) >= 200:
                        temp0 = _calibrate(samples, scale)
                    continue
                if delta <= 0 or rng.random() < math.exp(-delta / max(temp, 1e-300)):
                    members = st.members[ca]
                    st.remove(ca)
                    st.add(members, o)
                    accepted += 1
                    if st.mem <= budget and st.cost < best_cost - 1e-15:
                        best_cost, best_chosen = st.cost, st.chosen()
                continue
            old_mem = sum(st.opt[c].memory for c in old)
            old_cost = sum(st.opt[c].cost for c in old)
            room = budget - (st.mem - old_mem)
            picked = _pick(st, new_groups, room, penalty)
            if picked is None:
                continue
            new_opts, e_new = picked
            before = old_cost + penalty * max(0.0, old_mem - room)
            delta = e_new - before
            if temp0 is None:
                samples.append(abs(delta))
                if len(samples) >= 200:
                    temp0 = _calibrate(samples, scale)
                continue
            if delta <= 0 or rng.random() < math.exp(-delta / max(temp, 1e-300)):
                for c in old:
                    st.remove(c)
                for grp, o in zip(new_groups, new_opts):
                    st.add(grp, o)
                accepted += 1
                if st.mem <= budget:
                    if penalty:
                        penalty = 0.0  # repaired: from now on only budget-feasible moves
                    if st.cost < best_cost - 1e-15:
                        best_cost, best_chosen = st.cost, st.chosen()
        facts = {"iterations": it, "accepted": accepted, "start": "greedy" if start is not None else "singletons",
                 "warm_start": "used" if start is not None else "not given",
                 "temperature0": temp0, "seconds": time.perf_counter() - t0, "stopped": stopped}
        return best_chosen, facts


def _calibrate(samples: list[float], scale: float) -> float:
    pos = sorted(s for s in samples if s > 0)
    if not pos:
        return 1e-3 * scale
    return pos[len(pos) // 2]
