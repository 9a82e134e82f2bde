"""Solver comparison: instance families of growing size, every backend under the same time limit, and the
cross-check that fails the run loudly when exact backends contradict each other or a published optimum."""

from __future__ import annotations

import csv
import importlib.util
import itertools
import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import solve
from ..formulations.costs import GroupCosts
from ..formulations.graph import SharingGraph
from ..formulations.setpart import enumerate_groups
from ..instances import LLAMA7B_ROLES, planted_graph, read_dimacs, read_pmedian
from ..solvers.registry import available_backends, get_backend
from ..solvers.solution import Solution
from .config import BenchConfig
from .results import SolverRow

__all__ = ["Instance", "planted_instance", "SOLVER_COLUMNS", "AgreementError", "solver_instances", "run_solvers",
           "check_agreement", "largest_optimal", "model_instances", "performance_profile", "profile_share"]

SOLVER_COLUMNS = ("instance", "n_layers", "backend", "time_limit", "objective", "bound", "gap", "status", "wall_time",
                  "solver_time")

REL_TOL = 1e-5
"""Relative tolerance of the agreement check (each optimal claim is within 1e-6 of its own proof)."""


class AgreementError(RuntimeError):
    """Exact backends contradict each other or a published optimum: some backend's answer is wrong."""


@dataclass
class Instance:
    """One solver benchmark instance. ``known``: a published/constructed optimum (objective, or "infeasible")."""

    name: str
    family: str
    graph: SharingGraph
    budget: float
    known: float | str | None = None


