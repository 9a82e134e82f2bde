"""Measured costs for the classes an optimum shares: a cutting-plane loop on the surrogate's errors.

The probed surrogate fits each layer's level to one measured cut of that layer alone; a shared class moves
several layers at once, often far from that probe, and there the surrogate can be wrong (on SmolLM2 large,
uneven perturbations measure 1.6-2.9x their prediction). An exact optimizer buys every class the surrogate
underprices. :func:`solve_measured` therefore measures each shared class the optimum picks, alone, with the
very divergence the probes use (:func:`colorshare.torch.probe.output_divergence` on the probe batches), puts
the measured cost into the graph in place of the prediction (:meth:`ModelGraph.set_measured`) and solves
again, until the chosen coloring is priced by measurement or stops changing. Costs stay in the graph's units
(a probed graph's costs are that divergence), so the objective of the last solve is what the chosen classes
measure plus what the per-layer options predict.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..solvers.solution import Solution
from .memory import release
from .model_graph import ModelGraph
from .probe import _reference, output_divergence
from .replay import BlockReplay

__all__ = ["measure_classes", "solve_measured"]


def measure_classes(graph: ModelGraph, model: nn.Module, batches: Sequence[Any], classes: Sequence[Any],
                    loss_fn: Callable[[Any, Any], torch.Tensor] | None = None,
                    replay: BlockReplay | None = None) -> list[float]:
    """The measured divergence of each class applied alone to ``model`` (classes: ``SharingClass``), on
    ``batches``, in the probes' units. Every weight is restored exactly afterwards. ``replay``: the dense
    model's block outputs on ``batches`` (made here if None; pass one to measure in several calls)."""
    mods = dict(model.named_modules())
    replay = replay or BlockReplay(model, batches)  # the blocks before a class's first member are not rerun
    refs = [_reference(o, b, loss_fn) for o, b in zip(replay.dense, batches)]
    out = []
    for cl in classes:
        params = cl.params or {}
        new = graph.class_weights(cl.members, cl.action, params.get("rank"), cl.representative,
                                  int(params.get("bits", 16)))
        ws = [mods[graph.module_names[i]].weight for i in cl.members]
        old = [w.detach().clone() for w in ws]
        try:
            with torch.no_grad():
                for i, w, W in zip(cl.members, ws, new):
                    w.copy_(graph.to_layout(i, W))
                outs = replay.outputs(replay.start([graph.module_names[i] for i in cl.members]))
                out.append(math.fsum(output_divergence(o, b, r, loss_fn)
                                     for o, b, r in zip(outs, batches, refs)) / len(refs))
        finally:
            with torch.no_grad():
                for w, o in zip(ws, old):
                    w.copy_(o)
    return out


def solve_measured(graph: ModelGraph, model: nn.Module, batches: Sequence[Any], budget: float, *,
                   loss_fn: Callable[[Any, Any], torch.Tensor] | None = None, rounds: int = 4,
                   measure_limit: float | None = 300.0, solve: Callable[..., Solution] | None = None,
                   **solve_options: Any) -> Solution:
    """Solve, measure the shared classes of the answer, price them by measurement, solve again.

    Parameters
    ----------
    graph : a probed :class:`ModelGraph` of ``model`` (its costs are the measured divergence's units).
    model, batches : the model and its probe batches (the graph's ``probe_set``).
    budget : parameters, as for :func:`colorshare.solve`; ``solve_options`` go to it (backend, time_limit...).
    rounds : at most this many solves (each after the first follows new measurements).
    measure_limit : seconds of measurement in all (None: no limit); each round measures the most expensive
        unmeasured classes first, and stops when it is spent.

    Returns
    -------
    The last Solution; ``facts["measured"]`` says how many rounds ran, which classes were measured (names,
    action, predicted and measured cost) and the seconds the measurements took. Stops early when every shared
    class of the answer is priced by measurement, or the coloring did not change.

    Raises
    ------
    ValueError if the graph is not probed (its costs would not be in the divergence's units) or ``rounds < 1``.
    """
    from .. import solve as default_solve

    if getattr(graph, "probe_ratios", None) is None:
        raise ValueError("measured costs need a probed graph (build_graph(..., curvature='probed')): other "
                         "surrogates are not in the units of the measured divergence")
    if not (isinstance(rounds, int) and rounds >= 1):
        raise ValueError(f"rounds must be a positive int, got {rounds!r}")
    run = solve or default_solve
    replay: BlockReplay | None = None
    log: list[dict[str, Any]] = []
    spent = 0.0
    sol = run(graph, budget, **solve_options)
    done = 1
    stop = "no shared class to measure"
    while sol.colors is not None:
        new = [c for c in sol.classes if len(c.members) > 1 and (c.members, c.action, c.memory) not in graph.measured]
        if not new:
            stop = "every shared class of the answer is priced by measurement"
            break
        if done >= rounds:
            stop = f"round limit ({rounds}) with {len(new)} shared class(es) unmeasured"
            break
        if measure_limit is not None and spent >= measure_limit:
            stop = f"measurement time limit ({measure_limit:g} s) with {len(new)} shared class(es) unmeasured"
            break
        new.sort(key=lambda c: -c.cost)  # the classes that weigh most in the objective first
        costs: list[float] = []
        for c in new:
            if measure_limit is not None and spent >= measure_limit:
                break
            t = time.perf_counter()
            replay = replay or BlockReplay(model, batches)
            costs += measure_classes(graph, model, batches, [c], loss_fn, replay)
            spent += time.perf_counter() - t
        release()  # each measured class built and dropped its factors: give the pages back before the next solve
        for c, m in zip(new, costs):
            # a loss_fn's increase may measure below 0 (noise, or a real gain): priced at the surrogate's floor
            graph.set_measured(c.members, c.action, c.memory, max(0.0, m))
            log.append({"layers": [graph.names[i] for i in c.members], "action": c.action,
                        "rank": (c.params or {}).get("rank"), "predicted": c.cost, "measured": m, "round": done})
        before = [(c.members, c.action, c.memory) for c in sol.classes]
        sol = run(graph, budget, **solve_options)
        done += 1
        if [(c.members, c.action, c.memory) for c in sol.classes] == before:
            stop = "the answer did not change (its shared classes are now priced by measurement)"
            break
    sol.facts["measured"] = {"rounds": done, "classes": log, "seconds": spent, "stopped": stop}
    return sol
