"""The first solve on a fresh model graph, per exact backend: is it proven, and whose time is it?

    python -m benchmarks.fresh_graph [--model smollm2-135m] [--curvature kfac] [--keep 0.5] [--time-limit 300]

For each exact backend a fresh graph is built as the README's Python example builds it
(``build_graph(model, batches, targets, curvature)``: the defaults, classes within blocks), then solved once at
``--keep`` of the targeted layers' parameters under ``--time-limit``. A last row builds the graph with
``cross_layer=True`` (``build_graph`` then computes the pair statistics as a step of its own) and solves it with
HiGHS. Each row: the graph's preparation steps (seconds), the solve's status and gap, and its wall time split
into the graph's lazy work (``facts["graph_seconds"]``) and the solver's own (``facts["solver_seconds"]``).
Writes ``fresh-graph.md`` and ``.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any


def one(case: Any, backend: str, curvature: str, keep: float, limit: float, cross_layer: bool) -> dict[str, Any]:
    """Build a fresh graph of ``case`` and solve it once with ``backend``."""
    from colorshare import solve
    from colorshare.torch import build_graph
    from colorshare.torch.memory import release

    release()
    t = time.perf_counter()
    g = build_graph(case.model, case.batches, case.targets, curvature, cross_layer=cross_layer, progress=False)
    built = time.perf_counter() - t
    sol = solve(g, keep * g.dense_size, backend=backend, time_limit=limit)
    row = {"backend": backend, "cross_layer": cross_layer, "layers": g.n, "build_seconds": built,
           "preparation": dict(g.preparation), "status": sol.status.value, "objective": sol.objective,
           "bound": sol.bound, "gap": sol.gap, "wall_seconds": sol.wall_time,
           "graph_seconds": sol.facts["graph_seconds"], "solver_seconds": sol.facts["solver_seconds"],
           "strategy": sol.facts.get("strategy"), "restricted": sol.facts.get("restricted")}
    print(json.dumps({k: v for k, v in row.items() if k != "preparation"}, default=str), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--curvature", default="kfac")
    p.add_argument("--keep", type=float, default=0.5)
    p.add_argument("--time-limit", type=float, default=300.0)
    p.add_argument("--backends", nargs="*", default=["highs", "cpsat", "pulp"])
    p.add_argument("--no-cross-layer", action="store_true", help="skip the cross-layer row")
    p.add_argument("--out", default="benchmarks/results/fresh-graph")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    from colorshare.bench.report import machine_info, machine_line
    from colorshare.torch.models import MODEL_CASES

    case = MODEL_CASES[args.model]()
    rows = [one(case, b, args.curvature, args.keep, args.time_limit, False) for b in args.backends]
    if not args.no_cross_layer:
        rows.append(one(case, "highs", args.curvature, args.keep, args.time_limit, True))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    (out / "fresh-graph.json").write_text(json.dumps({"machine": machine, "args": vars(args), "rows": rows},
                                                     indent=2, default=str))
    lines = [f"# First solve on a fresh graph: {args.model}, {args.curvature}, keep {args.keep:.0%}, "
             f"time limit {args.time_limit:g} s", "",
             f"Machine: {machine_line(machine)}. One run, each row a graph built anew.", "",
             "| backend | cross-layer | graph steps (s) | status | gap | solve s | of it graph s | solver s |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        steps = ", ".join(f"{k} {v:.0f}" for k, v in r["preparation"].items())
        gap = "-" if r["gap"] is None else f"{r['gap']:.2e}"
        lines.append(f"| {r['backend']} | {'yes' if r['cross_layer'] else 'no'} | {steps} | {r['status']} | {gap} | "
                     f"{r['wall_seconds']:.1f} | {r['graph_seconds']:.1f} | {r['solver_seconds']:.1f} |")
    (out / "fresh-graph.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
