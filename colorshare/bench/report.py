"""summary.md and the plots of a run."""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import statistics
from collections import defaultdict
from importlib import metadata
from pathlib import Path
from typing import Any

from .config import BenchConfig
from .fidelity import spearman
from .results import BenchResult, CompressionRow, FidelityRow
from .solvers import largest_optimal

__all__ = ["machine_info", "write_report", "headline", "headline_table", "HEADLINE_ORDER"]

HEADLINE_ORDER = ("optimal", "optimal-layerwise", "optimal-kfac", "optimal-trace", "svd-uniform", "basis-sharing",
                  "adjacent", "per-layer", "all-shared", "similarity", "random")

_LIBS = ("colorshare", "numpy", "scipy", "networkx", "ortools", "highspy", "pulp", "torch", "transformers",
         "scikit-learn", "matplotlib")


def machine_info() -> dict[str, str]:
    """CPU model, cores, memory, OS, Python and library versions."""
    cpu = platform.processor() or platform.machine()
    mem = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {"cpu": cpu, "cores": str(cores), "memory": mem or "?", "os": platform.platform(),
            "python": platform.python_version()}
    for lib in _LIBS:
        try:
            info[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            info[lib] = "not installed"
    return info


def machine_line(info: dict[str, str] | None = None) -> str:
    """One line naming the machine: CPU model, cores, memory (of :func:`machine_info`, or this machine's)."""
    info = info or machine_info()
    return f"{info.get('cpu')}, {info.get('cores')} cores, {info.get('memory')}"


def _f(v: Any, spec: str = ".4g") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec)


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out + [""]


_SHORT = {"optimal": "opt", "feasible": "feas", "infeasible": "infeas", "unknown": "unk"}


