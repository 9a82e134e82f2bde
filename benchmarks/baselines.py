"""A model's real metric at equal stored parameters: colorshare's default against the papers' baselines.

    python -m benchmarks.baselines [--model smollm2-135m] [--keeps 0.8 0.7 0.6 0.5] [--time-limit 120]
                                   [--device cpu] [--out DIR]

One run, the same calibration and evaluation data for every method (SmolLM2: 32 x 256 tokens of the even
pydoc topics, perplexity on 24 x 256 of the odd ones; MiniLM: cosine of sentence embeddings to the dense
model's on 512 held-out sentences):
- ``optimal``: colorshare's default pipeline (``build_graph(model, batches)``: kfac curvature, trust region,
  fine rank menu; ``solve(..., backend="highs")`` with generated columns: groups of any size and ranks);
- ``optimal-per-layer``: the same graph, singletons only (``max_group_size=1``): per-layer ranks chosen exactly;
- ``svd-uniform`` and ``basis-sharing``: the baselines of :mod:`colorshare.torch.baselines`, on a
  ``layerwise`` graph (exactly their papers' whitened construction).
Prints one table (perplexity, stored fraction, solver status) and the time and peak memory of each step;
writes ``<model>.csv`` and ``<model>.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from colorshare.timing import peak_rss_gib


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--keeps", type=float, nargs="*", default=[0.8, 0.7, 0.6, 0.5])
    p.add_argument("--time-limit", type=float, default=120.0, help="seconds per solve")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--methods", nargs="*", default=["optimal", "optimal-per-layer", "svd-uniform", "basis-sharing"],
                   choices=["optimal", "optimal-per-layer", "svd-uniform", "basis-sharing"])
    args = p.parse_args(argv)

    from colorshare import solve
    from colorshare.bench.run import write_csv
    from colorshare.torch import apply_coloring, build_graph, stored_parameters
    from colorshare.torch.baselines import baseline
    from colorshare.torch.models import MODEL_CASES

    steps: list[tuple[str, float, float]] = []

    def step(name: str, t0: float) -> None:
        steps.append((name, time.perf_counter() - t0, peak_rss_gib()))
        print(f"[{args.model}] {name}: {steps[-1][1]:.1f} s, peak {steps[-1][2]:.2f} GiB", flush=True)

    t = time.perf_counter()
    case = MODEL_CASES[args.model](device=args.device)
    metric = next(iter(case.higher))
    step("load", t)
    t = time.perf_counter()
    dense = case.metrics(case.model)[metric]
    step("evaluate dense", t)
    t = time.perf_counter()
    g = build_graph(case.model, case.batches, case.targets)
    step("statistics (kfac)", t)
    lw = None
    if any(m in args.methods for m in ("svd-uniform", "basis-sharing")):
        t = time.perf_counter()
        lw = build_graph(case.model, case.batches, case.targets, curvature="layerwise", trust_region=None)
        step("statistics (layerwise, baselines)", t)
    base = stored_parameters(case.model)
    rows: list[dict[str, Any]] = [{"method": "dense", "keep": 1.0, "stored_fraction": 1.0, metric: dense,
                                   "status": "-", "seconds": 0.0}]
    for keep in args.keeps:
        for method in args.methods:
            t = time.perf_counter()
            if method.startswith("optimal"):
                opts: dict[str, Any] = {"max_group_size": 1} if method == "optimal-per-layer" else {}
                sol, graph = solve(g, keep * g.dense_size, backend="highs", time_limit=args.time_limit, **opts), g
                status = sol.status.value + (f" gap {sol.gap:.2%}" if sol.gap else "")
            else:
                assert lw is not None  # built above for any baseline method
                sol, graph = baseline(lw, method, keep), lw
                status = "-"
            if sol.colors is None:
                rows.append({"method": method, "keep": keep, "stored_fraction": None, metric: None,
                             "status": sol.status.value, "seconds": time.perf_counter() - t})
                continue
            assert sol.memory is not None
            shared = apply_coloring(case.model, graph, sol)
            assert stored_parameters(shared) == base - graph.dense_size + sol.memory
            ppl = case.metrics(shared)[metric]
            del shared
            rows.append({"method": method, "keep": keep, "stored_fraction": sol.memory / graph.dense_size,
                         metric: ppl, "status": status, "seconds": time.perf_counter() - t})
            step(f"{method} keep {keep:.0%} (solve, apply, evaluate)", t)
            stored = sol.memory / graph.dense_size
            print(f"[{args.model}] {method} keep {keep:.0%}: {metric} {ppl:.4f}, stored {stored:.4f}"
                  f", {status}", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / f"{args.model}.csv", list(rows[0]), rows)
    methods = [m for m in args.methods]
    lines = [f"{args.model}: {metric} ({'higher' if case.higher[metric] else 'lower'} is better); "
             + "; ".join(f"{k} {v}" for k, v in case.info.items()) + f"; dense {dense:.4f}. Keep = stored / dense "
             f"parameters of the {g.n} targeted layers.", "",
             "| keep | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for keep in args.keeps:
        cells = []
        for m in methods:
            r = next(r for r in rows if r["method"] == m and r["keep"] == keep)
            cells.append("-" if r[metric] is None else f"{r[metric]:.4f}")
        lines.append(f"| {keep:.0%} | " + " | ".join(cells) + " |")
    lines += ["", "| step | seconds | peak resident memory GiB |", "|---|---|---|"]
    lines += [f"| {n} | {s:.1f} | {m:.2f} |" for n, s, m in steps]
    lines += ["", "Solver status per run: " + "; ".join(f"{r['method']} {r['keep']:.0%}: {r['status']}"
                                                        for r in rows if r["method"].startswith("optimal"))]
    (out / f"{args.model}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
