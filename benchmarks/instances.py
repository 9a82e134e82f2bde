"""Real models' graphs as solver instances that need no torch: ``colorshare/bench/instances/NAME.json.gz``
(package data).

    python -m benchmarks.instances [--models smollm2-135m minilm-l6] [--budgets 0.7 0.5] [--time-limit 300]

For each model and surrogate (SmolLM2: the default ``probed`` and ``kfac``; MiniLM: ``probed``) the graph is
built as ``colorshare compress`` builds it, solved by HiGHS at every budget (which evaluates the columns that
pricing asks for and every pair's statistics), and written with :func:`colorshare.instance_file.save_instance`: every
evaluated column with its exact cost and memory, each family's bounds (which price every group the file does
not list) and the budgets. The suite's solver section runs every backend on them
(:func:`colorshare.bench.solvers.model_instances`); ``colorshare solve FILE --budget 50% --write-mps F.mps``
gives the same program to other solvers.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from colorshare import solve
from colorshare.bench.config import INSTANCE_DIR
from colorshare.instance_file import save_instance

SURROGATES = {"smollm2-135m": ("probed", "kfac"), "minilm-l6": ("probed",)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="*", default=list(SURROGATES))
    p.add_argument("--budgets", nargs="*", type=float, default=[0.7, 0.5], help="fractions of the dense size")
    p.add_argument("--time-limit", type=float, default=300.0, help="seconds per solve (compress's default)")
    p.add_argument("--out", type=Path, default=INSTANCE_DIR)
    args = p.parse_args()
    from colorshare.torch import build_graph
    from colorshare.torch.models import MODEL_CASES

    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.models:
        case = MODEL_CASES[name]()
        for curvature in SURROGATES[name]:
            t = time.perf_counter()
            g = build_graph(case.model, case.batches, case.targets, curvature,
                            loss_fn=None if curvature in ("kfac", "probed") else case.loss_fn, ranks=case.ranks)
            print(f"{name} {curvature}: graph {time.perf_counter() - t:.0f} s", flush=True)
            budgets = [int(f * g.dense_size) for f in args.budgets]
            for f, b in zip(args.budgets, budgets):
                s = solve(g, b, backend="highs", time_limit=args.time_limit)
                print(f"  keep {f:.0%}: {s.status.value} objective {s.objective:.6g} bound {s.bound} gap {s.gap} "
                      f"({s.wall_time:.0f} s)", flush=True)
            path = args.out / f"{name}-{curvature}.json.gz"
            save_instance(g, path, budgets=budgets,
                          about=f"{name}, {curvature} surrogate, as colorshare compress builds it; columns "
                                "evaluated by HiGHS solves at the budgets listed; bounds price every other group")
            print(f"  wrote {path} ({path.stat().st_size / 1e6:.2f} MB)", flush=True)


if __name__ == "__main__":
    main()