def _solver_section(cfg: BenchConfig, res: BenchResult) -> list[str]:
    rows = res.solvers
    limit = cfg.time_limit
    main = [r for r in rows if math.isclose(float(r["time_limit"]), limit)]
    backends = list(dict.fromkeys(r["backend"] for r in rows))
    known = res.known
    fam = res.families
    lines = [f"## 1. Solvers (time limit {limit:g} s each, seed {cfg.seed})", ""]
    lines += ["Cells: status, wall time in seconds, relative gap (objective - proven bound) / objective. "
              "`anneal` proves nothing, so it has no gap. `x pulp` = wall time / pulp's wall time on the same "
              "instance (CBC, the ILP route HAWQ-V3 used).", ""]
    lines += ["**Agreement of the exact backends:**", ""]
    lines += [f"- {e}" for e in res.agreement] or ["- (no instance where an exact backend proved anything)"]
    lines.append("")
    by = {(r["instance"], r["backend"]): r for r in main}
    table = []
    for inst in dict.fromkeys(r["instance"] for r in main):
        some = next(r for r in main if r["instance"] == inst)
        k = known.get(inst)
        shown = "-" if k is None else (k if isinstance(k, str) else _f(k, ".6g"))
        cells = [inst, fam.get(inst, ""), str(some["n_layers"]), shown]
        objs = [r["objective"] for b in backends if (r := by.get((inst, b))) and r["objective"] is not None]
        cells.append(_f(min(objs), ".6g") if objs else "-")
        ref = by.get((inst, "pulp"))
        for b in backends:
            r = by.get((inst, b))
            if r is None:
                cells.append("-")
                continue
            txt = f"{_SHORT.get(r['status'], r['status'])} {r['wall_time']:.2f}s"
            if r["gap"] not in (None, "") and r["status"] != "optimal":
                txt += f" gap {float(r['gap']):.1e}"
            if ref is not None and b != "pulp" and ref["wall_time"] > 0:
                txt += f" ({r['wall_time'] / ref['wall_time']:.2f}x pulp)"
            cells.append(txt)
        table.append(cells)
    lines += _table(["instance", "family", "layers", "known", "best objective"] + backends, table)
    from .solvers import performance_profile, profile_share

    prof = performance_profile(rows, limit)
    if any(prof.values()):
        n = max(len(v) for v in prof.values())
        lines += [f"**Performance profile** (Dolan-More, plot performance_profile.png; {n} instances some backend "
                  "proved): share proven within tau times the fastest proof, and share of all instances with a "
                  "coloring within 1 % of its bound:", ""]
        prow = []
        for b, rs in prof.items():
            withc = [r for r in main if r["backend"] == b and r["objective"] is not None]
            close = sum(1 for r in withc if r["status"] == "optimal" or (r["gap"] not in (None, "")
                                                                        and float(r["gap"]) <= 0.01))
            prow.append([b] + [f"{profile_share(rs, t):.2f}" for t in (1, 2, 10, math.inf)]
                        + [f"{close}/{len(withc)}"])
        lines += _table(["backend", "tau 1 (fastest)", "tau 2", "tau 10", "proven at all", "gap <= 1 %"], prow)
    lines += ["**Largest instance each backend proves optimal within the limit:**", ""]
    for b, best in largest_optimal(rows, limit).items():
        lines.append(f"- {b}: " + ("none" if best is None else f"{best[1]} ({best[0]} layers)"))
    lines.append("")
    ratios = defaultdict(list)
    for inst in dict.fromkeys(r["instance"] for r in main):
        ref = by.get((inst, "pulp"))
        for b in backends:
            r = by.get((inst, b))
            if ref and r and b != "pulp" and ref["wall_time"] > 0:
                ratios[b].append(r["wall_time"] / ref["wall_time"])
    if ratios:
        lines += ["**Time ratio to pulp** (geometric mean over all instances; < 1 = faster than CBC): "
                  + ", ".join(f"{b} {math.exp(statistics.fmean(math.log(max(x, 1e-9)) for x in v)):.2f}"
                              for b, v in ratios.items()), ""]
    sweep = [r for r in rows if r["instance"] in cfg.sweep_instances]
    if sweep:
        lines += ["**Gap versus time limit** (plot: gap_vs_time.png):", ""]
        limits = sorted({float(r["time_limit"]) for r in sweep})
        t = []
        for inst in dict.fromkeys(r["instance"] for r in sweep):
            for b in backends:
                cells = [inst, b]
                for lim in limits:
                    r = next((r for r in sweep if r["instance"] == inst and r["backend"] == b
                              and math.isclose(float(r["time_limit"]), lim)), None)
                    cells.append("-" if r is None else f"{_SHORT.get(r['status'], r['status'])} {_f(r['gap'], '.1e')}")
                t.append(cells)
        lines += _table(["instance", "backend"] + [f"{lim:g} s" for lim in limits], t)
    return lines


def headline(rows: list[CompressionRow], model: str, frac: float) -> list[tuple[str, dict[str, float]]]:
    """(method, {metric: mean value, "surrogate": mean}) at one budget; random averaged over its seeds."""
    metrics = list(dict.fromkeys(r["metric"] for r in rows if r["model"] == model))
    methods: dict[str, dict[str, float]] = {}
    for metric in metrics + ["surrogate"]:
        src = metrics[0] if metric == "surrogate" else metric
        key = "surrogate" if metric == "surrogate" else "value"
        vals: dict[str, list[float]] = defaultdict(list)
        for r in rows:
            if r["model"] == model and r["metric"] == src and math.isclose(r["budget_fraction"], frac):
                vals[r["method"]].append(r[key])  # type: ignore[literal-required]
        for m, v in vals.items():
            methods.setdefault(m, {})[metric] = statistics.fmean(v)
    return list(methods.items())


def headline_table(rows: list[CompressionRow], frac: float = 0.5) -> list[str]:
    """Markdown: per model and metric, every method's value at budget ``frac`` (random: mean of its seeds)."""
    body, methods = [], [m for m in HEADLINE_ORDER if any(r["method"].startswith(m) for r in rows)]
    for model in dict.fromkeys(r["model"] for r in rows):
        hl = dict(headline(rows, model, frac))
        if not hl:
            continue
        metrics = list(dict.fromkeys(r["metric"] for r in rows if r["model"] == model))
        for metric in metrics:
            body.append([model, metric] + [_f(hl.get(m, {}).get(metric), ".4f") for m in methods])
        body.append([model, "surrogate"] + [_f(hl.get(m, {}).get("surrogate"), ".4g")
                                            if not m.startswith("optimal-") else "(own units)" for m in methods])
    return _table(["model", "metric"] + methods, body) if body else []


