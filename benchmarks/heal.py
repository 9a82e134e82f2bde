"""Healing: the metric of a plan before and after ``compress --heal`` at several step counts, in one run.

    python -m benchmarks.heal [--model smollm2-135m] [--keeps 0.8 0.5] [--steps N ...] [--out DIR] [--append]

One graph with ``colorshare compress``'s defaults (:mod:`colorshare.defaults`), one solve per budget (HiGHS), the
plan applied; then, for each step count, a fresh copy of the plan healed exactly as ``compress --heal N`` heals it
(:func:`colorshare.torch.heal` on the case's healing text, compress's default peak learning rate and steps,
seed 0, bfloat16 autocast where the CPU multiplies it natively) and measured. For a
causal LM the metric is token perplexity on ``--chunks`` x 256 tokens of installed packages' descriptions
(:func:`colorshare.corpus.package_text`), a source neither the calibration nor the healing text comes from; for
MiniLM the mean cosine of held-out sentence embeddings to the dense model's. The curve is the metric against
steps: more steps must never end worse than fewer (the held-back slice keeps the best state).

Writes ``heal-<model>.md`` and ``.json`` into ``--out`` (and ``.png``: the metric against steps, one line a
budget). ``--append`` adds this run's budgets to the result already there (same model, metric, evaluation text
and dense metric, else an error; a budget and step count measured again replaces the old row), so that a long
study can run in parts.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from colorshare.bench.plots import pyplot
from colorshare.bench.report import machine_line
from colorshare.compress import DEFAULT_HEAL_STEPS, CompressOptions


def _case(model: str, chunks: int, tmp: Path) -> Any:
    from colorshare.corpus import package_text
    from colorshare.torch.models import MODEL_CASES

    if model == "smollm2-135m":
        held = tmp / "packages.txt"
        held.write_text(package_text()[0])
        return MODEL_CASES[model](evaluation_text=held, evaluation=chunks)
    return MODEL_CASES[model]()


def budget_rows(case: Any, graph: Any, keep: float, steps: list[int], lr: float) -> list[dict[str, Any]]:
    """The plan at ``keep`` unhealed, then healed for each of ``steps``: metric, held-back loss, seconds."""
    from colorshare import solve
    from colorshare.torch import apply_coloring, heal

    sol = solve(graph, keep * graph.dense_size, backend="highs", time_limit=300)
    plan = apply_coloring(case.model, graph, sol)
    name = next(iter(case.higher))
    rows = [{"keep": keep, "steps": 0, name: case.metrics(plan)[name], "memory": sol.memory,
             "status": sol.status.value, "seconds": 0.0}]
    print(rows[-1], flush=True)
    batches, source = case.heal_text(None) if case.heal_text else (case.batches, "calibration batches")
    for n in steps:
        model = copy.deepcopy(plan)
        res = heal(model, case.model, batches, graph.module_names, steps=n, lr=lr, seed=0, progress=False)
        stored = sum(p.numel() for p in {id(p): p for name_ in graph.module_names
                                         for p in model.get_submodule(name_).parameters()}.values())
        rows.append({"keep": keep, "steps": n, name: case.metrics(model)[name], "memory": sol.memory,
                     "best_step": res.best_step, "held_back_before": res.held_before, "held_back_best": res.held_best,
                     "trainable": res.parameters, "stored_parameters": stored, "seconds": res.seconds,
                     "held_back_curve": [(k, h) for k, _, h in res.curve if h is not None],  # from step 0
                     "text": source})
        print(rows[-1], flush=True)
        del model
    return rows


def _autocast(case: Any) -> str:
    """What heal's default autocast does on the case's model here."""
    from colorshare.torch.heal import native_bfloat16

    device = next(case.model.parameters()).device
    return "bfloat16" if native_bfloat16(device) else "none (float32)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--keeps", type=float, nargs="*", default=[0.8, 0.5])
    p.add_argument("--steps", type=int, nargs="*", default=[DEFAULT_HEAL_STEPS])
    p.add_argument("--chunks", type=int, default=16, help="256-token chunks of held-out text (causal LM)")
    p.add_argument("--lr", type=float, default=CompressOptions.heal_lr)
    p.add_argument("--out", default="benchmarks/results/heal")
    p.add_argument("--append", action="store_true", help="add the rows to the result already in --out")
    args = p.parse_args(argv)
    stem = Path(args.out) / f"heal-{args.model}"
    if args.append and not stem.with_suffix(".json").is_file():  # before hours of work, not after
        p.error(f"--append: no result to append to ({stem.with_suffix('.json')} does not exist)")
    warnings.simplefilter("ignore")
    from colorshare import defaults
    from colorshare.bench.report import machine_info
    from colorshare.torch import build_graph

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        case = _case(args.model, args.chunks, Path(tmp))
    t0 = time.perf_counter()
    graph = build_graph(case.model, case.batches, case.targets, defaults.CURVATURE)  # compress's defaults
    build_s = time.perf_counter() - t0
    name = next(iter(case.higher))
    dense = case.metrics(case.model)[name]
    rows = [r for keep in args.keeps for r in budget_rows(case, graph, keep, args.steps, args.lr)]
    info = {k: str(v) for k, v in case.info.items()}
    if "evaluation" in info and "packages.txt" in info["evaluation"]:  # a scratch file's path says nothing
        info["evaluation"] = info["evaluation"].split(" (")[0] + " (installed packages' descriptions)"
    res = {"machine": machine_info(), "model": args.model, "metric": name, "higher_is_better": case.higher[name],
           "dense": dense, "graph_seconds": build_s, "info": info, "lr": args.lr, "autocast": _autocast(case),
           "rows": rows}
    if args.append:
        res = merged(json.loads(stem.with_suffix(".json").read_text()), res)
    stem.with_suffix(".json").write_text(json.dumps(res, indent=2, default=str))
    write(stem, res)
    return 0


def merged(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``old``'s result with ``new``'s rows added (a budget and step count in both: ``new``'s row), budgets in
    decreasing order; the graph's seconds of each run. ValueError where the two do not measure the same thing."""
    for key in ("model", "metric", "lr", "autocast"):
        if old.get(key) != new.get(key):
            raise ValueError(f"cannot append: {key} {new.get(key)!r} differs from the result's {old.get(key)!r}")
    if old["info"].get("evaluation") != new["info"].get("evaluation"):
        raise ValueError("cannot append: the evaluation text differs from the result's")
    if abs(old["dense"] - new["dense"]) > 1e-6 * abs(old["dense"]):
        raise ValueError(f"cannot append: the dense {new['metric']} {new['dense']:.6g} differs from the result's "
                         f"{old['dense']:.6g}")
    fresh = {(r["keep"], r["steps"]) for r in new["rows"]}
    rows = [r for r in old["rows"] if (r["keep"], r["steps"]) not in fresh] + new["rows"]
    rows.sort(key=lambda r: (-r["keep"], r["steps"]))
    return {**new, "rows": rows, "graph_seconds": _graph_seconds(old) + _graph_seconds(new)}


