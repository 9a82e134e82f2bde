"""The PNG plots of a run (matplotlib, headless)."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from .config import BenchConfig
from .fidelity import spearman
from .results import BenchResult, CompressionRow, FidelityRow, SolverRow

__all__ = ["write_plots", "pyplot"]

_FLOOR = 1e-7  # where a gap of 0 is drawn on a log axis


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pyplot() -> Any | None:
    """matplotlib's pyplot on the headless backend, or None where matplotlib is not installed."""
    try:
        return _plt()
    except ImportError:
        return None


def _save(plt: Any, fig: Any, path: Path, title: str | None = None) -> None:
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _gap_vs_time(plt: Any, cfg: BenchConfig, rows: list[SolverRow], path: Path) -> None:
    insts = [n for n in cfg.sweep_instances if any(r["instance"] == n for r in rows)]
    if not insts:
        return
    fig, axes = plt.subplots(1, len(insts), figsize=(5.5 * len(insts), 4), squeeze=False)
    for ax, inst in zip(axes[0], insts):
        rs = [r for r in rows if r["instance"] == inst]
        for b in dict.fromkeys(r["backend"] for r in rs):
            by_limit = sorted((float(r["time_limit"]), r["wall_time"], r["gap"]) for r in rs if r["backend"] == b)
            pts = [(t, g) for _, t, g in by_limit if g is not None]
            if pts:
                ax.plot([t for t, _ in pts], [max(g, _FLOOR) for _, g in pts], "o-", label=b)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.axhline(_FLOOR, color="grey", lw=0.5, ls=":")
        ax.set_xlabel("wall time (s), one point per time limit")
        ax.set_ylabel(f"relative gap ({_FLOOR:g} = proven optimal)")
        ax.set_title(inst)
        ax.legend(fontsize=8)
    _save(plt, fig, path, "Gap versus time (anneal has no bound, so no gap)")


def _profiles(plt: Any, cfg: BenchConfig, rows: list[SolverRow], path: Path) -> None:
    """Dolan-More performance profile of time to proof, and the share of instances within each gap, at the
    main time limit, one line per backend over every instance of the run."""
    from .solvers import performance_profile

    ratios = performance_profile(rows, cfg.time_limit)
    main = [r for r in rows if math.isclose(float(r["time_limit"]), cfg.time_limit)]
    insts = list(dict.fromkeys(r["instance"] for r in main))
    if not insts:
        return
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for k, (b, rs) in enumerate(ratios.items()):
        if not rs:
            continue
        taus = sorted({1.0, *(x for x in rs if math.isfinite(x))})
        taus.append(taus[-1] * 2)
        a1.step(taus, [sum(x <= t for x in rs) / len(rs) for t in taus], where="post", label=b, color=f"C{k}")
    a1.set_xscale("log", base=2)
    a1.set_ylim(0, 1.02)
    a1.set_xlabel("tau: time to proof / fastest proof (log2)")
    a1.set_ylabel(f"share of the {max((len(v) for v in ratios.values()), default=0)} instances proven")
    a1.set_title("performance profile: time to proof")
    a1.legend(fontsize=8)
    xs = [10.0 ** e for e in range(-7, 1)] + [1.0]
    for k, b in enumerate(dict.fromkeys(r["backend"] for r in main)):
        gaps = []
        for inst in insts:
            r = next((r for r in main if r["instance"] == inst and r["backend"] == b), None)
            if r is None or r["objective"] is None:
                continue  # no coloring (infeasible budgets included): no gap to show
            gaps.append(0.0 if r["status"] == "optimal" else (math.inf if r["gap"] in (None, "") else float(r["gap"])))
        if gaps:
            a2.step([_FLOOR] + xs, [sum(g <= x for g in gaps) / len(gaps) for x in [_FLOOR] + xs], where="post",
                    label=f"{b} ({len(gaps)})", color=f"C{k}")
    a2.set_xscale("log")
    a2.set_ylim(0, 1.02)
    a2.set_xlabel(f"relative gap at the {cfg.time_limit:g} s limit ({_FLOOR:g} = proven; anneal has none)")
    a2.set_ylabel("share of instances with a coloring")
    a2.set_title("gap at the limit")
    a2.legend(fontsize=8)
    _save(plt, fig, path)