def _compression_section(cfg: BenchConfig, res: BenchResult) -> list[str]:
    rows = res.compression
    lines = ["## 2. Compression at equal memory", ""]
    lines += ["Every method is the same set-partitioning model restricted to the groups its structure allows "
              "(see `colorshare/bench/methods.py`), solved by HiGHS under the same budget: the best "
              "configuration (actions, ranks) each structure can have. Budget = fraction of the dense size of "
              f"the target layers; surrogate = the {cfg.curvature} second-order estimate the solver minimised "
              "(for `optimal-<estimator>`: the optimum under that estimator's graph, its surrogate in that "
              "estimator's units). `random` = mean over its seeds.", ""]
    for model in dict.fromkeys(r["model"] for r in rows):
        metrics = list(dict.fromkeys(r["metric"] for r in rows if r["model"] == model))
        dense = {r["metric"]: r["value"] for r in rows if r["model"] == model and r["method"] == "dense"}
        lines += [f"### {model}", "", "Dense model: " + ", ".join(f"{m} {_f(v)}" for m, v in dense.items()) + "; "
                  f"Pareto plot: pareto_{model}.png", ""]
        lines += budget_table(rows, model)
        for frac in sorted({r["budget_fraction"] for r in rows if r["model"] == model and r["method"] != "dense"},
                           reverse=True):
            hl = headline(rows, model, frac)
            opt = dict(hl).get("optimal")
            t = []
            for m, v in hl:
                cells = [m, _f(v.get("surrogate"), ".4g")]
                for metric in metrics:
                    cell = _f(v.get(metric), ".4f")
                    if opt is not None and m != "optimal" and metric in opt and metric in v:
                        cell += f" ({opt[metric] - v[metric]:+.4f})"
                    cells.append(cell)
                t.append(cells)
            lines += [f"Budget {frac:.0%} (in brackets: optimal minus the method; positive = optimal higher):", ""]
            lines += _table(["method", "surrogate"] + metrics, t)
    notes = res.notes_of("solve")
    if notes:
        lines += ["Solves that did not end optimal:", ""] + [f"- {n}" for n in notes] + [""]
    info = res.notes_of("info")
    if info:
        lines += ["Measurements and pair statistics:", ""] + [f"- {n}" for n in info] + [""]
    return lines


BUDGET_METHODS = ("optimal", "per-layer", "svd-uniform", "basis-sharing")


def budget_table(rows: list[CompressionRow], model: str) -> list[str]:
    """Markdown: the model's first metric at every budget for the default pipeline, the restriction it contains
    (per-layer ranks under the same surrogate) and the papers' baselines, with optimal / per-layer - 1."""
    metrics = list(dict.fromkeys(r["metric"] for r in rows if r["model"] == model))
    if not metrics:
        return []
    metric = metrics[0]
    fracs = sorted({r["budget_fraction"] for r in rows if r["model"] == model and r["method"] != "dense"},
                   reverse=True)
    body = []
    for frac in fracs:
        hl = dict(headline(rows, model, frac))
        vals = [hl.get(m, {}).get(metric) for m in BUDGET_METHODS]
        rel = "-" if vals[0] is None or not vals[1] else f"{100 * (vals[0] / vals[1] - 1):+.1f} %"
        body.append([f"{frac:.0%}"] + [_f(v, ".4f") for v in vals] + [rel])
    return [f"{metric} at every budget:", ""] + _table(["keep"] + list(BUDGET_METHODS) + ["optimal vs per-layer"], body)


