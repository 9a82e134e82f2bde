"""Compression at equal memory: every method, every budget, the surrogate and the real metrics of the model."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tqdm.auto import tqdm

from .. import solve
from .config import BenchConfig
from .methods import allowed_groups
from .results import BenchResult, CompressionRow, coloring_label, compression_row

if TYPE_CHECKING:  # colorshare.bench imports torch only where a model section runs
    from ..formulations.graph import SharingClass
    from ..solvers.solution import Solution
    from ..torch.model_graph import ModelGraph
    from ..torch.models import ModelCase

__all__ = ["COMPRESSION_COLUMNS", "Coloring", "method_runs", "run_compression"]

COMPRESSION_COLUMNS = ("model", "method", "budget_fraction", "stored_parameters", "surrogate", "metric", "value")

@dataclass
class Coloring:
    """A coloring evaluated on a model: its classes as (members, action, memory), for the fidelity study."""

    name: str
    model: str
    classes: list[tuple[tuple[int, ...], str, int]]
    surrogate: float
    loss_increase: float | None = None
    curvature: str = "layerwise"  # the estimator whose graph chose and applied it
    baseline: bool = False  # a papers' baseline (its ranks need not be on the graph's menu)


def _gap(gap: float | None) -> str:
    return "unknown (no bound)" if gap is None else f"{100 * gap:.3g} %"


def method_runs(cfg: BenchConfig) -> list[tuple[str, str, int]]:
    """(label, method, seed) for each configured method; ``random`` expands to ``random-s0`` ... per seed."""
    out: list[tuple[str, str, int]] = []
    for m in cfg.methods:
        if m == "random":
            out += [(f"random-s{s}", "random", cfg.seed + s) for s in range(cfg.random_seeds)]
        else:
            out.append((m, m, cfg.seed))
    return out


def run_compression(cfg: BenchConfig, case: ModelCase, graph: ModelGraph, res: BenchResult,
                    extra: dict[str, ModelGraph] | None = None) -> tuple[list[CompressionRow], list[Coloring]]:
    """Sweep ``cfg.budgets`` x methods on one model case (``graph``: its graph under ``cfg.curvature``); rows in
    :data:`COMPRESSION_COLUMNS` (one per metric) plus a ``dense`` reference row per metric, and the colorings
    with their measured loss increase. ``extra``: estimator -> graph under which ``optimal`` is solved too
    (method ``optimal-<estimator>``; its surrogate column is in that estimator's units)."""
    from ..torch import apply_coloring, stored_parameters
    from ..torch.actions.basis import basis_option
    from ..torch.baselines import baseline

    rows: list[CompressionRow] = []
    colorings: list[Coloring] = []
    base_params = stored_parameters(case.model)
    base_loss = case.loss(case.model)

    def basis_cost(c: SharingClass) -> float:
        """A baseline's basis class priced on the run's graph at its own rank (on the menu or not)."""
        assert c.params is not None, "a baseline's basis class carries its rank"
        opt = basis_option(graph, c.members, c.params["rank"], trust=False)
        assert opt is not None, "basis_option prices every rank with trust=False"
        return opt.cost

    def add(method: str, frac: float, stored: int, surrogate: float, metrics: dict[str, float]) -> None:
        for metric, value in metrics.items():
            rows.append(compression_row(case.name, method, frac, stored, surrogate, metric, value))

    add("dense", 1.0, graph.dense_size, 0.0, case.metrics(case.model))
    # the default pipeline measures the shared classes its optima pick (colorshare.torch.measure) on a graph of
    # its own, so the heuristics keep pricing by the surrogate
    measured: ModelGraph | None = graph.with_trust_region(graph.trust_region) if cfg.measure_rounds and \
        getattr(graph, "probe_ratios", None) is not None else None
    runs: list[tuple[str, str, int, str, ModelGraph]] = [
        (label, method, seed, cfg.curvature, measured if method == "optimal" and measured is not None else graph)
        for label, method, seed in method_runs(cfg)]
    runs += [(f"optimal-{est}", "optimal", cfg.seed, est, g) for est, g in (extra or {}).items()]
    baselines = cfg.baselines if all((extra or {}).get("layerwise", graph).is_linear) else ()  # low rank: linears
    total = len(cfg.budgets) * (len(runs) + len(baselines))
    with tqdm(total=total, desc=f"compression {case.name}", disable=not cfg.progress) as pb:
        for frac in cfg.budgets:
            for label, method, seed, est, g in runs:
                pb.set_postfix_str(f"{frac:.0%} {label}")
                allowed = allowed_groups(g, method, cfg.group_size, seed)
                opts = {} if allowed is None else {"groups": sorted(allowed)}
                kw: dict[str, Any] = dict(backend="highs", time_limit=cfg.solve_limit, seed=cfg.seed,
                                          formulation="setpart", **opts)
                sol: Solution
                if g is measured and measured is not None:
                    from ..torch.measure import solve_measured

                    if measured.probe_set is None:  # a probed graph keeps the batches its probes ran on
                        raise ValueError(f"{case.name}: the probed graph has no probe batches to measure on")
                    sol = solve_measured(measured, case.model, measured.probe_set, frac * measured.dense_size,
                                         rounds=cfg.measure_rounds, **kw)
                    m = sol.facts["measured"]
                    res.note("info", f"{case.name} {label} at {frac:.0%}: {m['rounds']} solve(s), "
                             f"{len(m['classes'])} class(es) measured in {m['seconds']:.1f} s; {m['stopped']}")
                else:
                    sol = solve(g, frac * g.dense_size, **kw)
                pb.update()
                if sol.colors is None:
                    res.note("solve", f"{case.name} {label} at {frac:.0%}: {sol.status.value} (no coloring fits)")
                    continue
                objective, memory = sol.objective, sol.memory
                assert objective is not None and memory is not None, "a Solution with colors has both"
                if sol.status != "optimal":
                    res.note("solve", f"{case.name} {label} at {frac:.0%}: {sol.status.value}, gap {_gap(sol.gap)}"
                             + (f" ({sol.facts['restricted']})" if sol.facts.get("restricted") else ""))
                shared = apply_coloring(case.model, g, sol)
                stored = stored_parameters(shared)
                if stored != base_params - g.dense_size + memory:
                    raise AssertionError(f"{case.name} {label}: the model stores {stored} parameters, the solution "
                                         f"says {base_params - g.dense_size + memory}")
                add(label, frac, memory, objective, case.metrics(shared))
                colorings.append(Coloring(coloring_label(label, frac), case.name,
                                          [(c.members, c.action, c.memory) for c in sol.classes], objective,
                                          case.loss(shared) - base_loss, est))
        baseline_graph = (extra or {}).get("layerwise", graph)
        for frac in cfg.budgets:
            for method in baselines:
                pb.set_postfix_str(f"{frac:.0%} {method}")
                sol = baseline(baseline_graph, method, frac)
                memory = sol.memory
                assert memory is not None, "a baseline's Solution has its memory"
                shared = apply_coloring(case.model, baseline_graph, sol)
                stored = stored_parameters(shared)
                if stored != base_params - baseline_graph.dense_size + memory:
                    raise AssertionError(f"{case.name} {method}: stored parameters differ from the plan")
                # surrogate in the units of the run's graph, so that every row of a model compares
                on_run = math.fsum(basis_cost(c) for c in sol.classes if c.action == "basis")
                add(method, frac, memory, on_run, case.metrics(shared))
                colorings.append(Coloring(coloring_label(method, frac), case.name,
                                          [(c.members, c.action, c.memory) for c in sol.classes], on_run,
                                          case.loss(shared) - base_loss,
                                          "layerwise" if "layerwise" in (extra or {}) else cfg.curvature,
                                          baseline=True))
                pb.update()
    return rows, colorings
