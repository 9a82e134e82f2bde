"""Solver benchmark: every backend on planted LLaMA-shaped graphs of 8 to 224 layers, side by side in one run.

    python -m benchmarks.solvers [--time-limit 10] [--budget-fraction 0.5] [--sizes 8 32 64 128 224]

Prints, per graph size and backend: status, objective, gap, wall time, and the time ratio to ``pulp`` (CBC).
Graphs: 7 families (LLaMA-7B roles) x L layers, L = size / 7 (8 layers: 2 families x 4).
"""

from __future__ import annotations

import argparse
import platform

from colorshare import available_backends, solve
from colorshare.instances import LLAMA7B_ROLES, planted_graph


def graph_of(size: int, seed: int):
    roles = dict(list(LLAMA7B_ROLES.items())[: 2 if size < 14 else 7])
    return planted_graph(layers=max(2, size // len(roles)), roles=roles, seed=seed)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--time-limit", type=float, default=10.0)
    p.add_argument("--budget-fraction", type=float, default=0.5)
    p.add_argument("--sizes", type=int, nargs="*", default=[8, 32, 64, 128, 224])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    backends = [b for b, why in available_backends().items() if why is None]
    print(f"# {platform.processor() or platform.machine()}, python {platform.python_version()}; "
          f"time limit {args.time_limit:g} s; budget {args.budget_fraction:.0%} of dense")
    print(f"{'layers':>6} {'backend':<7} {'status':<9} {'objective':>11} {'gap':>9} {'time s':>7} {'x pulp':>7}")
    for size in args.sizes:
        g = graph_of(size, args.seed)
        sols = {b: solve(g, args.budget_fraction * g.dense_size, backend=b, time_limit=args.time_limit,
                         seed=args.seed) for b in backends}
        ref = sols.get("pulp")
        for b, s in sols.items():
            ratio = f"{s.wall_time / ref.wall_time:7.2f}" if ref else "      -"
            gap = "-" if s.gap is None else f"{s.gap:.1e}"
            obj = "-" if s.objective is None else f"{s.objective:.6g}"
            print(f"{g.n:>6} {b:<7} {s.status.value:<9} {obj:>11} {gap:>9} {s.wall_time:>7.2f} {ratio}")


if __name__ == "__main__":
    main()
