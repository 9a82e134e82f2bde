"""Surrogate fidelity on a causal LM, at equal stored parameters: does each curvature estimator rank colorings
of the same memory as their perplexity does?

    python -m benchmarks.fidelity_lm [--model smollm2-135m] [--keeps 0.7 0.5] [--perturbed 8]
                                     [--estimators kfac layerwise trace] [--time-limit 60] [--out DIR]

At each keep (stored / dense parameters of the targeted layers) the colorings are: the per-layer optimum of
the default (kfac) surrogate and of the layerwise one (``max_group_size=1``), the ``svd-uniform`` and
``basis-sharing`` baselines, and ``--perturbed`` copies of the kfac optimum in which random pairs of
same-shaped layers trade one rank step (one loses what the other gains, so the memory stays within 0.5 %).
Each coloring is applied with the graph that chose it (baselines: the layerwise graph, as in their papers) and
its held-out perplexity measured; each estimator's graph (built
without a trust region) predicts its loss increase, each class at its own rank. Spearman's rho
between predicted and measured (log-perplexity increase) is taken per keep, then averaged, as the suite's
"rho at equal budget". Writes ``fidelity-<model>.csv`` and ``.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import time
from pathlib import Path
from typing import Any


def perturbed(graph: Any, classes: list[Any], moves: int, rng: random.Random) -> list[tuple[tuple[int, ...], str, int]]:
    """``classes`` with ``moves`` rank trades between random pairs of same-family singleton classes."""
    spec = {c.members: (c.action, c.memory) for c in classes}
    singles = [m for m in spec if len(m) == 1]
    by_family: dict[str, list[tuple[int, ...]]] = {}
    for m in singles:
        by_family.setdefault(graph.families[m[0]], []).append(m)
    families = [f for f, v in by_family.items() if len(v) >= 2]
    done = 0
    for _ in range(50 * moves):
        if done >= moves or not families:
            break
        a, b = rng.sample(by_family[rng.choice(families)], 2)
        steps = []
        for m, way in ((a, -1), (b, +1)):
            mems = sorted({o.memory for o in graph.options(m)})
            k = mems.index(spec[m][1]) + way
            if not 0 <= k < len(mems):
                break
            steps.append(mems[k])
        if len(steps) < 2:
            continue
        da, db = steps[0] - spec[a][1], steps[1] - spec[b][1]
        if abs(da + db) > 0.005 * max(abs(da), 1):
            continue
        for m, mem in ((a, steps[0]), (b, steps[1])):
            opt = min((o for o in graph.options(m) if o.memory == mem), key=lambda o: o.cost)
            spec[m] = (opt.action, mem)
        done += 1
    return [(m, act, mem) for m, (act, mem) in spec.items()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--keeps", type=float, nargs="*", default=[0.7, 0.5])
    p.add_argument("--perturbed", type=int, default=8)
    p.add_argument("--estimators", nargs="*", default=["kfac", "layerwise", "trace"])
    p.add_argument("--time-limit", type=float, default=60.0, help="seconds per solve")
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)

    from colorshare import evaluate, solve
    from colorshare.bench.fidelity import spearman
    from colorshare.bench.run import write_csv
    from colorshare.torch import apply_coloring, build_graph
    from colorshare.torch.actions.basis import basis_option
    from colorshare.torch.baselines import baseline
    from colorshare.torch.models import MODEL_CASES

    t0 = time.perf_counter()
    rng = random.Random(args.seed)
    case = MODEL_CASES[args.model](device=args.device)
    metric = next(iter(case.higher))
    dense = case.metrics(case.model)[metric]
    print(f"[{args.model}] dense {metric} {dense:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)
    default = build_graph(case.model, case.batches, case.targets)  # the default pipeline, trust region on
    graphs = {}
    for est in args.estimators:
        t = time.perf_counter()
        graphs[est] = build_graph(case.model, case.batches, case.targets, curvature=est, trust_region=None,
                                  seed=args.seed, progress=False)
        print(f"[{args.model}] {est} graph: {time.perf_counter() - t:.0f} s", flush=True)
    layerwise = graphs.get("layerwise") or build_graph(case.model, case.batches, case.targets,
                                                       curvature="layerwise", trust_region=None, progress=False)
    free = graphs[args.estimators[0]]
    colorings: list[tuple[str, float, Any, Any]] = []  # (name, keep, Solution, the graph that applies it)
    for keep in args.keeps:
        opt = solve(default, keep * default.dense_size, backend="highs", time_limit=args.time_limit, max_group_size=1)
        lw = solve(layerwise, keep * layerwise.dense_size, backend="highs", time_limit=args.time_limit,
                   max_group_size=1)
        colorings.append(("optimal-per-layer", keep, opt, default))
        colorings.append(("optimal-layerwise-per-layer", keep, lw, layerwise))
        for b in ("svd-uniform", "basis-sharing"):
            colorings.append((b, keep, baseline(layerwise, b, keep), layerwise))
        for k in range(args.perturbed):
            classes = perturbed(free, opt.classes, rng.randint(5, 40), rng)
            colorings.append((f"perturbed-{k}", keep, evaluate(free, classes), free))

    def predict(g: Any, sol: Any) -> float | None:
        """The estimator's surrogate of the coloring, each class at its own rank (any rank, no trust region)."""
        total = 0.0
        for c in sol.classes:
            if c.action == "dense":
                continue
            if c.action != "basis":
                return None
            o = basis_option(g, c.members, int(c.params["rank"]), trust=False)
            if o is None:
                return None
            total += o.cost
        return total

    rows = []
    for name, keep, sol, applier in colorings:
        t = time.perf_counter()
        try:
            shared = apply_coloring(case.model, applier, sol)
            value = case.metrics(shared)[metric]
            del shared
        except Exception as exc:  # noqa: BLE001 - one coloring that cannot be applied must not lose the run
            print(f"[{args.model}] {name} keep {keep:.0%}: skipped ({exc})", flush=True)
            continue
        row: dict[str, Any] = {"coloring": name, "keep": keep, "stored_fraction": sol.memory / applier.dense_size,
                               metric: value, "measured": math.log(value / dense)}  # held-out NLL increase
        for est, g in graphs.items():
            row[f"predicted_{est}"] = predict(g, sol)
        rows.append(row)
        print(f"[{args.model}] {name} keep {keep:.0%}: {metric} {value:.3f} stored {row['stored_fraction']:.4f} "
              f"({time.perf_counter() - t:.0f} s) " + " ".join(f"{e} {row[f'predicted_{e}']}" for e in graphs),
              flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / f"fidelity-{args.model}.csv", list(rows[0]), rows)
    lines = [f"{args.model}: surrogate fidelity at equal stored parameters; dense {metric} {dense:.4f}; "
             + "; ".join(f"{k} {v}" for k, v in case.info.items()) + f"; {len(rows)} colorings; "
             f"total {time.perf_counter() - t0:.0f} s.", "",
             "| estimator | " + " | ".join(f"rho at keep {k:.0%}" for k in args.keeps)
             + " | mean rho at equal budget |",
             "|---|" + "---|" * (len(args.keeps) + 1)]
    for est in graphs:
        rhos = []
        for keep in args.keeps:
            pts = [(r[f"predicted_{est}"], r["measured"]) for r in rows if r["keep"] == keep
                   and r[f"predicted_{est}"] is not None]
            rhos.append(spearman([a for a, _ in pts], [b for _, b in pts]) if len(pts) >= 4 else float("nan"))
        ok = [x for x in rhos if not math.isnan(x)]
        lines.append(f"| {est} | " + " | ".join(f"{x:.3f}" for x in rhos)
                     + f" | {statistics.fmean(ok) if ok else float('nan'):.3f} |")
    lines += ["", "| coloring | keep | stored | " + metric + " | "
              + " | ".join(f"predicted {e}" for e in graphs) + " |",
              "|---|---|---|---|" + "---|" * len(graphs)]
    for r in rows:
        lines.append(f"| {r['coloring']} | {r['keep']:.0%} | {r['stored_fraction']:.4f} | {r[metric]:.3f} | "
                     + " | ".join("-" if r[f"predicted_{e}"] is None else f"{r[f'predicted_{e}']:.4g}" for e in graphs)
                     + " |")
    (out / f"fidelity-{args.model}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
