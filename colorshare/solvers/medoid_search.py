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


def medoid_search(graph: SharingGraph, budget: float, start: Chosen | None, time_limit: float | None, seed: int,
                  steps: int | None = None, patience: int | None = None) -> tuple[Chosen | None, dict[str, Any]]:
    """Best budget-feasible coloring found and facts (``stopped`` says why it stopped)."""
    t0 = time.perf_counter()
    rng = random.Random(seed)
    fam = _Families(graph)
    nf = len(fam.idx)
    cap = budget_hi(budget)
    where = {int(g): (f, t) for f, idx in enumerate(fam.idx) for t, g in enumerate(idx.tolist())}
    reps: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * nf
    if start is not None:
        chosen: list[list[int]] = [[] for _ in range(nf)]
        for group, opt in start:
            r = opt.representative if opt.representative is not None else group[0]
            f, t = where[int(r)]
            chosen[f].append(t)
        reps = [np.array(sorted(c), dtype=np.int64) for c in chosen]
    else:
        reps = [np.array([int(np.argmin(c.sum(axis=0)))]) for c in fam.cost]
    memory = sum(len(r) * s for r, s in zip(reps, fam.size))
    if memory > cap:
        return None, {"stopped": "no start within the budget", "steps": 0}
    values = []
    for f in range(nf):
        v, reps[f] = swap_descent(fam.cost[f], reps[f])
        values.append(v)

    def fill(reps: list[np.ndarray], values: list[float], memory: int) -> int:
        """Open the best representative per parameter while the budget has room; returns the memory."""
        while True:
            best = None
            for f in range(nf):
                if memory + fam.size[f] <= cap and len(reps[f]) < len(fam.idx[f]):
                    gain, x = fam.best_add(f, reps[f])
                    if gain > 0 and (best is None or gain / fam.size[f] > best[0]):
                        best = (gain / fam.size[f], f, x)
            if best is None:
                return memory
            _, f, x = best
            values[f], reps[f] = swap_descent(fam.cost[f], np.append(reps[f], x))
            memory += fam.size[f]

    memory = fill(reps, values, memory)
    current = math.fsum(values)
    best_total, best_reps = current, [r.copy() for r in reps]
    limit = steps if steps is not None else (10**12 if time_limit is not None else 200 * nf + 2000)
    patience = patience if patience is not None else max(300, 30 * nf)
    cool = 3 * patience  # steps over which the temperature falls by 1e4 (sooner if the time limit is nearer)
    temp0: float | None = None
    samples: list[float] = []
    it, since, accepted = 0, 0, 0
    stopped = "steps"
    while it < limit:
        if best_total <= 0.0:
            stopped = "zero cost (costs are >= 0: cannot improve)"
            break
        if time_limit is not None and time.perf_counter() - t0 >= time_limit:
            stopped = "time limit"
            break
        if since >= patience and it >= cool:
            stopped = f"converged: no better coloring in {since} steps"
            break
        it += 1
        since += 1
        trial = list(reps)
        trial_values = list(values)
        trial_memory = memory
        if nf > 1 and rng.random() < 0.3:  # trade a representative between two families
            a, b = rng.sample(range(nf), 2)
            if len(trial[a]) < 2 or len(trial[b]) >= len(fam.idx[b]):
                continue
            while trial_memory + fam.size[b] > cap and len(trial[a]) > 1:  # close in a until b's one fits
                _, k = fam.cheapest_removal(a, trial[a])
                trial[a] = np.delete(trial[a], k)
                trial_memory -= fam.size[a]
            if trial_memory + fam.size[b] > cap:
                continue
            trial_memory += fam.size[b]
            trial_values[a], trial[a] = swap_descent(fam.cost[a], trial[a])
            _, x = fam.best_add(b, trial[b])
            trial_values[b], trial[b] = swap_descent(fam.cost[b], np.append(trial[b], x))
        else:  # kick one family and descend again
            f = rng.randrange(nf)
            m, r = len(fam.idx[f]), trial[f]
            if len(r) == 0 or len(r) >= m:
                continue
            out = set(rng.sample(range(len(r)), min(len(r), m - len(r), rng.randint(1, 3))))
            closed = set(r.tolist())
            into = rng.sample([j for j in range(m) if j not in closed], len(out))
            kicked = np.array([x for k, x in enumerate(r.tolist()) if k not in out] + into, dtype=np.int64)
            trial_values[f], trial[f] = swap_descent(fam.cost[f], kicked)
        trial_memory = fill(trial, trial_values, trial_memory)
        total = math.fsum(trial_values)
        delta = total - current
        if temp0 is None:
            samples.append(abs(delta))
            if len(samples) >= 20:
                pos = sorted(s for s in samples if s > 0)
                temp0 = 0.2 * pos[len(pos) // 2] if pos else 1e-3 * max(current, 1e-12)
            accept = delta < 0
        else:
            frac = it / cool if time_limit is None else max(it / cool, (time.perf_counter() - t0) / time_limit)
            temp = temp0 * (1e-4 ** min(1.0, frac))
            accept = delta <= 0 or rng.random() < math.exp(-delta / max(temp, 1e-300))
        if accept:
            reps, values, memory, current = trial, trial_values, trial_memory, total
            accepted += 1
            if current < best_total * (1 - 1e-12) - 1e-15:
                best_total, best_reps, since = current, [r.copy() for r in reps], 0
    out: Chosen = [c for f, r in enumerate(best_reps) for c in medoid_classes(fam.cost[f], r, fam.idx[f], fam.size[f])]
    facts = {"method": "annealed iterated swap descent on representatives (medoid costs, no conflicts)",
             "steps": it, "accepted": accepted, "temperature0": temp0, "seconds": time.perf_counter() - t0,
             "stopped": stopped, "start": "greedy" if start is not None else "greedy (representatives opened one by one)",
             "warm_start": "used" if start is not None else "not given"}
    return sorted(out, key=lambda t: t[0][0]), facts
