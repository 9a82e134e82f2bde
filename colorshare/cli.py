"""The ``colorshare`` command: ``demo`` (the default job), ``solve`` (an instance file), ``bench`` (the suite),
``compress`` (a model)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence

from .compress import DEFAULT_HEAL_STEPS, DTYPE_CHOICES, CompressOptions
from .formulations.budget import parse_budget
from .solvers import Solution, available_backends, solve

__all__ = ["main", "comparison_table", "parse_budget"]


def _fmt(v: float | None, spec: str = ".6g") -> str:
    return "-" if v is None else format(v, spec)


def comparison_table(solutions: Sequence[Solution]) -> str:
    """A plain-text table: backend, status, objective, bound, gap, memory, time."""
    head = f"{'backend':<8} {'status':<10} {'objective':>12} {'bound':>12} {'gap':>10} {'memory':>14} {'time s':>8}"
    rows = [head, "-" * len(head)]
    for s in solutions:
        rows.append(f"{s.backend:<8} {s.status.value:<10} {_fmt(s.objective):>12} {_fmt(s.bound):>12} "
                    f"{_fmt(s.gap, '.2e'):>10} {_fmt(s.memory, 'd'):>14} {s.wall_time:>8.2f}")
    return "\n".join(rows)


def _demo(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .instances import llama_graph

    g = llama_graph(seed=args.seed)
    budget = args.budget_fraction * g.dense_size
    print(f"LLaMA-7B-shaped graph: {g.n} layers in {len(g.family_members)} families, "
          f"{g.dense_size:,} parameters dense; budget {budget:,.0f} ({args.budget_fraction:.0%}); "
          f"time limit {args.time_limit:g} s per backend")
    avail = available_backends()
    names = [b for b in (args.backends or list(avail)) if avail.get(b) is None]
    for b, why in avail.items():
        if why is not None:
            print(f"skipping {b}: {why}")
    sols = []
    for name in (bar := tqdm(names, desc="solving", unit="backend", file=sys.stderr)):
        bar.set_postfix_str(name)
        sols.append(solve(g, budget, backend=name, time_limit=args.time_limit, seed=args.seed))
    print(comparison_table(sols))
    proven = [s.objective for s in sols if s.status == "optimal" and s.objective is not None]  # optimal: it has one
    if proven:
        best = min(proven)
        agree = all(abs(v - best) <= 1e-6 * max(1.0, best) for v in proven)
        print(f"exact backends that proved optimality agree: {'yes' if agree else 'NO'} (optimum {best:.6g})")
        for s in sols:
            if s.objective is not None and s.status != "optimal":
                print(f"{s.backend}: {100 * (s.objective - best) / max(best, 1e-12):.3f} % above the optimum")
        if not agree:
            return 1
    return 0


def _solve(args: argparse.Namespace) -> int:
    from .instance_file import load_instance

    g = load_instance(args.instance)
    budget = parse_budget(args.budget).for_graph(g)
    if args.write_mps:
        from .formulations.setpart import SetPartition
        from .solvers.highs import write_mps

        form = SetPartition(g, budget)
        write_mps(form.program, args.write_mps)
        print(f"wrote {args.write_mps}: {form.describe()}, every column of the instance at budget {budget:,.0f}; "
              "variable k is column k in the instance's group order (options in order)")
        return 0
    sol = solve(g, budget, backend=args.backend, time_limit=args.time_limit, seed=args.seed)
    if args.json:
        print(json.dumps(sol.to_dict(), indent=2))
    else:
        print(comparison_table([sol]))
        if sol.colors is not None:
            print("colors:", " ".join(map(str, sol.colors)))
    return 0 if sol.status in ("optimal", "feasible") else (2 if sol.status == "infeasible" else 3)


def _compress_arguments(c: argparse.ArgumentParser) -> None:
    """``colorshare compress``'s arguments; their defaults are :class:`~colorshare.compress.CompressOptions`'s."""
    d = CompressOptions()
    c.add_argument("model", help="smollm2-135m, minilm-l6, digits-mlp, or a path")
    c.add_argument("--budget", required=True,
                   help="the targeted layers' memory: 50%% or a number (parameters), 4.5bpw (bits per weight, "
                        "scales included) or 60MB / 60MiB (bytes); a budget in bytes lets layers be quantized")
    c.add_argument("--out", required=True, help="output folder: a model folder that loads by itself "
                   "(colorshare.torch.load_compressed), report.json, report.md")
    c.add_argument("--curvature", default=d.curvature,
                   help="surrogate (default %(default)s); see colorshare.torch.CURVATURES")
    c.add_argument("--backend", default=d.backend)
    c.add_argument("--time-limit", type=float, default=d.time_limit,
                   help="seconds for the whole solve (default %(default)s)")
    c.add_argument("--device", default=d.device,
                   help="cpu, cuda, cuda:1, ..., or auto: accelerate's device_map='auto' (a causal LM's blocks spread "
                        "over every GPU; each layer's statistics on its own device)")
    c.add_argument("--seed", type=int, default=d.seed)
    c.add_argument("--no-verify", action="store_true", help="skip reloading the saved model and re-measuring")
    c.add_argument("--overwrite", action="store_true", default=d.overwrite,
                   help="replace an existing non-empty --out folder (whole: it is never written into)")
    c.add_argument("--dtype", default=d.dtype, choices=list(DTYPE_CHOICES),
                   help="dtype of the written parameters (default auto: the source's; GGUF quantized: bfloat16)")
    c.add_argument("--max-group-size", type=int, default=None,
                   help="largest sharing class (default 2 with shared bases, where the solve is proven; 0: any size)")
    c.add_argument("--cross-layer", action="store_true", default=d.cross_layer,
                   help="also let layers of one role in different blocks share (default: only the input-side "
                        "factors of layers fed one input, q/k/v and gate/up). Computes every pair's statistics to "
                        "prove the solve: minutes on a CPU, growing with the square of the depth")
    c.add_argument("--probe-tokens", type=int, default=d.probe_tokens,
                   help="probed surrogate: tokens each probe and each measured class runs on (whole sequences of "
                        "the first calibration batch; default %(default)s; 0: the first 2 batches whole)")
    c.add_argument("--calibration", metavar="FILE", default=d.calibration,
                   help="plain text to calibrate on (causal LMs; default: even pydoc topics, 32 x 256 tokens)")
    c.add_argument("--evaluation", metavar="FILE", default=d.evaluation,
                   help="plain text to measure perplexity on (causal LMs; default: odd pydoc topics, 24 x 256 tokens)")
    c.add_argument("--bits", type=int, nargs="+", default=d.bits,
                   help="bit-widths a layer's weight may be stored in (default: 16 8 4 3 2 with a budget in bytes "
                        "or bits per weight, else 16)")
    c.add_argument("--heal", type=int, nargs="?", const=DEFAULT_HEAL_STEPS, default=d.heal, metavar="STEPS",
                   help="train the compressed layers' stored tensors to match the dense model afterwards (default "
                        f"{DEFAULT_HEAL_STEPS} steps when given without a number)")
    c.add_argument("--heal-lr", type=float, default=d.heal_lr, help="healing's peak learning rate")
    c.add_argument("--heal-tokens", type=int, default=d.heal_tokens,
                   help="tokens of healing text at most (default: all of the calibration's sources)")
    c.add_argument("--measure-rounds", type=int, default=d.measure_rounds,
                   help="probed surrogate: solves that price the answer's shared classes by measurement (default "
                        "%(default)s; 1: the surrogate only)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``colorshare`` console script."""
    p = argparse.ArgumentParser(prog="colorshare", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="solve the LLaMA-7B-shaped demo graph with every backend and compare")
    d.add_argument("--time-limit", type=float, default=10.0, help="seconds per backend (default 10)")
    d.add_argument("--budget-fraction", type=float, default=0.5, help="budget as a fraction of dense size")
    d.add_argument("--backends", nargs="*", help="subset of backends (default: all available)")
    d.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("solve", help="solve an instance file (.json or .json.gz; see colorshare.instance_file)")
    s.add_argument("instance")
    s.add_argument("--budget", required=True, help="parameters, a percentage of the dense size (50%%), or inf")
    s.add_argument("--backend", default="cpsat")
    s.add_argument("--time-limit", type=float, default=None, help="seconds")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--json", action="store_true", help="print the whole Solution as JSON")
    s.add_argument("--write-mps", metavar="FILE", help="write the set-partitioning program over the instance's "
                   "columns at this budget as MPS (for other solvers) instead of solving")
    _compress_arguments(sub.add_parser("compress", help="compress a model (built-in name, local causal-LM folder "
                                                        "or GGUF file)"))
    from .bench.run import add_arguments, run_from_args

    b = sub.add_parser("bench", help="the benchmark suite: solvers, compression on real models, surrogate fidelity")
    add_arguments(b)
    args = p.parse_args(argv)
    if args.command == "bench":
        return run_from_args(args, b)
    if args.command == "compress":
        from .compress import main_from_args

        return main_from_args(args)
    try:
        if args.command == "demo":
            if not 0 < args.budget_fraction or math.isnan(args.budget_fraction):
                raise ValueError("--budget-fraction must be > 0")
            return _demo(args)
        return _solve(args)
    except (ValueError, TypeError, OSError) as exc:
        print(f"colorshare: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
