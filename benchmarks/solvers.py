"""Solver benchmark: every backend side by side in one run, with time ratios.

    python -m benchmarks.solvers [--time-limit 10] [--budget-fraction 0.5] [--sizes 8 32 64 128 224]
    python -m benchmarks.solvers --data ../shared/data [--time-limit 60] [--pmed 1-20] [--out FILE.md]

Without ``--data``: planted LLaMA-shaped graphs of 8 to 224 layers (the suite's instances,
``colorshare.bench.solvers.planted_instance``); per size and backend: status, objective, gap, wall time and
the time ratio to ``pulp`` (CBC).

With ``--data``: OR-Library pmed instances (published optima), every backend and formulation: HiGHS radius
(Benders; the default), HiGHS p-median (one program), CP-SAT and CBC p-median, anneal, and ``pbp-pmedian``
(a peer on PyPI: Hammer-Beresnev reduction and Benders on HiGHS) where it is installed. Time ratios to
pulp and to pbp-pmedian; every proven value is checked against the published optimum.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import math
import platform
import time
from pathlib import Path
from typing import Any

from colorshare import SharingGraph, available_backends, solve
from colorshare.bench.solvers import planted_instance
from colorshare.instances import read_pmedian

METHODS: dict[str, tuple[str, dict[str, Any]]] = {  # name: (backend, solve() keywords)
    "highs-radius": ("highs", {"formulation": "radius"}),
    "highs-pmedian": ("highs", {"formulation": "pmedian"}),
    "cpsat-pmedian": ("cpsat", {"formulation": "pmedian"}),
    "pulp-pmedian": ("pulp", {"formulation": "pmedian"}),
    "anneal": ("anneal", {}),
}


def planted_table(args: argparse.Namespace) -> None:
    backends = [b for b, why in available_backends().items() if why is None]
    print(f"# {platform.processor() or platform.machine()}, python {platform.python_version()}; "
          f"time limit {args.time_limit:g} s; budget {args.budget_fraction:.0%} of dense")
    print(f"{'layers':>6} {'backend':<7} {'status':<9} {'objective':>11} {'gap':>9} {'time s':>7} {'x pulp':>7}")
    for size in args.sizes:
        g = planted_instance(size, args.seed).graph
        sols = {b: solve(g, args.budget_fraction * g.dense_size, backend=b, time_limit=args.time_limit,
                         seed=args.seed) for b in backends}
        ref = sols.get("pulp")
        for b, s in sols.items():
            ratio = f"{s.wall_time / ref.wall_time:7.2f}" if ref else "      -"
            gap = "-" if s.gap is None else f"{s.gap:.1e}"
            obj = "-" if s.objective is None else f"{s.objective:.6g}"
            print(f"{g.n:>6} {b:<7} {s.status.value:<9} {obj:>11} {gap:>9} {s.wall_time:>7.2f} {ratio}")


def _pmed_names(spec: str) -> list[str]:
    out: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return [f"pmed{k}" for k in out]


def pmed_table(args: argparse.Namespace) -> list[str]:
    data = Path(args.data)
    with open(data / "pmed" / "optima.csv") as fh:
        optima = {r["name"]: float(r["optimum"]) for r in csv.DictReader(fh)}
    have = available_backends()
    methods = {m: v for m, v in METHODS.items() if have.get(v[0]) is None and (not args.methods or m in args.methods)}
    pbp = importlib.util.find_spec("pbp_pmedian") is not None and (not args.methods or "pbp-pmedian" in args.methods)
    cols = list(methods) + (["pbp-pmedian"] if pbp else [])
    lines = [f"# OR-Library p-median, {platform.processor() or platform.machine()}, python "
             f"{platform.python_version()}, time limit {args.time_limit:g} s per solve, one run side by side",
             "", "Each cell: seconds, then `*` = proven optimal and equal to the published optimum, "
             "`+x%` = coloring above it (not proven).", "",
             "| instance | n | p | optimum | " + " | ".join(cols) + " |",
             "|---|---|---|---|" + "---|" * len(cols)]
    print("\n".join(lines), flush=True)
    times: dict[str, list[float]] = {c: [] for c in cols}
    failures = []
    for name in _pmed_names(args.pmed):
        dist, p = read_pmedian(data / "pmed" / f"{name}.txt")
        g = SharingGraph.from_matrix(dist)
        best = optima[name]
        cells = []
        for m, (backend, kw) in methods.items():
            s = solve(g, p, backend=backend, time_limit=args.time_limit, seed=args.seed, **kw)
            times[m].append(s.wall_time)
            if s.status == "optimal" and (s.objective is None or not math.isclose(s.objective, best,
                                                                                    rel_tol=1e-9)):
                failures.append(f"{m} claims {s.objective} optimal on {name}, published {best}")
            mark = "*" if s.status == "optimal" else (
                "-" if s.objective is None else f"+{100 * (s.objective / best - 1):.2f}%")
            cells.append(f"{s.wall_time:.2f} {mark}")
        if pbp:
            import pbp_pmedian

            t = time.perf_counter()
            value, _, _, status, _ = pbp_pmedian.solve(dist, p, time_limit=args.time_limit)
            took = time.perf_counter() - t
            times["pbp-pmedian"].append(took)
            ok = status == 0 and math.isclose(value, best, rel_tol=1e-9)
            cells.append(f"{took:.2f} {'*' if ok else '?'}")
        row = f"| {name} | {g.n} | {p} | {best:g} | " + " | ".join(cells) + " |"
        lines.append(row)
        print(row, flush=True)

    def geo(v: list[float]) -> float:
        return math.exp(sum(math.log(max(x, 1e-3)) for x in v) / len(v))

    lines += ["", "Geometric-mean time and ratios (lower is faster):", "",
              "| method | geo-mean s | total s | x pulp-pmedian | x pbp-pmedian |", "|---|---|---|---|---|"]
    for c in cols:
        r_pulp = f"{geo(times[c]) / geo(times['pulp-pmedian']):.3f}" if "pulp-pmedian" in times else "-"
        r_pbp = f"{geo(times[c]) / geo(times['pbp-pmedian']):.3f}" if pbp else "-"
        lines.append(f"| {c} | {geo(times[c]):.3f} | {sum(times[c]):.1f} | {r_pulp} | {r_pbp} |")
    lines += ["", "Agreement with the published optima: " + ("all proven values agree" if not failures
                                                            else "FAILED: " + "; ".join(failures))]
    print("\n".join(lines[-(len(cols) + 6):]), flush=True)
    if failures:
        raise SystemExit(1)
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--time-limit", type=float, default=None, help="seconds per solve (10; 60 with --data)")
    p.add_argument("--budget-fraction", type=float, default=0.5)
    p.add_argument("--sizes", type=int, nargs="*", default=[8, 32, 64, 128, 224])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", help="folder with pmed/ (OR-Library instances and optima.csv)")
    p.add_argument("--pmed", default="1-20", help="which pmed instances, e.g. 1-20 or 1,5,16")
    p.add_argument("--methods", nargs="*", help=f"subset of {', '.join(METHODS)}, pbp-pmedian")
    p.add_argument("--out", help="also write the pmed table to this markdown file")
    args = p.parse_args(argv)
    if args.data is None:
        args.time_limit = args.time_limit or 10.0
        planted_table(args)
        return
    args.time_limit = args.time_limit or 60.0
    lines = pmed_table(args)
    if args.out:
        Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
