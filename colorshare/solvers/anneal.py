"""Simulated-annealing baseline on colorings. Works on every cost model, including ones too big to enumerate.

Medoid graphs without conflicts take the representatives' path instead (:mod:`.medoid_search`: annealed
iterated swap descent with cross-family trades), measured within 1 % of the optimum on OR-Library pmed1-20.

Moves (conflict-checked), one function each: move a layer to another or a new class, swap two layers, merge two
classes (of one family, or of one input scope across families), split a class, trade memory between families
(merge in one, split in another), and (group costs) change an action. A move proposes the classes it replaces
and the groups that replace them, or nothing when it does not apply (a rejected proposal). Each changed class
takes its cheapest option(s) that keep the memory within the budget; classes stay in the graph's space (one
family within ``max_group_size``, or one input scope). Metropolis acceptance with geometric cooling over the
iteration or time limit; seeded, so a run is repeatable for a given ``iterations``. A start that breaks the
budget (no greedy start) is repaired under a penalty on the excess memory. No bound: gap is left None. It stops
early once converged (no better coloring in a stretch of proposals) and says why it stopped.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from itertools import product
from typing import Any

from ..formulations.base import Chosen
from ..formulations.costs import Option
from ..formulations.graph import SharingGraph
from ..validation import NON_NEGATIVE_INT, NONE, check
from .backend import HeuristicBackend
from .medoid_search import medoid_search

__all__ = ["AnnealBackend"]


def _in_space(graph: SharingGraph, key: tuple[int, ...]) -> bool:
    """Whether the sorted group ``key`` may form a class (``graph.is_group``, cheaper on a conflict-free family)."""
    if len(key) < 2:
        return True
    fam = graph.families[key[0]]
    if not graph.conflicts and all(graph.families[i] == fam for i in key):
        return True
    return graph.is_group(key)


class _State:
    """The current coloring: classes (members and option), their labels per layer and per family, cost, memory."""

    def __init__(self, graph: SharingGraph, budget: float) -> None:
        """An empty coloring of ``graph``."""
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
        """The group's options; none for a class larger than ``max_group_size`` or outside the graph's space."""
        if self.g.max_group_size is not None and len(group) > self.g.max_group_size:
            return []
        key = tuple(sorted(group))
        hit = self.cache.get(key)
        if hit is None:
            if len(self.cache) > 400_000:
                self.cache.clear()
            hit = self.g.cost_model.options(key, int(self.g.sizes[key[0]])) if _in_space(self.g, key) else []
            self.cache[key] = hit
        return hit

    def add(self, members: set[int], opt: Option) -> int:
        """Add a class; its id."""
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
        """Drop class ``cid`` (its layers' labels are left for :meth:`add` to overwrite)."""
        members = self.members.pop(cid)
        opt = self.opt.pop(cid)
        for f in {self.g.families[i] for i in members}:
            self.fam_classes[f].discard(cid)
        self.cost -= opt.cost
        self.mem -= opt.memory

    def compatible(self, i: int, group: set[int]) -> bool:
        """Whether layer ``i`` has no conflict with ``group``."""
        conf = self.g.conflicts_of(i)
        return not conf or conf.isdisjoint(group)

    def chosen(self) -> Chosen:
        """The classes as (sorted members, option), ordered by first member."""
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


def _calibrate(samples: list[float], scale: float) -> float:
    """Start temperature: the median positive |delta| of the calibration proposals."""
    pos = sorted(s for s in samples if s > 0)
    if not pos:
        return 1e-3 * scale
    return pos[len(pos) // 2]


# ---- proposals ------------------------------------------------------------------------------------------------

@dataclass
class _Proposal:
    """Replace classes ``old`` by ``groups``; with ``option`` set, give class ``old[0]`` that action instead."""

    old: list[int]
    groups: list[set[int]]
    option: Option | None = None


def _merge_in_scope(st: _State, rng: random.Random, fam: str, cids: list[int]) -> _Proposal | None:
    """Merge two classes lying within one input scope (across families)."""
    scopes = st.g.scopes
    sc = scopes[rng.randrange(len(scopes))]
    scids = list({st.label[i] for i in sc if st.members[st.label[i]] <= set(sc)})
    if len(scids) < 2:
        return None
    ca, cb = rng.sample(scids, 2)
    return _Proposal([ca, cb], [st.members[ca] | st.members[cb]])


def _move_layer(st: _State, rng: random.Random, fam: str, cids: list[int]) -> _Proposal | None:
    """Move one layer of ``fam`` to another of its classes or to a class of its own."""
    i = rng.choice(st.g.family_members[fam])
    src = st.label[i]
    k = rng.randrange(len(cids) + 1)
    if k == len(cids) or cids[k] == src:
        if len(st.members[src]) == 1:
            return None
        return _Proposal([src], [st.members[src] - {i}, {i}])
    tgt = cids[k]
    if not st.compatible(i, st.members[tgt]):
        return None
    rest = st.members[src] - {i}
    return _Proposal([src, tgt], ([rest] if rest else []) + [st.members[tgt] | {i}])


def _swap_layers(st: _State, rng: random.Random, fam: str, cids: list[int]) -> _Proposal | None:
    """Swap two layers of ``fam`` that are in different classes."""
    members = st.g.family_members[fam]
    if len(members) < 2:
        return None
    a, b = rng.sample(members, 2)
    ca, cb = st.label[a], st.label[b]
    if ca == cb:
        return None
    ga, gb = st.members[ca] - {a}, st.members[cb] - {b}
    if not (st.compatible(b, ga) and st.compatible(a, gb)):
        return None
    return _Proposal([ca, cb], [ga | {b}, gb | {a}])


def _merge_classes(st: _State, rng: random.Random, fam: str, cids: list[int]) -> _Proposal | None:
    """Merge two classes of ``fam``."""
    if len(cids) < 2:
        return None
    ca, cb = rng.sample(cids, 2)
    ma, mb = st.members[ca], st.members[cb]
    if any(not st.compatible(i, mb) for i in ma):
        return None
    return _Proposal([ca, cb], [ma | mb])


def _trade_memory(st: _State, rng: random.Random, fam: str, cids: list[int], fams: list[str]) -> _Proposal | None:
    """Trade memory between families: merge two classes of ``fam``, split one of another family."""
    other = fams[rng.randrange(len(fams))]
    ocids = list(st.fam_classes[other])
    if len(cids) < 2 or not ocids:
        return None
    ca, cb = rng.sample(cids, 2)
    cc = rng.choice(ocids)
    mc = list(st.members[cc])
    if cc in (ca, cb) or len(mc) < 2:
        return None
    ma, mb = st.members[ca], st.members[cb]
    if any(not st.compatible(i, mb) for i in ma):
        return None
    rng.shuffle(mc)
    cut = rng.randrange(1, len(mc))
    return _Proposal([ca, cb, cc], [ma | mb, set(mc[:cut]), set(mc[cut:])])


def _split_class(st: _State, rng: random.Random, fam: str, cids: list[int]) -> _Proposal | None:
    """Split a class of ``fam`` in two at random."""
    if not cids:
        return None
    ca = rng.choice(cids)
    ma = list(st.members[ca])
    if len(ma) < 2:
        return None
    rng.shuffle(ma)
    cut = rng.randrange(1, len(ma))
    return _Proposal([ca], [set(ma[:cut]), set(ma[cut:])])


def _change_action(st: _State, rng: random.Random, fam: str, cids: list[int]) -> _Proposal | None:
    """Give a class of ``fam`` another of its options (none when it has no other)."""
    if not cids:
        return None
    ca = rng.choice(cids)
    opts = st.options(st.members[ca])
    if not opts:  # e.g. a start class larger than max_group_size
        return None
    o = rng.choice(opts)
    if o == st.opt[ca]:
        return None
    return _Proposal([ca], [st.members[ca]], o)


def _propose(st: _State, rng: random.Random, fams: list[str], multi_option: bool) -> _Proposal | None:
    """Pick a family and a move at random and let the move propose."""
    fam = fams[rng.randrange(len(fams))]
    cids = list(st.fam_classes[fam])
    r = rng.random()
    if st.g.scopes and r < 0.1:
        return _merge_in_scope(st, rng, fam, cids)
    if r < 0.5 or len(cids) == 1:
        return _move_layer(st, rng, fam, cids)
    if r < 0.7:
        return _swap_layers(st, rng, fam, cids)
    if r < 0.85:
        return _merge_classes(st, rng, fam, cids)
    if r < 0.9:
        return _trade_memory(st, rng, fam, cids, fams)
    if r < 0.95 or not multi_option:
        return _split_class(st, rng, fam, cids)
    return _change_action(st, rng, fam, cids)


# ---- the search -----------------------------------------------------------------------------------------------

@dataclass
class _Search:
    """The annealer's running state: coloring, penalty, temperature calibration, best coloring, counters."""

    st: _State
    rng: random.Random
    budget: float
    scale: float
    penalty: float
    temp0: float | None
    best_chosen: Chosen | None
    best_cost: float
    samples: list[float] = field(default_factory=list)
    accepted: int = 0


def _delta(run: _Search, p: _Proposal) -> tuple[list[Option], float] | None:
    """The options the proposal's groups take and the energy change, or None if it cannot be priced."""
    st, budget, penalty = run.st, run.budget, run.penalty
    if p.option is not None:  # change an action
        o, cur = p.option, st.opt[p.old[0]]
        room = budget - (st.mem - cur.memory)
        if o.memory > room and penalty == 0:
            return None
        return [o], o.cost - cur.cost + penalty * (max(0.0, o.memory - room) - max(0.0, st.mem - budget))
    old_mem = sum(st.opt[c].memory for c in p.old)
    old_cost = sum(st.opt[c].cost for c in p.old)
    room = budget - (st.mem - old_mem)
    picked = _pick(st, p.groups, room, penalty)
    if picked is None:
        return None
    new_opts, e_new = picked
    return new_opts, e_new - (old_cost + penalty * max(0.0, old_mem - room))


def _calibrating(run: _Search, delta: float) -> bool:
    """While the start temperature is unknown, record |delta| (the first 200 proposals set it); True then."""
    if run.temp0 is not None:
        return False
    run.samples.append(abs(delta))
    if len(run.samples) >= 200:
        run.temp0 = _calibrate(run.samples, run.scale)
    return True


def _accept(rng: random.Random, delta: float, temp: float) -> bool:
    """Metropolis: always downhill, uphill with probability exp(-delta / temp)."""
    return delta <= 0 or rng.random() < math.exp(-delta / max(temp, 1e-300))


def _commit(run: _Search, p: _Proposal, opts: list[Option]) -> None:
    """Apply an accepted proposal; a regrouping that meets the budget ends the repair; keep the best coloring."""
    st = run.st
    for c in p.old:
        st.remove(c)
    for grp, o in zip(p.groups, opts):
        st.add(grp, o)
    run.accepted += 1
    if st.mem <= run.budget:
        if run.penalty and p.option is None:
            run.penalty = 0.0  # repaired: from now on only budget-feasible moves
        if st.cost < run.best_cost - 1e-15:
            run.best_cost, run.best_chosen = st.cost, st.chosen()


def _step(run: _Search, fams: list[str], multi_option: bool, temp: float) -> None:
    """One proposal: propose, price, calibrate or accept, commit."""
    p = _propose(run.st, run.rng, fams, multi_option)
    if p is None:
        return
    priced = _delta(run, p)
    if priced is None:
        return
    opts, delta = priced
    if _calibrating(run, delta):
        return
    if _accept(run.rng, delta, temp):
        _commit(run, p, opts)


def _start(graph: SharingGraph, budget: float, start: Chosen | None) -> _State | str:
    """The start state: ``start``'s classes, else singletons with their least memory; or why there is none."""
    st = _State(graph, budget)
    if start is not None:
        for group, opt in start:
            st.add(set(group), opt)
        return st
    for i in range(graph.n):
        opts = st.options((i,))
        if not opts:
            return f"layer {graph.names[i]!r} has no action"
        st.add({i}, min(opts, key=lambda o: (o.memory, o.cost)))
    return st


def _new_search(st: _State, rng: random.Random, budget: float, t_start: float | None) -> _Search:
    """The search from ``st``: penalty on excess memory if it breaks the budget, best coloring so far."""
    scale = max(1e-12, max((o.cost for o in st.opt.values()), default=0.0))
    penalty = 0.0 if st.mem <= budget else 1e3 * scale / max(1, int(st.g.sizes.min())) + 1.0
    best_chosen = st.chosen() if st.mem <= budget else None
    best_cost = st.cost if best_chosen is not None else math.inf
    return _Search(st, rng, budget, scale, penalty, t_start, best_chosen, best_cost)


def _stop_reason(run: _Search, deadline: float | None, improved: bool, since: int, patience: int) -> str | None:
    """Why to stop now (checked every 64 proposals), or None; no convergence right after an improvement."""
    if run.best_cost <= 0.0:
        return "zero cost (costs are >= 0: cannot improve)"
    if deadline is not None and time.perf_counter() >= deadline:
        return "time limit"
    if not improved and run.temp0 is not None and since >= patience:
        return f"converged: no better coloring in {since} proposals"
    return None


def _anneal(run: _Search, fams: list[str], multi_option: bool, iterations: int, time_limit: float | None,
            t_end_ratio: float, patience: int, t0: float) -> tuple[int, str]:
    """The main loop: cool geometrically over the iterations or the time limit; (proposals made, why it stopped)."""
    deadline = None if time_limit is None else t0 + time_limit
    it = 0
    last_best, since = run.best_cost, 0
    while it < iterations:
        if (it & 63) == 0:
            improved = run.best_cost < last_best - 1e-15
            stopped = _stop_reason(run, deadline, improved, since, patience)
            if stopped is not None:
                return it, stopped
            if improved:
                last_best, since = run.best_cost, 0
        since += 1
        if run.temp0 is None:
            temp = math.inf  # calibration: the first 200 proposals measure typical |delta|
        else:
            frac = it / iterations if deadline is None or not time_limit else (time.perf_counter() - t0) / time_limit
            temp = run.temp0 * (t_end_ratio ** min(1.0, frac))
        it += 1
        _step(run, fams, multi_option, temp)
    return it, "iterations"


class AnnealBackend(HeuristicBackend):
    """Simulated annealing on colorings (medoid graphs without conflicts: :func:`.medoid_search`)."""

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
        check("iterations", iterations, NONE, NON_NEGATIVE_INT)
        if graph.kind == "medoid" and not graph.conflicts:
            return medoid_search(graph, budget, start, time_limit, seed, steps=iterations, patience=stall)
        if iterations is None:
            iterations = 400 * graph.n + 20_000 if time_limit is None else 10**12
        rng = random.Random(seed)
        st = _start(graph, budget, start)
        if isinstance(st, str):
            return None, {"iterations": 0, "reason": st}
        fams = [f for f, m in graph.family_members.items() if len(m) > 1 or graph.scopes]
        run = _new_search(st, rng, budget, t_start)
        t0 = time.perf_counter()
        patience = max(20_000, 500 * graph.n) if stall is None else int(stall)
        it, stopped = _anneal(run, fams, graph.kind == "group", iterations if fams else 0, time_limit,
                              t_end_ratio, patience, t0)
        facts = {"iterations": it, "accepted": run.accepted, "start": "greedy" if start is not None else "singletons",
                 "warm_start": "used" if start is not None else "not given",
                 "temperature0": run.temp0, "seconds": time.perf_counter() - t0, "stopped": stopped}
        return run.best_chosen, facts
