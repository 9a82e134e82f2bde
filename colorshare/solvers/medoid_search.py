"""Annealed iterated swap descent for medoid graphs without conflicts (the ``anneal`` backend's medoid path).

A coloring is fixed by its representatives (every layer joins its family's cheapest one), so the search runs
on representatives. Each step perturbs and re-descends:

- kick: in one family, close 1-3 random representatives and open as many random members, then swap descent
  (Teitz-Bart moves scored as in FasterPAM, :mod:`.swap`), which keeps the family's memory;
- trade: close the cheapest representatives of one family until one more fits in another, open the best
  there, then descend in both: the cross-family memory trade (families differ in size);
- fill: while the budget has room, open the best representative in the family where it helps most.

A step is accepted by the Metropolis rule, at a temperature cooled geometrically over ``3 * patience`` steps
(or the time limit, if sooner). It stops at the time limit, after ``steps``, or when converged (cold, and no
better coloring in ``patience`` steps), and says which.
"""

from __future__ import annotations

import math
import random
import time
from typing import Any

import numpy as np

from ..formulations.base import Chosen, budget_hi
from ..formulations.graph import SharingGraph
from .swap import medoid_classes, swap_descent

__all__ = ["medoid_search"]


class _Families:
    def __init__(self, graph: SharingGraph) -> None:
        matrix = graph.cost_matrix
        self.idx = [np.asarray(m, dtype=np.int64) for m in graph.family_members.values()]
        self.cost = [np.asarray(matrix[np.ix_(i, i)], dtype=np.float64) for i in self.idx]
        self.size = [int(graph.sizes[i[0]]) for i in self.idx]

    def value(self, f: int, reps: np.ndarray) -> float:
        return float(self.cost[f][:, reps].min(axis=1).sum())

    def best_add(self, f: int, reps: np.ndarray) -> tuple[float, int]:
        """(gain, member) of opening the best new representative in family f (gain >= 0)."""
        c = self.cost[f]
        d1 = c[:, reps].min(axis=1)
        gain = np.maximum(d1[:, None] - c, 0.0).sum(axis=0)
        gain[reps] = -1.0
        x = int(np.argmax(gain))
        return float(gain[x]), x

    def cheapest_removal(self, f: int, reps: np.ndarray) -> tuple[float, int]:
        """(loss, position in reps) of closing the representative whose layers lose least."""
        best = (math.inf, 0)
        for k in range(len(reps)):
            rest = np.delete(reps, k)
            loss = self.value(f, rest) - self.value(f, reps)
            if loss < best[0]:
                best = (loss, k)
        return best

def _start_reps(fam: _Families, start: Chosen | None) -> list[np.ndarray]:
    """Representatives per family (positions within it, sorted): those of ``start``, else each 1-medoid."""
    if start is None:
        return [np.array([int(np.argmin(c.sum(axis=0)))]) for c in fam.cost]
    where = {int(g): (f, t) for f, idx in enumerate(fam.idx) for t, g in enumerate(idx.tolist())}
    chosen: list[list[int]] = [[] for _ in fam.idx]
    for group, opt in start:
        r = opt.representative if opt.representative is not None else group[0]
        f, t = where[int(r)]
        chosen[f].append(t)
    return [np.array(sorted(c), dtype=np.int64) for c in chosen]