def planted_instance(size: int, seed: int) -> Instance:
    """The planted medoid graph of about ``size`` layers (LLaMA-7B roles; 2 families below 14 layers), budget 50 %."""
    roles = dict(list(LLAMA7B_ROLES.items())[: 2 if size < 14 else 7])
    g = planted_graph(layers=max(2, size // len(roles)), roles=roles, seed=seed)
    name = "llama7b-224" if g.n == 224 else f"planted-{g.n}"
    return Instance(name, "planted", g, 0.5 * g.dense_size)


def model_instances(names: Iterable[str], folder: Path | None = None) -> list[Instance]:
    """The committed real-model instances (``folder``/NAME.json.gz, default the package's
    ``colorshare/bench/instances``), one Instance per budget the file lists, named ``NAME@70%``; missing files are
    skipped with a warning."""
    from ..instance_file import read_instance
    from .config import INSTANCE_DIR

    out = []
    for name in names:
        path = Path(folder or INSTANCE_DIR) / f"{name}.json.gz"
        if not path.is_file():
            warnings.warn(f"model instance {path} is missing: left out of the solver section "
                          "(python -m benchmarks.instances writes it)", stacklevel=2)
            continue
        g, extra = read_instance(path)
        for b in extra.get("budgets", []):
            out.append(Instance(f"{name}@{100 * b / g.dense_size:.0f}%", "model", g, float(b)))
    return out


def solver_time(row: SolverRow) -> float:
    """The solver's own seconds in a row (its wall time less the graph's lazy work; rows written before the
    split have their wall time only)."""
    t = row.get("solver_time")
    return float(row["wall_time"]) if t is None or t == "" else float(t)


def performance_profile(rows: list[SolverRow], time_limit: float) -> dict[str, list[float]]:
    """Dolan-More performance ratios of time to proof at ``time_limit``: per backend, for every instance that
    some backend proved (optimal or infeasible), its solver time (:func:`solver_time`: a fresh graph's one-time
    work is not the solver's) over the fastest proof (inf where it proved nothing). ``fraction of ratios <= tau``
    is the backend's profile at tau."""
    main = [r for r in rows if math.isclose(float(r["time_limit"]), time_limit)]
    backends = list(dict.fromkeys(r["backend"] for r in main))
    out: dict[str, list[float]] = {b: [] for b in backends}
    for inst in dict.fromkeys(r["instance"] for r in main):
        rs = {r["backend"]: r for r in main if r["instance"] == inst}
        t = {b: solver_time(r) if r["status"] in ("optimal", "infeasible") else math.inf for b, r in rs.items()}
        best = min(t.values(), default=math.inf)
        if not math.isfinite(best):
            continue
        for b in backends:
            out[b].append(t.get(b, math.inf) / max(best, 1e-9))
    return out


def profile_share(ratios: list[float], tau: float) -> float:
    """A backend's performance profile at ``tau``: the share of its ratios <= tau, where a ratio of inf (it proved
    nothing) never counts, not even at tau = inf ("proven at all")."""
    return sum(1 for x in ratios if math.isfinite(x) and x <= tau) / max(1, len(ratios))


def _coloring(name: str, n: int, edges: Iterable[tuple[int, int]], chi: int, family: str) -> Iterator[Instance]:
    """A graph-coloring instance as a sharing graph: zero costs, conflicts = edges, budget = number of colors."""
    g = SharingGraph.from_matrix(np.zeros((n, n)), conflicts=list(edges))
    yield Instance(f"{name}@{chi}", family, g, chi, 0.0)
    yield Instance(f"{name}@{chi - 1}", family, g, chi - 1, "infeasible")


def solver_instances(cfg: BenchConfig, model_graphs: dict[str, SharingGraph] | None = None) -> list[Instance]:
    """Every instance of the run: planted medoid graphs, set partitioning with ranks (needs torch), the real
    models' graphs, coloring instances with known chromatic numbers, and (with ``cfg.data``) DIMACS and
    OR-Library p-median instances with published optima."""
    import networkx as nx

    out = [planted_instance(s, cfg.seed) for s in cfg.planted_sizes]
    if cfg.ranked_layers and importlib.util.find_spec("torch") is None:
        warnings.warn("torch is not installed: the set-partitioning instances with ranks are left out", stacklevel=2)
    elif cfg.ranked_layers:
        from ..torch import build_graph
        from ..torch.models import fine_ranks, planted_stack

        for layers in cfg.ranked_layers:
            model, batches = planted_stack(families=cfg.ranked_families, layers=layers, seed=cfg.seed,
                                           device=cfg.device)
            ranked = build_graph(model, batches, ranks=fine_ranks, progress=False)
            out.append(Instance(f"ranked-{ranked.n}", "ranked", ranked, 0.5 * ranked.dense_size))
    for name, g in (model_graphs or {}).items():
        out.append(Instance(name, "model", g, cfg.model_budget * g.dense_size))
    out += model_instances(cfg.model_instances)
    for chi in cfg.mycielski:
        m = nx.mycielski_graph(chi)
        out.extend(_coloring(f"mycielski{chi}", m.number_of_nodes(), m.edges(), chi, "coloring"))
    if cfg.data is not None:
        data = Path(cfg.data)
        with open(data / "dimacs" / "chromatic.csv") as fh:
            chis = {r["name"]: int(r["chi"]) for r in csv.DictReader(fh)}
        for name in cfg.dimacs:
            n, edges = read_dimacs(data / "dimacs" / f"{name}.col")
            out.extend(_coloring(name, n, edges, chis[name], "dimacs"))
        with open(data / "pmed" / "optima.csv") as fh:
            optima = {r["name"]: float(r["optimum"]) for r in csv.DictReader(fh)}
        for name in cfg.pmed:
            dist, p = read_pmedian(data / "pmed" / f"{name}.txt")
            out.append(Instance(name, "pmedian", SharingGraph.from_matrix(dist), p, optima[name]))
    return out


def _warm(graph: SharingGraph) -> None:
    """Evaluate a group oracle on every group of the graph's space once (and its pair statistics), so that no
    backend's time includes the model's linear algebra; above the enumeration limit, singletons and pairs."""
    from ..solvers.colgen import estimated_groups
    from ..solvers.strategies import MAX_ENUMERATED_GROUPS

    cost_model = graph.cost_model
    if graph.kind != "group" or not isinstance(cost_model, GroupCosts) or cost_model.table is not None:
        return
    cap = graph.max_group_size
    if estimated_groups(graph, cap) > MAX_ENUMERATED_GROUPS:
        cap = 1
        pairs = [p for m in graph.family_members.values() for p in itertools.combinations(m, 2)]
        cost_model.refine(pairs)
    for group in enumerate_groups(graph, cap):
        graph.options(group)


def _row(inst: Instance, backend: str, limit: float, sol: Solution) -> SolverRow:
    return SolverRow(instance=inst.name, n_layers=inst.graph.n, backend=backend, time_limit=limit,
                     objective=sol.objective, bound=sol.bound, gap=sol.gap, status=sol.status.value,
                     wall_time=round(sol.wall_time, 4),
                     solver_time=round(float(sol.facts.get("solver_seconds", sol.wall_time)), 4))


def run_solvers(cfg: BenchConfig, instances: list[Instance],
                solve_fn: Callable[..., Solution] | None = None) -> list[SolverRow]:
    """Every backend on every instance under ``cfg.time_limit``, then the time-limit sweep on
    ``cfg.sweep_instances``. Rows in :data:`SOLVER_COLUMNS`. Does not check agreement (see
    :func:`check_agreement`). ``solve_fn`` replaces :func:`colorshare.solve` (tests use it to inject a
    wrong answer)."""
    solve_fn = solve_fn or solve
    backends = list(cfg.backends) if cfg.backends else [b for b, why in available_backends().items() if why is None]
    by_name = {i.name: i for i in instances}
    jobs = [(inst, cfg.time_limit) for inst in instances]
    jobs += [(by_name[n], t) for n in cfg.sweep_instances if n in by_name for t in cfg.sweep_limits
             if t != cfg.time_limit]
    rows: list[SolverRow] = []
    warmed: set[int] = set()
    with tqdm(total=len(jobs) * len(backends), desc="solvers", disable=not cfg.progress) as pb:
        for inst, limit in jobs:
            if id(inst.graph) not in warmed:
                _warm(inst.graph)
                warmed.add(id(inst.graph))
            for b in backends:
                pb.set_postfix_str(f"{inst.name} {b} {limit:g}s")
                sol = solve_fn(inst.graph, inst.budget, backend=b, time_limit=limit, seed=cfg.seed)
                rows.append(_row(inst, b, limit, sol))
                pb.update()
    return rows


def _exact(backend: str) -> bool:
    try:
        return get_backend(backend).exact
    except ValueError:
        return False


def check_agreement(rows: list[SolverRow], known: dict[str, float | str | None] | None = None) -> list[str]:
    """Cross-check the exact backends on each instance; returns the lines of evidence that they agree.

    Fails (raises :class:`AgreementError` listing every contradiction) when, on one instance: two optimal
    claims differ by more than :data:`REL_TOL`; a proven bound exceeds a coloring some backend found; one
    backend proves infeasibility while another found a coloring; or an optimal claim, a coloring or an
    infeasibility proof contradicts the published optimum in ``known``.

    Example
    -------
    >>> rows = [dict(instance="a", n_layers=2, backend=b, time_limit=1.0, objective=v, bound=v, gap=0.0,
    ...              status="optimal", wall_time=0.1) for b, v in (("highs", 1.0), ("cpsat", 2.0))]
    >>> check_agreement(rows)
    Traceback (most recent call last):
    ...
    colorshare.bench.solvers.AgreementError: exact backends disagree:
      a: highs (limit 1s) proves 1.0 optimal, cpsat (limit 1s) proves 2.0
      a: cpsat (limit 1s) claims bound 2.0, but highs found a coloring of cost 1.0
    """
    known = known or {}
    problems, evidence = [], []

    def tol(*v: float) -> float:
        return REL_TOL * max(1.0, *(abs(x) for x in v))

    for name in dict.fromkeys(r["instance"] for r in rows):
        rs = [r for r in rows if r["instance"] == name]
        exact = [r for r in rs if _exact(r["backend"])]
        # (row, objective): an optimal claim or a coloring comes with its objective
        opt = [(r, r["objective"]) for r in exact if r["status"] == "optimal" and r["objective"] is not None]
        found = [(r, r["objective"]) for r in rs if r["objective"] is not None]
        infeasible = [r for r in exact if r["status"] == "infeasible"]
        problems += [f"{name}: {r['backend']} (limit {r['time_limit']:g}s) claims optimality but reports no "
                     "objective" for r in exact if r["status"] == "optimal" and r["objective"] is None]
        for (a, va), (b, vb) in itertools.combinations(opt, 2):
            if abs(va - vb) > tol(va, vb):
                problems.append(f"{name}: {a['backend']} (limit {a['time_limit']:g}s) proves {va!r} "
                                f"optimal, {b['backend']} (limit {b['time_limit']:g}s) proves {vb!r}")
        for a in exact:
            bound = a["bound"]
            if bound is None:
                continue
            for b, vb in found:
                if bound > vb + tol(bound, vb):
                    problems.append(f"{name}: {a['backend']} (limit {a['time_limit']:g}s) claims bound "
                                    f"{bound!r}, but {b['backend']} found a coloring of cost {vb!r}")
        if infeasible and found:
            problems.append(f"{name}: {infeasible[0]['backend']} proves the budget infeasible, but "
                            f"{found[0][0]['backend']} found a coloring")
        k = known.get(name)
        if k == "infeasible" and found:
            problems.append(f"{name}: published infeasible, but {found[0][0]['backend']} found a coloring")
        elif isinstance(k, float):
            for r, v in opt:
                if abs(v - k) > tol(k):
                    problems.append(f"{name}: {r['backend']} proves {v!r} optimal; published optimum {k!r}")
            for r, v in found:
                if v < k - tol(k):
                    problems.append(f"{name}: {r['backend']} found {v!r}, below the published optimum {k!r}")
            for r in infeasible:
                problems.append(f"{name}: {r['backend']} proves infeasible; published optimum {k!r}")
        if opt:
            evidence.append(f"{name}: {len({r['backend'] for r, _ in opt})} exact backend(s) prove "
                            f"{opt[0][1]:.6g} optimal" + (" = published" if isinstance(k, float) else ""))
        elif infeasible:
            evidence.append(f"{name}: infeasible, proven by {', '.join(sorted({r['backend'] for r in infeasible}))}")
    if problems:
        raise AgreementError("exact backends disagree:\n  " + "\n  ".join(problems))
    return evidence


def largest_optimal(rows: list[SolverRow], time_limit: float) -> dict[str, tuple[int, str] | None]:
    """Per backend, the largest instance (layers, name) it proved optimal within ``time_limit``."""
    out: dict[str, tuple[int, str] | None] = {}
    for r in rows:
        out.setdefault(r["backend"], None)
        if r["status"] == "optimal" and math.isclose(float(r["time_limit"]), time_limit):
            cur = out[r["backend"]]
            if cur is None or int(r["n_layers"]) > cur[0]:
                out[r["backend"]] = (int(r["n_layers"]), r["instance"])
    return out