def _fidelity_section(res: BenchResult) -> list[str]:
    rows = res.fidelity
    lines = ["## 3. Surrogate fidelity", ""]
    lines += ["Predicted = the estimator's second-order loss increase of the coloring (its own tie centers and "
              "costs); measured = the loss of the compressed model minus the original's: cross-entropy on the "
              "MLP's training set (its own objective); for MiniLM, which has no labels, 1 - mean cosine to the "
              "original embeddings on the held-out sentences (the real metric; fisher is left out there: the "
              "gradient of a distillation loss is 0 at the original model, so its empirical Fisher is 0; "
              "spectrum too, its Lanczos iterations are too slow on a CPU); for a causal LM (SmolLM2) the "
              "held-out NLL, the log of the perplexity. Colorings: the compression runs of every method and "
              "budget plus random partitions with random actions; for the models outside the full fidelity "
              "study (SmolLM2: each coloring costs a perplexity pass) only the compression runs' colorings, the "
              "papers' baselines included, each priced exactly by every graph the run built (any rank, outside "
              "the trust region too). Spearman's rho says how well each estimator ranks colorings, which is what "
              "the solver needs.", ""]
    lines += ["Across all colorings the memory level dominates (less memory, more loss), which every estimator "
              "gets right; what the solver needs is the ranking among colorings of EQUAL memory, so the last "
              "column is Spearman's rho among the methods' colorings at one budget, averaged over budgets.", ""]
    t = []
    for model in dict.fromkeys(r["model"] for r in rows):
        for est in dict.fromkeys(r["curvature"] for r in rows if r["model"] == model):
            rs = [r for r in rows if r["model"] == model and r["curvature"] == est]
            rho = spearman([r["predicted"] for r in rs], [r["measured"] for r in rs])
            t.append([model, est, str(len(rs)), _f(rho, ".3f"), _f(equal_budget_rho(rs), ".3f")])
    return lines + _table(["model", "curvature", "colorings", "Spearman rho (all)",
                           "rho at equal budget (mean)"], t)


def equal_budget_rho(rows: list[FidelityRow]) -> float:
    """Mean over budgets of Spearman's rho among the compression colorings at that budget (budgets with at
    least 4 colorings); NaN if there are none."""
    by: dict[float, list[FidelityRow]] = defaultdict(list)
    for r in rows:
        if r["budget_fraction"] is not None:
            by[r["budget_fraction"]].append(r)
    rhos = [spearman([r["predicted"] for r in v], [r["measured"] for r in v]) for v in by.values() if len(v) >= 4]
    rhos = [x for x in rhos if not math.isnan(x)]
    return statistics.fmean(rhos) if rhos else float("nan")


def write_report(cfg: BenchConfig, res: BenchResult) -> None:
    """Write summary.md and the PNG plots of ``res`` into ``cfg.out``."""
    out = Path(cfg.out)
    info = machine_info()
    lines = ["# colorshare benchmark results", "",
             f"Run {res.started or _dt.datetime.now().strftime('%Y-%m-%d %H:%M')}; "
             f"sections: {', '.join(cfg.sections)}; "
             f"models: {', '.join(cfg.models) or 'none'}; device {cfg.device}; seed {cfg.seed}; total "
             f"{res.timings.get('total', 0):.0f} s.", "",
             f"Machine: {machine_line(info)}; {info['os']}; "
             f"Python {info['python']}.",
             "Libraries: " + ", ".join(f"{k} {v}" for k, v in info.items() if k in _LIBS), ""]
    lines += [f"- {n}" for n in res.notes_of("layers")] + [""]
    if any(math.isclose(r["budget_fraction"], 0.5) for r in res.compression):
        lines += ["## Headline: every method at 50 % of the target layers' dense size", ""]
        lines += headline_table(res.compression, 0.5)
    if res.solvers:
        lines += _solver_section(cfg, res)
    if res.compression:
        lines += _compression_section(cfg, res)
    if res.fidelity:
        lines += _fidelity_section(res)
    notes = res.notes_of("solve", "warning", "info")
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    lines += ["## Timings", ""] + [f"- {k}: {v:.1f} s" for k, v in res.timings.items()] + [""]
    (out / "summary.md").write_text("\n".join(lines))
    from .plots import write_plots

    write_plots(cfg, res)