def _graph_seconds(res: dict[str, Any]) -> list[float]:
    """Each run's graph seconds (one number for a result of one run, a list for one appended to)."""
    s = res["graph_seconds"]
    return list(s) if isinstance(s, list) else [s]


def write(stem: Path, res: dict[str, Any]) -> None:
    """The table (``.md``) and the curve (``.png``) of a run."""
    name, rows = res["metric"], res["rows"]
    higher = res["higher_is_better"]  # a similarity (at most 1): its ratio is read as 1 - value's
    gap = f"1 - {name}" if higher else name

    def loss(v: float) -> float:
        return 1.0 - v if higher else v

    seconds = _graph_seconds(res)
    runs = "One run" if len(seconds) == 1 else f"{len(seconds)} runs (each its own graph, same defaults and text)"
    lines = [f"# Healing {res['model']}", "",
             f"Machine: {machine_line(res['machine'])}, torch {res['machine'].get('torch')}. {runs}. Graph with "
             f"compress's defaults: {' / '.join(f'{x:.0f}' for x in seconds)} s. "
             f"Metric: {name} ({'higher' if res['higher_is_better'] else 'lower'} is better) on "
             f"{res['info'].get('evaluation', str(res['info'].get('held_out')) + ' held-out sentences')}; dense "
             f"{res['dense']:.4g}. Healing text: {next((r['text'] for r in rows if 'text' in r), '-')}. Peak learning "
             f"rate {res['lr']:g}; autocast {res.get('autocast', 'none (float32)')}.", "",
             f"| keep | steps | {name} | {gap} vs unhealed | held-back loss | best step | seconds |",
             "|---|---|---|---|---|---|---|"]
    base: dict[float, float] = {}
    for r in rows:
        base.setdefault(r["keep"], loss(r[name]))
        held = f"{r['held_back_before']:.4g} -> {r['held_back_best']:.4g}" if "held_back_best" in r else "-"
        lines.append(f"| {r['keep']:.0%} | {r['steps']} | {r[name]:.4g} | {loss(r[name]) / base[r['keep']]:.3f} | "
                     f"{held} | {r.get('best_step', '-')} | {r['seconds']:.0f} |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plt = pyplot()
    if plt is None:
        return
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.4))
    for r in rows:  # the held-back loss during each healing run: the state kept is the curve's minimum
        if r.get("held_back_curve"):
            ks, hs = zip(*r["held_back_curve"])
            ax2.plot(ks, hs, label=f"keep {r['keep']:.0%}, {r['steps']} steps")
    ax2.set_yscale("log")
    ax2.set_xlabel("step")
    ax2.set_ylabel("held-back loss (KL nats/token; encoder: 1 - cos)")
    ax2.set_title("held-back loss during healing")
    ax2.grid(True, which="both", alpha=0.3)
    ax2.legend(fontsize=7)
    for keep in sorted({r["keep"] for r in rows}, reverse=True):
        pts = [(max(r["steps"], 1), r[name]) for r in rows if r["keep"] == keep]
        ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=f"keep {keep:.0%}")
    ax.axhline(res["dense"], color="k", linestyle="--", label="dense")
    ax.set_xscale("log", base=2)
    if not res["higher_is_better"]:
        ax.set_yscale("log")
    ax.set_xlabel("healing steps (one batch a step; 1 = unhealed)")
    ax.set_ylabel(name)
    ax.set_title(f"{res['model']}: healing")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