def _time_vs_size(plt: Any, cfg: BenchConfig, res: BenchResult, path: Path) -> None:
    fams = res.families
    rows = [r for r in res.solvers if math.isclose(float(r["time_limit"]), cfg.time_limit)]
    present = {fams.get(r["instance"]) for r in rows}
    groups = [f for f in ("planted", "ranked", "model", "coloring", "dimacs", "pmedian") if f in present]
    if not groups:
        return
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 4), squeeze=False)
    for ax, fam in zip(axes[0], groups):
        rs = [r for r in rows if fams.get(r["instance"]) == fam]
        for k, b in enumerate(dict.fromkeys(r["backend"] for r in rs)):
            pts = sorted((r["n_layers"], r["wall_time"], r["status"]) for r in rs if r["backend"] == b)
            color = f"C{k}"
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-", color=color, alpha=0.5)
            proven = [p for p in pts if p[2] in ("optimal", "infeasible")]
            other = [p for p in pts if p[2] not in ("optimal", "infeasible")]
            ax.plot([p[0] for p in proven], [p[1] for p in proven], "o", color=color, label=b)
            ax.plot([p[0] for p in other], [p[1] for p in other], "x", color=color)
        ax.axhline(cfg.time_limit, color="grey", lw=0.5, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("layers (graph nodes)")
        ax.set_ylabel("wall time (s)")
        ax.set_title(f"{fam} (o proven, x not)")
        ax.legend(fontsize=8)
    _save(plt, fig, path)


_CLIP = 20.0
"""A lower-is-better metric above this many times the dense model's is drawn at the clip line (noted)."""


def _pareto(plt: Any, rows: list[CompressionRow], model: str, path: Path) -> None:
    rs = [r for r in rows if r["model"] == model]
    metrics = list(dict.fromkeys(r["metric"] for r in rs))
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.8 * len(metrics), 4.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        series: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
        for r in rs:
            if r["metric"] != metric or r["method"] == "dense":
                continue
            series[r["method"]][r["budget_fraction"]].append(r["value"])
        dense = [r["value"] for r in rs if r["metric"] == metric and r["method"] == "dense"]
        lower_better = metric in ("perplexity", "cross_entropy", "loss")
        vals = [x for by in series.values() for v in by.values() for x in v]
        log = lower_better and bool(vals) and min(vals) > 0 and max(vals) / max(min(vals), 1e-300) > 20
        clip = _CLIP * dense[0] if (log and dense and dense[0] > 0) else None
        clipped = []
        for k, (m, by_frac) in enumerate(series.items()):
            pts = sorted((100 * f, statistics.fmean(v), statistics.pstdev(v)) for f, v in by_frac.items())
            if clip is not None and any(p[1] > clip for p in pts):
                clipped.append(m)
                pts = [(x, min(y, clip), e) for x, y, e in pts]
            style = {"lw": 2.5, "zorder": 5} if m == "optimal" else {"lw": 1.2}
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts] if m == "random" else None,
                        marker="o", ms=4, label=m, color=f"C{k % 10}", ls="-" if k < 10 else "--", capsize=2, **style)
        if dense:
            ax.axhline(dense[0], color="black", ls="--", lw=0.8, label="dense model")
        if log:
            ax.set_yscale("log")
        if clip is not None and clipped:
            ax.axhline(clip, color="grey", ls=":", lw=0.8)
            ax.text(0.01, 0.99, f"clipped at {_CLIP:g}x dense: {', '.join(clipped)}", transform=ax.transAxes,
                    fontsize=7, va="top")
        ax.set_xlabel("stored parameters of the target layers (% of dense)")
        ax.set_ylabel(metric + (" (log, lower is better)" if log else (" (lower is better)" if lower_better else "")))
        ax.invert_xaxis()
        ax.legend(fontsize=7)
    _save(plt, fig, path, f"{model}: quality versus memory at equal budgets")


def _fidelity(plt: Any, rows: list[FidelityRow], model: str, path: Path) -> None:
    rs = [r for r in rows if r["model"] == model]
    ests = list(dict.fromkeys(r["curvature"] for r in rs))
    fig, axes = plt.subplots(1, len(ests), figsize=(3.6 * len(ests), 3.6), squeeze=False)
    for ax, est in zip(axes[0], ests):
        e = [r for r in rs if r["curvature"] == est]
        x = [r["predicted"] for r in e]
        y = [r["measured"] for r in e]
        ax.scatter([max(v, 1e-12) for v in x], y, s=10, alpha=0.7)
        ax.set_xscale("log")
        if min(y, default=1.0) > 0:
            ax.set_yscale("log")
        else:
            mags = sorted(abs(v) for v in y if v) or [1e-3]
            ax.set_yscale("symlog", linthresh=max(1e-6, mags[len(mags) // 5]))
        from matplotlib.ticker import NullFormatter

        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("predicted loss increase")
        ax.set_ylabel("measured loss increase")
        ax.set_title(f"{est}: rho {spearman(x, y):.3f}")
    _save(plt, fig, path, f"{model}: surrogate fidelity ({len(rs) // max(1, len(ests))} colorings per estimator)")


def write_plots(cfg: BenchConfig, res: BenchResult) -> None:
    """gap_vs_time.png, time_vs_size.png, performance_profile.png, pareto_<model>.png, fidelity_<model>.png
    (where there is data)."""
    plt = _plt()
    out = Path(cfg.out)
    if res.solvers:
        _gap_vs_time(plt, cfg, res.solvers, out / "gap_vs_time.png")
        _time_vs_size(plt, cfg, res, out / "time_vs_size.png")
        _profiles(plt, cfg, res.solvers, out / "performance_profile.png")
    for model in dict.fromkeys(r["model"] for r in res.compression):
        _pareto(plt, res.compression, model, out / f"pareto_{model}.png")
    for model in dict.fromkeys(r["model"] for r in res.fidelity):
        _fidelity(plt, res.fidelity, model, out / f"fidelity_{model}.png")