class _Search:
    """One annealing run on representatives: the current and best ones per family, the temperature and the
    counters. Built from a start within the budget, descended in every family and filled."""

    def __init__(self, fam: _Families, cap: float, reps: list[np.ndarray], memory: int, seed: int, t0: float,
                 time_limit: float | None, steps: int | None, patience: int | None) -> None:
        self.fam, self.cap, self.t0, self.time_limit = fam, cap, t0, time_limit
        self.nf = nf = len(fam.idx)
        self.rng = random.Random(seed)
        self.values: list[float] = []
        for f in range(nf):
            v, reps[f] = swap_descent(fam.cost[f], reps[f])
            self.values.append(v)
        self.reps = reps
        self.memory = self.fill(reps, self.values, memory)
        self.current = math.fsum(self.values)
        self.best_total, self.best_reps = self.current, [r.copy() for r in reps]
        self.limit = steps if steps is not None else (10**12 if time_limit is not None else 200 * nf + 2000)
        self.patience = patience if patience is not None else max(300, 30 * nf)
        self.cool = 3 * self.patience  # steps over which the temperature falls by 1e4 (sooner near the time limit)
        self.temp0: float | None = None
        self.samples: list[float] = []
        self.it, self.since, self.accepted = 0, 0, 0

    def fill(self, reps: list[np.ndarray], values: list[float], memory: int) -> int:
        """Open the best representative per parameter while the budget has room; returns the memory."""
        fam = self.fam
        while True:
            best = None
            for f in range(self.nf):
                if memory + fam.size[f] <= self.cap and len(reps[f]) < len(fam.idx[f]):
                    gain, x = fam.best_add(f, reps[f])
                    if gain > 0 and (best is None or gain / fam.size[f] > best[0]):
                        best = (gain / fam.size[f], f, x)
            if best is None:
                return memory
            _, f, x = best
            values[f], reps[f] = swap_descent(fam.cost[f], np.append(reps[f], x))
            memory += fam.size[f]

    def run(self) -> str:
        """Anneal until a stop; why it stopped."""
        while self.it < self.limit:
            stopped = self.stop_reason()
            if stopped is not None:
                return stopped
            self.step()
        return "steps"

    def stop_reason(self) -> str | None:
        """Why to stop before the next step (zero cost, time limit, converged), or None to go on."""
        if self.best_total <= 0.0:
            return "zero cost (costs are >= 0: cannot improve)"
        if self.time_limit is not None and time.perf_counter() - self.t0 >= self.time_limit:
            return "time limit"
        if self.since >= self.patience and self.it >= self.cool:
            return f"converged: no better coloring in {self.since} steps"
        return None

    def step(self) -> None:
        """One step: a trade (30%, several families) or a kick, then fill; kept by the Metropolis rule."""
        self.it += 1
        self.since += 1
        trial, trial_values = list(self.reps), list(self.values)
        if self.nf > 1 and self.rng.random() < 0.3:
            trial_memory = self.trade(trial, trial_values)
        else:
            trial_memory = self.kick(trial, trial_values)
        if trial_memory is None:
            return
        trial_memory = self.fill(trial, trial_values, trial_memory)
        total = math.fsum(trial_values)
        if self.accept(total - self.current):
            self.reps, self.values, self.memory, self.current = trial, trial_values, trial_memory, total
            self.accepted += 1
            if self.current < self.best_total * (1 - 1e-12) - 1e-15:
                self.best_total, self.best_reps, self.since = self.current, [r.copy() for r in self.reps], 0

    def trade(self, trial: list[np.ndarray], trial_values: list[float]) -> int | None:
        """Move memory between two random families a -> b: close a's cheapest representatives until one more
        fits in b, open b's best, descend in both (in ``trial``); the trial's memory, or None if it cannot."""
        fam = self.fam
        a, b = self.rng.sample(range(self.nf), 2)
        if len(trial[a]) < 2 or len(trial[b]) >= len(fam.idx[b]):
            return None
        memory = self.memory
        while memory + fam.size[b] > self.cap and len(trial[a]) > 1:  # close in a until b's one fits
            _, k = fam.cheapest_removal(a, trial[a])
            trial[a] = np.delete(trial[a], k)
            memory -= fam.size[a]
        if memory + fam.size[b] > self.cap:
            return None
        memory += fam.size[b]
        trial_values[a], trial[a] = swap_descent(fam.cost[a], trial[a])
        _, x = fam.best_add(b, trial[b])
        trial_values[b], trial[b] = swap_descent(fam.cost[b], np.append(trial[b], x))
        return memory

    def kick(self, trial: list[np.ndarray], trial_values: list[float]) -> int | None:
        """In one random family, swap 1-3 random representatives for random members and descend again (in
        ``trial``; the memory stays); the trial's memory, or None if the family has nothing to swap."""
        rng = self.rng
        f = rng.randrange(self.nf)
        m, r = len(self.fam.idx[f]), trial[f]
        if len(r) == 0 or len(r) >= m:
            return None
        out = set(rng.sample(range(len(r)), min(len(r), m - len(r), rng.randint(1, 3))))
        closed = set(r.tolist())
        into = rng.sample([j for j in range(m) if j not in closed], len(out))
        kicked = np.array([x for k, x in enumerate(r.tolist()) if k not in out] + into, dtype=np.int64)
        trial_values[f], trial[f] = swap_descent(self.fam.cost[f], kicked)
        return self.memory

    def accept(self, delta: float) -> bool:
        """The Metropolis rule for a change of ``delta``. The first 20 steps only descend and set the starting
        temperature (a fifth of their median nonzero |delta|); it then cools geometrically by 1e4 over ``cool``
        steps (or the time limit, if sooner)."""
        if self.temp0 is None:
            self.samples.append(abs(delta))
            if len(self.samples) >= 20:
                pos = sorted(s for s in self.samples if s > 0)
                self.temp0 = 0.2 * pos[len(pos) // 2] if pos else 1e-3 * max(self.current, 1e-12)
            return delta < 0
        frac = self.it / self.cool
        if self.time_limit is not None:
            frac = max(frac, (time.perf_counter() - self.t0) / self.time_limit)
        temp = self.temp0 * (1e-4 ** min(1.0, frac))
        return delta <= 0 or self.rng.random() < math.exp(-delta / max(temp, 1e-300))


def medoid_search(graph: SharingGraph, budget: float, start: Chosen | None, time_limit: float | None, seed: int,
                  steps: int | None = None, patience: int | None = None) -> tuple[Chosen | None, dict[str, Any]]:
    """Best budget-feasible coloring found and facts (``stopped`` says why it stopped)."""
    t0 = time.perf_counter()
    fam = _Families(graph)
    cap = budget_hi(budget)
    reps = _start_reps(fam, start)
    memory = sum(len(r) * s for r, s in zip(reps, fam.size))
    if memory > cap:
        return None, {"stopped": "no start within the budget", "steps": 0}
    search = _Search(fam, cap, reps, memory, seed, t0, time_limit, steps, patience)
    stopped = search.run()
    out: Chosen = [c for f, r in enumerate(search.best_reps)
                   for c in medoid_classes(fam.cost[f], r, fam.idx[f], fam.size[f])]
    facts = {"method": "annealed iterated swap descent on representatives (medoid costs, no conflicts)",
             "steps": search.it, "accepted": search.accepted, "temperature0": search.temp0,
             "seconds": time.perf_counter() - t0, "stopped": stopped,
             "start": "greedy" if start is not None else "greedy (representatives opened one by one)",
             "warm_start": "used" if start is not None else "not given"}
    return sorted(out, key=lambda t: t[0][0]), facts
