"""Healing a plan in fewer bits: heal in 16 bits and round after, or heal straight through the rounding, at
equal bytes, in one run.

    python -m benchmarks.heal_bits [--model minilm-l6] [--bpw 4.5 3.5 2.5] [--steps 100] [--out DIR]

One graph with every bit-width (``build_graph(..., bits=BITS)``, compress's defaults otherwise), one solve per
budget (HiGHS); then, from the same plan and the same healing text, seed and steps:

- ``unhealed``: the plan as applied (GPTQ codes);
- ``heal then round``: the plan built in 16 bits, healed, then rounded (GPTQ of the healed tensors under each
  layer's input covariance: what ``compress --heal`` did before);
- ``straight through``: the quantized plan made trainable (:mod:`colorshare.torch.qat`: latent weights from
  the GPTQ codes, rounded on each layer's GPTQ grid in every forward, the rounding passed straight through),
  healed, and stored as the codes it trained (what ``compress --heal`` does now).

The metric is :mod:`benchmarks.heal`'s (token perplexity on installed packages' descriptions for a causal LM,
cosine of held-out sentences' embeddings for MiniLM); bytes are counted from the model (codes, scales, zero
points). Writes ``heal-bits-<model>.md`` and ``.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from benchmarks.heal import _case
from colorshare.bench.report import machine_line


def budget_row(case: Any, graph: Any, bpw: float, steps: int, lr: float, batches: list[Any]) -> dict[str, Any]:
    """The three ways at ``bpw`` bits per weight: metric, stored bytes and healing seconds of each."""
    from colorshare import solve
    from colorshare.formulations.budget import parse_budget
    from colorshare.torch import apply_coloring, heal, quantize_classes, stored_memory
    from colorshare.torch.qat import freeze, unfreeze

    name = next(iter(case.higher))
    sol = solve(graph, parse_budget(f"{bpw}bpw").for_graph(graph), backend="highs", time_limit=300)
    row: dict[str, Any] = {"bpw": bpw, "status": sol.status.value, "memory": sol.memory}
    plan = apply_coloring(case.model, graph, sol)
    row["unhealed"] = case.metrics(plan)[name]
    row["bytes"] = stored_memory(plan, "bytes")

    f = apply_coloring(case.model, graph, sol, quantize=False)
    t = time.perf_counter()
    res = heal(f, case.model, batches, graph.module_names, steps=steps, lr=lr, seed=0, progress=False)
    quantize_classes(f, graph, sol)
    row["heal_then_round"] = case.metrics(f)[name]
    row["heal_then_round_seconds"] = time.perf_counter() - t
    row["heal_then_round_best_step"] = res.best_step
    row["heal_then_round_bytes"] = stored_memory(f, "bytes")

    unfreeze(plan, graph.module_names)
    t = time.perf_counter()
    res = heal(plan, case.model, batches, graph.module_names, steps=steps, lr=lr, seed=0, progress=False)
    freeze(plan, graph.module_names)
    row["straight_through"] = case.metrics(plan)[name]
    row["straight_through_seconds"] = time.perf_counter() - t
    row["straight_through_best_step"] = res.best_step
    row["straight_through_bytes"] = stored_memory(plan, "bytes")
    print(row, flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="minilm-l6")
    p.add_argument("--bpw", type=float, nargs="*", default=[4.5, 3.5, 2.5])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--chunks", type=int, default=16, help="256-token chunks of held-out text (causal LM)")
    p.add_argument("--out", default="benchmarks/results/heal")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    from colorshare import defaults
    from colorshare.bench.report import machine_info
    from colorshare.torch import build_graph
    from colorshare.torch.quant import BITS

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        case = _case(args.model, args.chunks, Path(tmp))
    t0 = time.perf_counter()
    graph = build_graph(case.model, case.batches, case.targets, defaults.CURVATURE, bits=BITS)
    build_s = time.perf_counter() - t0
    name = next(iter(case.higher))
    batches, source = case.heal_text(None) if case.heal_text else (case.batches, "calibration batches")
    res = {"machine": machine_info(), "model": args.model, "metric": name, "higher_is_better": case.higher[name],
           "dense": case.metrics(case.model)[name], "graph_seconds": build_s, "steps": args.steps, "lr": args.lr,
           "text": source, "rows": [budget_row(case, graph, b, args.steps, args.lr, batches) for b in args.bpw]}
    stem = out / f"heal-bits-{args.model}"
    stem.with_suffix(".json").write_text(json.dumps(res, indent=2, default=str))
    write(stem, res)
    return 0


def write(stem: Path, res: dict[str, Any]) -> None:
    """The table (``.md``) of a run."""
    name, higher = res["metric"], res["higher_is_better"]
    lines = [f"# Healing {res['model']} in fewer bits", "",
             f"Machine: {machine_line(res['machine'])}, torch {res['machine'].get('torch')}. One run. Graph with every "
             f"bit-width: {res['graph_seconds']:.0f} s. Metric: {name} ({'higher' if higher else 'lower'} is "
             f"better; dense {res['dense']:.4g}). {res['steps']} steps at peak learning rate {res['lr']:g} on "
             f"{res['text']}. Bytes counted from the model (codes, scales, zero points); the three columns of a row "
             "store the same bytes.", "",
             "| bits per weight | status | unhealed | heal then round | straight through | seconds (round / "
             "straight) |", "|---|---|---|---|---|---|"]
    for r in res["rows"]:
        same = r["bytes"] == r["heal_then_round_bytes"] == r["straight_through_bytes"]
        lines.append(f"| {r['bpw']:g} | {r['status']} | {r['unhealed']:.4g} | {r['heal_then_round']:.4g} | "
                     f"{r['straight_through']:.4g} | {r['heal_then_round_seconds']:.0f} / "
                     f"{r['straight_through_seconds']:.0f} |" + ("" if same else " bytes differ!"))
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
