"""Healing a plan in fewer bits: heal in 16 bits and round after, heal straight through the rounding, or both
(half the steps each), at equal bytes, in one run.

    python -m benchmarks.heal_bits [--model minilm-l6] [--bpw 4.5 3.5 2.5] [--steps 100] [--out DIR]

One graph with every bit-width (``build_graph(..., bits=BITS)``, compress's defaults otherwise), one solve per
budget (HiGHS); then, from the same plan and the same healing text, seed and steps:

- ``unhealed``: the plan as applied (GPTQ codes);
- ``heal then round``: the plan built in 16 bits, healed, then rounded (GPTQ of the healed tensors under each
  layer's input covariance);
- ``straight through``: the quantized plan made trainable (:mod:`colorshare.torch.qat`: latent weights from
  the GPTQ codes, rounded on each layer's GPTQ grid in every forward, the rounding passed straight through),
  healed, and stored as the codes it trained;
- ``both``: half the steps in 16 bits, rounded, the other half straight through (what ``compress --heal``
  does: :func:`colorshare.torch.qat.heal_in_bits`).

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

WAYS = {"heal_then_round": 1.0, "straight_through": 0.0, "both": 0.5}
"""Each way to heal a plan in bits: the share of the steps its 16-bit version heals before it is rounded."""


def budget_row(case: Any, graph: Any, bpw: float, steps: int, lr: float, batches: list[Any]) -> dict[str, Any]:
    """The plan at ``bpw`` bits per weight unhealed and healed each of :data:`WAYS`: metric, stored bytes,
    seconds."""
    from colorshare import solve
    from colorshare.formulations.budget import parse_budget
    from colorshare.torch import apply_coloring, stored_memory
    from colorshare.torch.qat import heal_in_bits

    name = next(iter(case.higher))
    sol = solve(graph, parse_budget(f"{bpw}bpw").for_graph(graph), backend="highs", time_limit=300)
    row: dict[str, Any] = {"bpw": bpw, "status": sol.status.value, "memory": sol.memory}
    plan = apply_coloring(case.model, graph, sol)
    row["unhealed"] = case.metrics(plan)[name]
    row["bytes"] = stored_memory(plan, "bytes")
    del plan
    for way, share in WAYS.items():
        t = time.perf_counter()
        model, phases = heal_in_bits(case.model, graph, sol, batches, steps, float_share=share, lr=lr, seed=0,
                                     progress=False)
        row[way] = case.metrics(model)[name]
        row[f"{way}_seconds"] = time.perf_counter() - t
        row[f"{way}_best_steps"] = [r.best_step for r in phases]
        row[f"{way}_bytes"] = stored_memory(model, "bytes")
        del model
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
             "| bits per weight | status | unhealed | heal then round | straight through | both (half each) | "
             "seconds (round / straight / both) |", "|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        same = all(r[f"{w}_bytes"] == r["bytes"] for w in WAYS)
        lines.append(f"| {r['bpw']:g} | {r['status']} | {r['unhealed']:.4g} | "
                     + " | ".join(f"{r[w]:.4g}" for w in WAYS) + " | "
                     + " / ".join(f"{r[w + '_seconds']:.0f}" for w in WAYS) + " |" + ("" if same else " bytes differ!"))
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
