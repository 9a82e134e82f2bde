"""Surrogate fidelity: for many colorings, each curvature estimator's predicted loss increase against the
measured one (the calibration loss of the compressed model minus the original's), and Spearman's rho."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from .. import evaluate
from .compression import Coloring
from .config import BenchConfig
from .results import FidelityRow, fidelity_row

if TYPE_CHECKING:  # colorshare.bench imports torch only where a model section runs
    from ..formulations.graph import SharingGraph
    from ..solvers.solution import Solution
    from ..torch.model_graph import ModelGraph
    from ..torch.models import ModelCase

__all__ = ["FIDELITY_COLUMNS", "price", "random_colorings", "run_fidelity", "spearman"]

FIDELITY_COLUMNS = ("model", "curvature", "coloring", "predicted", "measured")


def _objective(sol: Solution) -> float:
    """The objective of :func:`~colorshare.evaluate`'s Solution (it scores every coloring it accepts)."""
    assert sol.objective is not None, "evaluate() returns the objective of the coloring it scored"
    return sol.objective


def random_colorings(graph: SharingGraph, count: int, seed: int, model: str) -> list[Coloring]:
    """``count`` random colorings: each family split into random groups of 1..4 layers, each group given a
    random one of its actions (tie, a basis rank, dense for a singleton), so memory spans a wide range."""
    rng = random.Random(seed)
    out: list[Coloring] = []
    for k in range(count):
        classes: list[tuple[tuple[int, ...], str, int]] = []
        for members in graph.family_members.values():
            rest = list(members)
            rng.shuffle(rest)
            while rest:
                size = min(len(rest), rng.randint(1, 4))
                group, rest = tuple(sorted(rest[:size])), rest[size:]
                opt = rng.choice(graph.options(group))
                classes.append((group, opt.action, opt.memory))
        out.append(Coloring(f"random-partition-{k}", model, classes, _objective(evaluate(graph, classes))))
    return out


def price(graph: SharingGraph, classes: list[tuple[tuple[int, ...], str, int]]) -> float | None:
    """The surrogate of ``graph`` for a coloring given as (members, action, memory) classes, each class at its own
    size and outside the trust region too (a model graph's ``class_option``: the baselines' off-menu ranks, a
    group another estimator's graph admitted); other graphs price by ``resolve``. None if some class has no
    such option on this graph. Units: the graph's cost units."""
    total = 0.0
    exact = getattr(graph, "class_option", None)
    for members, action, memory in classes:
        opt = exact(members, action, memory, trust=False) if exact else graph.resolve(members, action, memory)
        if opt is None or opt.memory != memory:
            return None
        total += opt.cost
    return total


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation (scipy), NaN when either side is constant."""
    from scipy.stats import spearmanr

    if len(set(x)) < 2 or len(set(y)) < 2:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def run_fidelity(cfg: BenchConfig, case: ModelCase, colorings: list[Coloring], estimators: list[str],
                 graph_for: Callable[[str], ModelGraph]) -> list[FidelityRow]:
    """Take the model's graph under each of ``estimators`` (``graph_for(name)``), carry every coloring over to
    it (its own tie centers and costs), apply it and measure the loss increase. Rows in
    :data:`FIDELITY_COLUMNS`."""
    from ..torch import apply_coloring

    rows: list[FidelityRow] = []
    base = case.loss(case.model)
    with tqdm(total=len(estimators) * len(colorings), desc=f"fidelity {case.name}",
              disable=not cfg.progress) as pb:
        for est in estimators:
            pb.set_postfix_str(f"{est}: curvature")
            g = graph_for(est)
            pb.set_postfix_str(est)
            for c in colorings:
                sol = evaluate(g, c.classes)
                measured = case.loss(apply_coloring(case.model, g, sol)) - base
                rows.append(fidelity_row(case.name, est, c.name, _objective(sol), measured))
                pb.update()
    return rows
